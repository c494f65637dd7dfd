"""The one training loop: every strategy that trains a network runs through `Loop.fit`, for
images and texts alike, on whatever device, precision and world size it is handed.

Callbacks (`callbacks.py`) do everything that is not "forward, loss, backward, step":
early stopping, keeping the best weights, checkpoints for `--resume`, unfreezing the body for
the second fine-tuning stage, progress lines. The loop only calls their hooks in list order.

Randomness is re-seeded from (seed, epoch) at the start of every epoch (shuffling, data
augmentation, dropout), so a run resumed from the checkpoint of epoch k continues exactly as
the uninterrupted run would have.

An optimizer step averages the gradients of `accumulate` micro-batches (and, under
torchrun, of every rank's share): each micro-batch's mean loss is weighted by its share of the
step's items, so K micro-batches of b items give the gradient of one batch of K*b items (and
N ranks with b items each that of one batch of N*b) to float rounding.
"""
from __future__ import annotations

import random
import time
from contextlib import nullcontext
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import TransferkitError
from .devices import Placement, to_device
from .distributed import SINGLE, Dist
from .freeze import train_mode

HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


def seed_everything(s: int) -> None:
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _to_input(x, channels_last: bool):
    if isinstance(x, torch.Tensor) and channels_last and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def forward(model: nn.Module, x, channels_last: bool = False) -> torch.Tensor:
    """Images: a tensor; texts: the tokenizer's dict (input_ids, attention_mask)."""
    return model(**x) if isinstance(x, dict) else model(_to_input(x, channels_last))


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module


def n_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Items predicted right: the arg-max class; for label sets (y (B, L) float 0/1), every label
    right at logit 0 (probability 0.5): the subset accuracy the history's accuracy columns show."""
    if y.ndim == 2:
        return int(((logits > 0) == (y > 0.5)).all(1).sum())
    return int((logits.argmax(1) == y).sum())


class Loop:
    """Train `model` with `optimizer` (AdamW groups) and `schedule` (per-step learning rates).

    `train_batches(epoch, generator)` returns an iterable of (x, y) for one epoch (this rank's
    share), shuffled with `generator`; `val_batches()` this rank's validation batches (or
    None). After `fit`, `history` holds one dict per epoch with HISTORY_COLUMNS, summed over
    ranks (every rank sees the same numbers, so every rank stops at the same epoch).
    """

    def __init__(self, model: nn.Module, optimizer, schedule, loss_fn: nn.Module, *, epochs: int, callbacks: Iterable = (), seed: int = 0,
                 channels_last: bool = True, clip_grad_norm: float | None = None, placement: Placement | None = None, accumulate: int = 1, dist: Dist = SINGLE):
        self.model, self.optimizer, self.schedule, self.loss_fn = model, optimizer, schedule, loss_fn
        self.clip_grad_norm = clip_grad_norm  # max gradient norm (texts: 1.0); None: no clipping
        self.epochs, self.callbacks, self.seed, self.channels_last = epochs, list(callbacks), seed, channels_last
        self.placement, self.accumulate, self.dist = placement, max(1, int(accumulate)), dist
        self.device = placement.device if placement is not None else torch.device("cpu")
        self.scaler = placement.grad_scaler() if placement is not None else None
        self.epoch = 0  # last completed epoch
        self.step = 0  # optimizer steps taken
        self.history: list[dict] = []
        self.stop = False  # set by a callback to end training after this epoch
        self.train_items = 0
        self.train_seconds = 0.0

    @property
    def net(self) -> nn.Module:
        """The model itself (not its DistributedDataParallel wrapper)."""
        return _unwrap(self.model)

    def _autocast(self):
        return self.placement.autocast() if self.placement is not None else nullcontext()

    # ------------------------------------------------------------------ the loop
    def fit(self, train_batches: Callable[[int, torch.Generator], Iterable], val_batches: Callable[[], Iterable] | None = None) -> "Loop":
        self._call("on_train_begin")
        while self.epoch < self.epochs and not self.stop:
            epoch = self.epoch + 1
            seed_everything(epoch_seed(self.seed, epoch) + self.dist.rank)  # dropout/augmentation differ per rank, as in DDP
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))  # the shuffle is shared by all ranks
            self._call("on_epoch_begin", epoch)
            t0 = time.perf_counter()
            train_mode(self.model)
            tot, correct, n = 0.0, 0, 0
            group: list = []
            for batch in train_batches(epoch, gen):
                group.append(batch)
                if len(group) == self.accumulate:
                    tot, correct, n = self._step(group, epoch, tot, correct, n)
                    group = []
            if group:
                tot, correct, n = self._step(group, epoch, tot, correct, n)
            tot, correct, n = self.dist.sum([tot, correct, n])
            train_s = time.perf_counter() - t0
            self.train_items += int(n)
            self.train_seconds += train_s
            val_loss, val_acc = self.evaluate(val_batches()) if val_batches is not None else (float("nan"), float("nan"))
            logs = {
                "epoch": epoch,
                "train_loss": tot / max(n, 1),
                "train_accuracy": correct / max(n, 1),
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "lr": max(g["lr"] for g in self.optimizer.param_groups),
                "seconds": time.perf_counter() - t0,
            }
            self.epoch = epoch
            self.history.append(logs)
            self._call("on_epoch_end", epoch, logs)
        self._call("on_train_end")
        return self

    def _step(self, group: list, epoch: int, tot: float, correct: int, n: int):
        """One optimizer step over the micro-batches in `group` (this rank's share)."""
        self.schedule.step_to(self.step)
        local = sum(len(y) for _, y in group)
        total = self.dist.sum([local])[0] if self.dist.active else local
        self.optimizer.zero_grad(set_to_none=True)
        for k, (x, y) in enumerate(group):
            x, y = to_device(x, self.device), to_device(y, self.device)
            last = k == len(group) - 1
            sync = self.model.no_sync() if (self.dist.active and not last and hasattr(self.model, "no_sync")) else nullcontext()
            with sync:
                with self._autocast():
                    out = forward(self.model, x, self.channels_last)
                loss = self.loss_fn(out.float(), y)
                if not torch.isfinite(loss):
                    lr = max(g["lr"] for g in self.optimizer.param_groups)
                    raise TransferkitError(f"training diverged: the loss became {float(loss)} at epoch {epoch}, step {self.step + 1}; try a lower --lr (peak now {lr:.2g}) or --class-weight none")
                # DDP averages gradients over ranks: weight by this micro-batch's share of the step's items times the world size
                weighted = loss * (len(y) * self.dist.world / total)
                (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
            tot += float(loss.detach()) * len(y)
            correct += n_correct(out.detach(), y)
            n += len(y)
            self._call("on_batch_end", len(y) * self.dist.world)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None], self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        return tot, correct, n

    @torch.inference_mode()
    def evaluate(self, batches: Iterable) -> tuple[float, float]:
        """(mean loss, accuracy) over `batches` (this rank's share, summed over ranks) in eval
        mode, with the training criterion."""
        self.model.eval()
        tot, correct, n = 0.0, 0, 0
        for x, y in batches:
            x, y = to_device(x, self.device), to_device(y, self.device)
            with self._autocast():
                out = forward(self.net, x, self.channels_last)
            tot += float(self.loss_fn(out.float(), y)) * len(y)
            correct += n_correct(out, y)
            n += len(y)
        tot, correct, n = self.dist.sum([tot, correct, n])
        return (tot / n, correct / n) if n else (float("nan"), float("nan"))

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        """Everything `--resume` needs; only tensors and plain values (loads with weights_only)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "stop": self.stop,
            "history": [dict(h) for h in self.history],
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "train_items": self.train_items,
            "train_seconds": self.train_seconds,
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step, self.stop = int(state["epoch"]), int(state["step"]), bool(state.get("stop", False))
        self.history = [dict(h) for h in state["history"]]
        self.train_items, self.train_seconds = int(state.get("train_items", 0)), float(state.get("train_seconds", 0.0))
        for cb in self.callbacks:  # first: an unfreeze callback restores requires_grad before the optimizer state
            cb.load_state_dict(state["callbacks"].get(type(cb).__name__, {}), self)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
