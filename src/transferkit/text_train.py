"""The training loop the text strategies use (head on cached features, partial, finetune).

STAND-IN: issue 4 builds the one training loop in `transferkit/train/`. This module is kept
small and separate so that `fit` can be swapped for that loop without touching the
strategies: it takes a model, parameter groups with their peak learning rates, and two
batch iterables, and returns the history; the best-val-loss weights end up in the model.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

Batch = tuple  # (inputs: dict of tensors or a tensor, y: LongTensor)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _call(model: nn.Module, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def evaluate_loss(model: nn.Module, batches: Iterable[Batch]) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over `batches`, in eval mode."""
    model.eval()
    tot, correct, n = 0.0, 0, 0
    with torch.inference_mode():
        for inputs, y in batches:
            out = _call(model, inputs)
            tot += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    return (tot / n, correct / n) if n else (float("nan"), float("nan"))


def fit(
    model: nn.Module,
    groups: list[dict],
    train_batches: Callable[[int], Iterable[Batch]],
    steps_per_epoch: int,
    val_batches: Callable[[], Iterable[Batch]] | None,
    epochs: int,
    *,
    frozen: Iterable[nn.Module] = (),
    warmup_frac: float = 0.1,
    weight_decay: float = 0.01,
    patience: int = 3,
    desc: str = "training",
    progress: bool = True,
) -> list[dict]:
    """Train `model` with AdamW (one peak LR per parameter group, warm-up + cosine), keep the
    epoch with the lowest validation loss (early stop after `patience` worse epochs) and load
    its weights back. `frozen` modules stay in eval mode (no dropout noise in frozen layers).
    Returns one history row per epoch."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)
    for g in opt.param_groups:
        g["peak_lr"] = g["lr"]
    total = max(1, epochs * steps_per_epoch)
    warmup = int(warmup_frac * total)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    best, best_state, bad, step, history = float("inf"), None, 0, 0, []
    for epoch in range(1, epochs + 1):
        model.train()
        for m in frozen:
            m.eval()
        t0, tot, correct, n = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(total=steps_per_epoch, desc=f"{desc} epoch {epoch}/{epochs}", unit="step", disable=not progress, leave=False, file=sys.stderr)
        for inputs, y in train_batches(epoch):
            for g in opt.param_groups:
                g["lr"] = g["peak_lr"] * warmup_cosine(step, total, warmup)
            out = _call(model, inputs)
            loss = nn.functional.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            step += 1
            tot += float(loss.detach()) * len(y)
            correct += int((out.detach().argmax(1) == y).sum())
            n += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{tot / n:.3f}")
        bar.close()
        vl, va = evaluate_loss(model, val_batches()) if val_batches is not None else (tot / max(n, 1), float("nan"))
        history.append({"epoch": epoch, "train_loss": tot / max(n, 1), "train_accuracy": correct / max(n, 1), "val_loss": vl, "val_accuracy": va, "lr": opt.param_groups[0]["peak_lr"], "seconds": time.perf_counter() - t0})
        if progress:
            print(f"[transferkit] {desc} epoch {epoch}: train loss {tot / max(n, 1):.4f}, val loss {vl:.4f}, val accuracy {va:.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if vl < best - 1e-4:
            best, bad = vl, 0
            sd = model.state_dict()
            best_state = {k: sd[k].detach().clone() for k in trainable}
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    return history


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, mega: int = 50) -> list[np.ndarray]:
    """Shuffled batches of positions whose items have similar lengths (less padding): shuffle,
    sort within chunks of `mega` batches by length, cut into batches, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    out = []
    for s in range(0, len(perm), batch_size * mega):
        chunk = perm[s : s + batch_size * mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        out += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out
