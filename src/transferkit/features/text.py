"""Text features: mean-pooled encoder states, computed in batches of similar length (padding
per batch to its longest text, so short texts cost little) and flushed to the feature cache."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


@torch.inference_mode()
def run_text_backbone(backbone, dataset, todo: list[int], cache, batch_size: int, progress: bool, flush_every: int) -> None:
    backbone.model.eval()
    # longest first: the slowest batches show up at once in the progress bar, and similar
    # lengths share a batch (characters are a good enough proxy for tokens here)
    order = sorted(todo, key=lambda i: -len(dataset.texts[i]))
    buf_keys: list[str] = []
    buf_feats: list[np.ndarray] = []
    bar = tqdm(total=len(order), desc=f"embedding texts with {backbone.name}", unit="text", disable=not progress, smoothing=0.1)
    try:
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            f = backbone.features(backbone.tokenize([dataset.texts[i] for i in chunk]))
            buf_feats.append(f.float().numpy())
            buf_keys.extend(dataset.keys[i] for i in chunk)
            bar.update(len(chunk))
            if len(buf_keys) >= flush_every:
                cache.put(buf_keys, np.concatenate(buf_feats))
                buf_keys, buf_feats = [], []
    finally:
        if buf_keys:  # keep what was computed, also on Ctrl-C: the next run resumes from here
            cache.put(buf_keys, np.concatenate(buf_feats))
        bar.close()
