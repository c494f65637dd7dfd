"""Text training (head on cached features, partial, finetune) on the one training loop.

`fit` adapts the text strategies' call (a model, parameter groups with their peak learning
rates, batch iterables of tokenizer dicts) to `transferkit.train.Loop`, the loop every image
strategy runs too; the best-val-loss weights end up in the model. Also here: batches of texts
of similar length (less padding).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from torch import nn

Batch = tuple  # (inputs: dict of tensors or a tensor, y: LongTensor)


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
    progress_items: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Train `model` through the one training loop (`transferkit.train.Loop`): AdamW (one peak
    LR per parameter group, no decay on biases and norm scales), linear warm-up over
    `warmup_frac` of the steps then cosine decay, gradients clipped to norm 1, early stop after
    `patience` epochs without a lower validation loss, and the best epoch's weights loaded back.
    `frozen` modules get no gradients and stay in eval mode (no dropout noise in frozen layers).
    Returns one history row per epoch (train/val loss and accuracy, learning rate, seconds)."""
    from .train import BestWeights, EarlyStopping, Group, Loop, ProgressLog, Schedule, adamw, freeze

    for m in frozen:
        freeze(m)
    gs = [Group(f"group{i}", list(g["params"]), g["lr"]) for i, g in enumerate(groups) if g["params"]]
    optimizer = adamw(gs, weight_decay)
    total = max(1, epochs * steps_per_epoch)
    schedule = Schedule(optimizer, [total], int(warmup_frac * total))
    callbacks = [BestWeights(), EarlyStopping(patience)]
    if progress_items:  # a bar through each epoch, counting the training texts the loop reports
        callbacks.append(ProgressLog(f"{desc}: ", progress_items, unit="text"))
    loop = Loop(model, optimizer, schedule, nn.CrossEntropyLoss(), epochs=epochs, callbacks=callbacks, seed=seed, channels_last=False, clip_grad_norm=1.0)
    loop.fit(lambda epoch, generator: train_batches(epoch), val_batches)
    model.eval()
    return loop.history


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
