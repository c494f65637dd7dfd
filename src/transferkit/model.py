"""The trained networks, logits out, and how to rebuild them from a saved spec.

Every image model carries `spec`: a small JSON-able dict (its kind and shape settings) that is
stored in the safetensors metadata, so `build_model(spec)` recreates an empty module of the
right shape for the weights, whatever strategy trained it:

- `TransferModel` (kind "transfer"): a timm backbone + a head (probe, head, partial, finetune);
- `ScratchCNN` (kind "scratch_cnn"): conv-BN-ReLU blocks sized from the input resolution;
- `PixelMLP` (kind "pixel_mlp"): a dense network on raw pixels;
- `TextTransferModel` (token ids in): a transformers encoder + a head (text runs).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class TransferModel(nn.Module):
    """logits = head(pooled backbone features). Works with any timm backbone (the
    `forward_features` / `forward_head(pre_logits=True)` contract)."""

    def __init__(self, backbone_model: nn.Module, head: nn.Module, spec: dict | None = None):
        super().__init__()
        self.backbone = backbone_model
        self.head = head
        self.spec = spec or {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TextTransferModel(nn.Module):
    """logits = head(mean-pooled encoder states). Works with any transformers encoder
    (`AutoModel`); inputs are the tokenizer's input_ids and attention_mask, (B, T) each."""

    def __init__(self, backbone_model: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone_model
        self.head = head

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from .backbones.text import mean_pool

        return mean_pool(self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask))


@torch.inference_mode()
def text_logits(model: nn.Module, tokenizer, max_length: int, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Logits (N, C) of `model` for `texts`, in batches of similar length (longest first), each
    padded to its own longest text and truncated to `max_length` tokens."""

    from .backbones.text import tokenize

    model.eval()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = None
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        z = model(**tokenize(tokenizer, [texts[i] for i in idx], max_length)).float().numpy()
        if out is None:
            out = np.empty((len(texts), z.shape[1]), dtype=np.float32)
        out[idx] = z
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def scratch_stages(image_size: int) -> int:
    """Conv stages (each halves the side) that bring the input down to about 4-7 pixels."""
    return max(2, min(6, int(math.log2(max(image_size, 8) / 4))))


class ScratchCNN(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class PixelMLP(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(spec: dict) -> nn.Module:
    """An untrained module of the shape `spec` describes (to load saved weights into)."""
    from .heads import build_head

    kind = spec.get("kind")
    if kind == "scratch_cnn":
        return ScratchCNN(spec["n_classes"], spec["image_size"], spec.get("dropout", 0.3))
    if kind == "pixel_mlp":
        return PixelMLP(spec["n_classes"], spec["image_size"], tuple(spec["hidden"]), spec.get("dropout", 0.2))
    if kind == "transfer":
        from .backbones.registry import _resolve_arch, _timm

        body = _timm().create_model(spec.get("arch") or _resolve_arch(spec["backbone"]), pretrained=False)
        if spec.get("classifier_reset"):
            body.reset_classifier(0)
        h = dict(spec["head"])
        dim = h.pop("dim", None) or int(body.num_features)
        head = build_head(h.pop("kind"), dim, h.pop("n_classes"), **h)
        return TransferModel(body, head, spec)
    raise ValueError(f"unknown model kind {kind!r}")
