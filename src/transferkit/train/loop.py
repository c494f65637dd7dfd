"""The one training loop: every strategy that trains a network runs through `Loop.fit`.

Callbacks (`callbacks.py`) do everything that is not "forward, loss, backward, step":
early stopping, keeping the best weights, checkpoints for `--resume`, unfreezing the body for
the second fine-tuning stage, progress lines. The loop only calls their hooks in list order.

Randomness is re-seeded from (seed, epoch) at the start of every epoch (shuffling, data
augmentation in the DataLoader workers, dropout), so a run resumed from the checkpoint of
epoch k continues exactly as the uninterrupted run would have.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import TransferkitError
from .freeze import train_mode

HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


def seed_everything(s: int) -> None:
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _to_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _forward(model: nn.Module, x, channels_last: bool) -> torch.Tensor:
    """Images: a tensor; texts: the tokenizer's dict (input_ids, attention_mask)."""
    return model(**x) if isinstance(x, dict) else model(_to_input(x, channels_last))


class Loop:
    """Train `model` with `optimizer` (AdamW groups) and `schedule` (per-step learning rates).

    `train_batches(epoch, generator)` returns an iterable of (x, y) for one epoch, shuffled
    with `generator`; `val_batches()` the validation batches (or None). After `fit`, `history`
    holds one dict per epoch with HISTORY_COLUMNS.
    """

    def __init__(self, model: nn.Module, optimizer, schedule, loss_fn: nn.Module, *, epochs: int, callbacks: Iterable = (), seed: int = 0, channels_last: bool = True, clip_grad_norm: float | None = None):
        self.model, self.optimizer, self.schedule, self.loss_fn = model, optimizer, schedule, loss_fn
        self.clip_grad_norm = clip_grad_norm  # max gradient norm (texts: 1.0); None: no clipping
        self.epochs, self.callbacks, self.seed, self.channels_last = epochs, list(callbacks), seed, channels_last
        self.epoch = 0  # last completed epoch
        self.step = 0  # optimizer steps taken
        self.history: list[dict] = []
        self.stop = False  # set by a callback to end training after this epoch
        self.train_items = 0
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ the loop
    def fit(self, train_batches: Callable[[int, torch.Generator], Iterable], val_batches: Callable[[], Iterable] | None = None) -> "Loop":
        self._call("on_train_begin")
        while self.epoch < self.epochs and not self.stop:
            epoch = self.epoch + 1
            seed_everything(epoch_seed(self.seed, epoch))
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._call("on_epoch_begin", epoch)
            t0 = time.perf_counter()
            train_mode(self.model)
            tot, correct, n = 0.0, 0, 0
            for x, y in train_batches(epoch, gen):
                self.schedule.step_to(self.step)
                out = _forward(self.model, x, self.channels_last)
                loss = self.loss_fn(out, y)
                if not torch.isfinite(loss):
                    lr = max(g["lr"] for g in self.optimizer.param_groups)
                    raise TransferkitError(f"training diverged: the loss became {float(loss)} at epoch {epoch}, step {self.step + 1}; try a lower --lr (peak now {lr:.2g}) or --class-weight none")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None], self.clip_grad_norm)
                self.optimizer.step()
                self.step += 1
                tot += float(loss.detach()) * len(y)
                correct += int((out.detach().argmax(1) == y).sum())
                n += len(y)
                self._call("on_batch_end", len(y))
            train_s = time.perf_counter() - t0
            self.train_items += n
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

    @torch.inference_mode()
    def evaluate(self, batches: Iterable) -> tuple[float, float]:
        """(mean loss, accuracy) over `batches` in eval mode, with the training criterion."""
        self.model.eval()
        tot, correct, n = 0.0, 0, 0
        for x, y in batches:
            out = _forward(self.model, x, self.channels_last)
            tot += float(self.loss_fn(out, y)) * len(y)
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
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
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
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
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
