"""AdamW parameter groups (discriminative learning rates for backbone blocks), the warm-up +
cosine schedule, and class weights for the loss."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LR_FLOOR = 0.01  # the cosine decays to this fraction of the peak learning rate


@dataclass
class Group:
    """Parameters trained at one peak learning rate, from stage `first_stage` on."""

    name: str
    params: list
    lr: float
    first_stage: int = 0


def discriminative_lrs(n: int, top_lr: float, decay: float) -> list[float]:
    """`n` learning rates, bottom block first: `top_lr` for the top block, × `decay` per block
    below (the `layer_decay` that text fine-tuning uses for encoder layers)."""
    return [top_lr * decay ** (n - 1 - i) for i in range(n)]


def block_groups(blocks: list[list[nn.Module]], top_lr: float, decay: float, first_stage: int = 0) -> list[Group]:
    """One AdamW group per backbone block (bottom first, as `Backbone.blocks()` gives them):
    `top_lr` for the top block, x `decay` per block below. The same rule for a CNN's stages
    (timm's group_matcher) and a transformer's layers (embeddings at the bottom)."""
    lrs = discriminative_lrs(len(blocks), top_lr, decay)
    groups, seen = [], set()
    for i, (mods, lr) in enumerate(zip(blocks, lrs)):
        params = [p for m in mods for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append(Group(f"block{i}", params, lr, first_stage))
    return groups


def adamw(groups: list[Group], weight_decay: float) -> torch.optim.AdamW:
    """AdamW with each group split into decayed weights and undecayed biases/norm scales."""
    pg = []
    for g in groups:
        decay = [p for p in g.params if p.ndim > 1]
        no_decay = [p for p in g.params if p.ndim <= 1]
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                pg.append({"params": params, "lr": g.lr, "initial_lr": g.lr, "weight_decay": wd, "name": g.name, "first_stage": g.first_stage})
    return torch.optim.AdamW(pg, lr=groups[0].lr)


class Schedule:
    """Per-step learning rates: within each stage a linear warm-up then a cosine decay to
    LR_FLOOR of the peak; a group gets 0 before its first stage. The state is the step count."""

    def __init__(self, optimizer: torch.optim.Optimizer, stage_steps: list[int], warmup_steps: int):
        self.optimizer, self.stage_steps, self.warmup_steps = optimizer, stage_steps, warmup_steps
        self.bounds = np.cumsum([0] + list(stage_steps))
        self.step_n = 0

    def factor(self, step: int, first_stage: int) -> float:
        stage = int(np.searchsorted(self.bounds, step, side="right") - 1)
        stage = min(stage, len(self.stage_steps) - 1)
        if stage < first_stage:
            return 0.0
        start, length = int(self.bounds[stage]), max(1, self.stage_steps[stage])
        t = step - start
        warm = min(self.warmup_steps, max(1, length // 2))
        if t < warm:
            return (t + 1) / warm
        progress = min(1.0, (t - warm) / max(1, length - warm))
        return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))

    def step_to(self, step: int) -> None:
        self.step_n = step
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * self.factor(step, g.get("first_stage", 0))

    def state_dict(self) -> dict:
        return {"step": self.step_n, "stage_steps": list(self.stage_steps), "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_to(int(state["step"]))


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """n / (classes * n_c) per class, as scikit-learn's 'balanced'; 0 for classes absent from
    the training split (nothing to weight)."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w
