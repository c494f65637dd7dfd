"""The trained networks, logits out, and how to rebuild them from a saved spec.

Every model carries `spec`: a small JSON-able dict (its kind and shape settings) that is stored
in the safetensors metadata, so `build_model(spec)` recreates an empty module of the right shape
for the weights, whatever strategy and modality trained it:

- `TransferModel` (kind "transfer"): a timm image backbone + a head (probe, head, partial, finetune);
- `TextTransferModel` (kind "text_transfer"): a transformers encoder, mean-pooled, + a head;
  its spec holds the encoder's config, so no file besides the weights is needed to rebuild it;
- `ScratchCNN` (kind "scratch_cnn"): conv-BN-ReLU blocks sized from the input resolution;
- `PixelMLP` (kind "pixel_mlp"): a dense network on raw pixels.

Models apply an optional temperature (`set_temperature`, fitted on validation by
`calibrate.fit_temperature`) to their logits, so a saved, exported or served model gives the
calibrated probabilities itself.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class Calibrated(nn.Module):
    """Mixin: logits divided by a temperature buffer (1: no change). Old weight files have no
    `temperature` entry; loading fills it with 1."""

    def _init_temperature(self) -> None:
        self.register_buffer("temperature", torch.ones(()), persistent=True)

    def set_temperature(self, t: float) -> None:
        self.temperature.fill_(float(t))

    def _calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "temperature", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class TransferModel(Calibrated):
    """logits = head(pooled backbone features). Works with any timm backbone (the
    `forward_features` / `forward_head(pre_logits=True)` contract)."""

    def __init__(self, backbone_model: nn.Module, head: nn.Module, spec: dict | None = None):
        super().__init__()
        self.backbone = backbone_model
        self.head = head
        self.spec = spec or {}
        self._init_temperature()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._calibrated(self.head(self.features(x)))


class FeatureEnsemble(Calibrated):
    """logits = head(concatenated pooled features of several timm backbones), each fed its own
    preprocessing of the image: forward(image_0, image_1, ...)."""

    def __init__(self, bodies: list, head: nn.Module, spec: dict | None = None):
        super().__init__()
        self.bodies = nn.ModuleList(bodies)
        self.head = head
        self.spec = spec or {}
        self._init_temperature()

    def features(self, *images: torch.Tensor) -> torch.Tensor:
        return torch.cat([b.forward_head(b.forward_features(x), pre_logits=True) for b, x in zip(self.bodies, images)], dim=1)

    def forward(self, *images: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        xs = list(images) + [named[k] for k in sorted(named, key=lambda k: int(k.rsplit("_", 1)[1]))]
        return self._calibrated(self.head(self.features(*xs)))


class RunEnsemble(nn.Module):
    """Several trained models (each with its own preprocessing: forward(input_0, input_1, ...))
    as one: log of the weighted mean of their calibrated probabilities, so softmax of the output
    is the ensemble's probability (as for TTA)."""

    def __init__(self, members: list, weights: list[float], spec: dict | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        w = torch.tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", w / w.sum())
        self.spec = spec or {}

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        xs = list(inputs) + [named[k] for k in sorted(named, key=lambda k: int(k.rsplit("_", 1)[1]))]
        p = sum(w * (m(**x) if isinstance(x, dict) else m(x)).softmax(-1) for w, m, x in zip(self.weights, self.members, xs))
        return torch.log(p.clamp_min(1e-30))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding: (B, T, D), (B, T) -> (B, D)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class TextTransferModel(Calibrated):
    """logits = head(mean-pooled encoder states). Works with any transformers encoder
    (`AutoModel`); inputs are the tokenizer's input_ids and attention_mask, (B, T) each."""

    def __init__(self, backbone_model: nn.Module, head: nn.Module, spec: dict | None = None):
        super().__init__()
        self.backbone = backbone_model
        self.head = head
        self.spec = spec or {}
        self._init_temperature()

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._calibrated(self.head(self.features(input_ids, attention_mask)))


def scratch_stages(image_size: int) -> int:
    """Conv stages (each halves the side) that bring the input down to about 4-7 pixels."""
    return max(2, min(6, int(math.log2(max(image_size, 8) / 4))))


class ScratchCNN(Calibrated):
    """A compact CNN for training from random init: per stage conv3x3-BN-ReLU + 2x2 max-pool,
    widths doubling up to 256 at the last stage, then global average pooling, dropout and a
    linear classifier. At 128 px: 5 stages (16..256 channels), ~0.4 M parameters, ~85 M MACs."""

    def __init__(self, n_classes: int, image_size: int, dropout: float = 0.3):
        super().__init__()
        n = scratch_stages(image_size)
        widths = [max(16, 256 >> (n - 1 - i)) for i in range(n)]
        layers, c_in = [], 3
        for c in widths:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, n_classes))
        self.spec = {"kind": "scratch_cnn", "n_classes": n_classes, "image_size": image_size, "dropout": dropout}
        self._init_temperature()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._calibrated(self.head(self.body(x)))


class PixelMLP(Calibrated):
    """The seeds' "ANN": flattened normalised pixels -> dense(512) -> ReLU -> dropout ->
    dense(256) -> ReLU -> dropout -> classes."""

    def __init__(self, n_classes: int, image_size: int, hidden: tuple[int, ...] = (512, 256), dropout: float = 0.2):
        super().__init__()
        layers, d = [nn.Flatten()], 3 * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, n_classes))
        self.net = nn.Sequential(*layers)
        self.spec = {"kind": "pixel_mlp", "n_classes": n_classes, "image_size": image_size, "hidden": list(hidden), "dropout": dropout}
        self._init_temperature()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._calibrated(self.net(x))


def _head(h: dict, dim: int) -> nn.Module:
    from .heads import build_head

    h = dict(h)
    h.pop("dim", None)
    return build_head(h.pop("kind"), dim, h.pop("n_classes"), **h)


def _image_transfer(spec: dict) -> nn.Module:
    import timm

    body = timm.create_model(spec["arch"], pretrained=False)
    if spec.get("classifier_reset"):
        body.reset_classifier(0)
    dim = spec["head"].get("dim") or int(body.num_features)
    return TransferModel(body, _head(spec["head"], dim), spec)


def _feature_ensemble(spec: dict) -> nn.Module:
    import timm

    bodies = [timm.create_model(m["arch"], pretrained=False) for m in spec["members"]]
    dim = spec["head"].get("dim") or sum(int(b.num_features) for b in bodies)
    return FeatureEnsemble(bodies, _head(spec["head"], dim), spec)


def _text_transfer(spec: dict) -> nn.Module:
    from . import _compat  # noqa: F401  (torchvision fix before transformers)
    from transformers import AutoConfig, AutoModel

    cfg = dict(spec["encoder_config"])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    encoder = AutoModel.from_config(config)
    return TextTransferModel(encoder, _head(spec["head"], int(config.hidden_size)), spec)


def _run_ensemble(spec: dict) -> nn.Module:
    members = []
    for m in spec["members"]:
        model = build_model(m)
        if m.get("tta", "none") != "none":
            from .tta import TTA

            model = TTA(model, m["tta"])
        members.append(model)
    return RunEnsemble(members, spec["weights"], spec)


BUILDERS = {
    "run_ensemble": _run_ensemble,
    "transfer": _image_transfer,
    "text_transfer": _text_transfer,
    "feature_ensemble": _feature_ensemble,
    "scratch_cnn": lambda s: ScratchCNN(s["n_classes"], s["image_size"], s.get("dropout", 0.3)),
    "pixel_mlp": lambda s: PixelMLP(s["n_classes"], s["image_size"], tuple(s["hidden"]), s.get("dropout", 0.2)),
}


def build_model(spec: dict) -> nn.Module:
    """An untrained module of the shape `spec` describes (to load saved weights into)."""
    kind = spec.get("kind")
    if kind not in BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}")
    model = BUILDERS[kind](spec)
    if spec.get("output") == "sigmoid":  # label sets: the outputs and thresholds travel with the spec
        model.spec = {**model.spec, "output": "sigmoid", "thresholds": list(spec.get("thresholds") or [])}
    return model


def is_multilabel(model) -> bool:
    """Whether a model's outputs are independent per-label logits (sigmoid), not one softmax."""
    return (getattr(model, "spec", None) or {}).get("output") == "sigmoid"
