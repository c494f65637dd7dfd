"""`TransferModel`: backbone + head as one module, images in, logits out."""
from __future__ import annotations

import torch
from torch import nn


class TransferModel(nn.Module):
    """logits = head(pooled backbone features). Works with any timm backbone (the
    `forward_features` / `forward_head(pre_logits=True)` contract)."""

    def __init__(self, backbone_model: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone_model
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
