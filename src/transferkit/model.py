"""`TransferModel` (images in) and `TextTransferModel` (token ids in): backbone + head as one module, logits out."""
from __future__ import annotations

import numpy as np
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
