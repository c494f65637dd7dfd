"""Callbacks for `Loop`: each hook gets the loop; `loop.stop = True` ends training after the
epoch. Hooks: on_train_begin, on_epoch_begin(epoch), on_batch_end(n_items), on_epoch_end(epoch,
logs), on_train_end.
`state_dict()`/`load_state_dict(state, loop)` carry a callback's state through `--resume`.
Order matters where noted: Checkpoint goes last, so it saves the others' updated state."""
from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import torch

from .. import io as tkio
from .freeze import freeze, unfreeze


class Callback:
    def on_train_begin(self, loop) -> None: ...

    def on_epoch_begin(self, loop, epoch: int) -> None: ...

    def on_batch_end(self, loop, n_items: int) -> None: ...

    def on_epoch_end(self, loop, epoch: int, logs: dict) -> None: ...

    def on_train_end(self, loop) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, loop) -> None: ...


def _monitored(logs: dict) -> float:
    v = logs.get("val_loss")
    return v if v is not None and math.isfinite(v) else logs["train_loss"]  # no val split: train loss


class BestWeights(Callback):
    """Keep a copy of the weights with the lowest validation loss; restore them at the end."""

    def __init__(self):
        self.best, self.best_epoch, self.state = math.inf, 0, None

    def on_epoch_end(self, loop, epoch, logs):
        v = _monitored(logs)
        if v < self.best:
            self.best, self.best_epoch = v, epoch
            self.state = {k: t.detach().clone() for k, t in loop.net.state_dict().items()}

    def on_train_end(self, loop):
        if self.state is not None:
            loop.net.load_state_dict(self.state)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state, loop):
        self.best, self.best_epoch, self.state = state.get("best", math.inf), state.get("best_epoch", 0), state.get("state")


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved by `min_delta` for `patience` epochs,
    counting from `start_epoch` (e.g. after fine-tuning's head warm-up). patience 0: never."""

    def __init__(self, patience: int, start_epoch: int = 1, min_delta: float = 1e-4):
        self.patience, self.start_epoch, self.min_delta = patience, start_epoch, min_delta
        self.best, self.wait, self.stopped_epoch = math.inf, 0, 0

    def on_epoch_end(self, loop, epoch, logs):
        if self.patience <= 0 or epoch < self.start_epoch:
            return
        v = _monitored(logs)
        if v < self.best - self.min_delta:
            self.best, self.wait = v, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                loop.stop = True

    def state_dict(self):
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state, loop):
        self.best, self.wait = state.get("best", math.inf), state.get("wait", 0)


class Deadline(Callback):
    """Stop after the epoch whose successor would end past `deadline` (time.time()): what
    `compare --time-budget` gives each run. Every rank stops at the same epoch (any rank that
    would overrun stops them all)."""

    def __init__(self, deadline: float, what: str = "--time-budget"):
        self.deadline, self.what, self.stopped_epoch = deadline, what, 0

    def on_epoch_end(self, loop, epoch, logs):
        import time

        if loop.stop or epoch >= loop.epochs:
            return
        over = float(time.time() + logs.get("seconds", 0.0) > self.deadline)
        if loop.dist.sum([over])[0] > 0:
            self.stopped_epoch, loop.stop = epoch, True
            from ..log import log

            log(f"{self.what}: stopping after epoch {epoch} of {loop.epochs} (another would end past the budget); the best epoch so far is kept")


class Unfreeze(Callback):
    """Fine-tuning's second stage: unfreeze `modules` before epoch `after_epoch + 1`
    (`keep_stats`: their BN layers keep the pretrained statistics)."""

    def __init__(self, modules, after_epoch: int, keep_stats: bool = True):
        self.modules, self.after_epoch, self.keep_stats, self.done = list(modules), after_epoch, keep_stats, False

    def on_epoch_begin(self, loop, epoch):
        if epoch > self.after_epoch and not self.done:
            self.apply()

    def apply(self):
        from .freeze import keep_bn_stats

        for m in self.modules:
            unfreeze(m)
            if self.keep_stats:
                keep_bn_stats(m)
        self.done = True

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, state, loop):
        if state.get("done"):
            self.apply()
        else:
            for m in self.modules:
                freeze(m)


class ProgressLog(Callback):
    """A progress bar through each epoch (items/s), then one line per epoch on stderr; on
    rank 0 only. `items_per_epoch` None: no bar (epochs of a second or less, e.g. on cached
    features), and then an epoch line only every tenth of the epochs, the last, and the best so far."""

    def __init__(self, prefix: str = "", items_per_epoch: int | None = None, unit: str = "img"):
        self.prefix, self.items_per_epoch, self.unit, self.bar = prefix, items_per_epoch, unit, None
        self.best = math.inf

    def on_epoch_begin(self, loop, epoch):
        if self.items_per_epoch and loop.dist.is_main:
            from ..progress import bar

            self.bar = bar(self.items_per_epoch, f"{self.prefix}epoch {epoch}/{loop.epochs}", self.unit, leave=False)

    def on_batch_end(self, loop, n_items):
        if self.bar is not None:
            self.bar.update(n_items)

    def on_epoch_end(self, loop, epoch, logs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not loop.dist.is_main:
            return
        improved = _monitored(logs) < self.best
        self.best = min(self.best, _monitored(logs))
        if self.items_per_epoch is None and not (epoch == loop.epochs or loop.stop or epoch % max(1, loop.epochs // 10) == 0):
            return
        print(
            f"[transferkit] {self.prefix}epoch {epoch}/{loop.epochs}: train loss {logs['train_loss']:.4f} acc {logs['train_accuracy']:.3f}"
            f" | val loss {logs['val_loss']:.4f} acc {logs['val_accuracy']:.3f} | lr {logs['lr']:.2g} | {logs['seconds']:.1f} s" + (" (best)" if improved else ""),
            file=sys.stderr,
            flush=True,
        )


class Checkpoint(Callback):
    """After every epoch, the loop's full state (weights, optimizer, schedule, history, the
    other callbacks' state) atomically to `dir/name` (rank 0 only), for `--resume`. Put it last."""

    def __init__(self, directory: str | Path, name: str = "last.pt"):
        self.dir, self.name = Path(directory), name

    @property
    def path(self) -> Path:
        return self.dir / self.name

    def on_epoch_end(self, loop, epoch, logs):
        if loop.dist.is_main:
            with tkio.atomic_path(self.path) as tmp:
                torch.save(loop.state_dict(), tmp)
        loop.dist.barrier()  # no rank runs ahead of a checkpoint it might be resumed from

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by `Checkpoint`; plain tensors and values only (weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True)
