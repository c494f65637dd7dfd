"""Run a strategy's training plan through the loop: loss, loaders, callbacks, checkpoints,
resume, and the class probabilities of every split with the best weights."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..log import log
from .callbacks import BestWeights, Checkpoint, EarlyStopping, ProgressLog
from .data import ImageItems, build_transform, default_workers, loader, resize_hint
from .freeze import count_trainable
from .loop import Loop
from .optim import Group, Schedule, adamw, balanced_class_weights

SPLITS = ("train", "val", "test")


@dataclass
class Plan:
    """What a strategy hands to `fit`: the model, its parameter groups and stages."""

    model: nn.Module  # the model the run saves (images in, logits out)
    groups: list[Group]  # AdamW groups; `first_stage` says when each starts learning
    stage_epochs: list[int]  # epochs per stage, e.g. [2, 8]: head warm-up, then everything
    data_config: dict  # preprocessing: input size, mean/std, interpolation, crop
    callbacks: list = field(default_factory=list)  # strategy-specific (e.g. Unfreeze), run before the common ones
    early_stop_from: int = 1  # epoch from which early stopping counts (after a warm-up stage)
    features: np.ndarray | None = None  # (N, D) cached backbone features: train `train_module` on them, no images
    train_module: nn.Module | None = None  # the part the loop trains when `features` is given (the head)
    channels_last: bool = True


def make_loss(cfg, train_labels: np.ndarray, n_classes: int) -> tuple[nn.Module, list[float] | None]:
    weights = balanced_class_weights(train_labels, n_classes) if cfg.class_weight == "balanced" else None
    w = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
    return nn.CrossEntropyLoss(weight=w, label_smoothing=cfg.label_smoothing), (weights.tolist() if weights is not None else None)


def fit(ctx, plan: Plan):
    """Train `plan.model` on ctx's split; returns (info, proba per split)."""
    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    n_classes = len(ds.classes)
    loss_fn, class_weights = make_loss(cfg, ds.labels[sp.train], n_classes)
    bs = cfg.batch_size
    drop_last = len(sp.train) > bs  # a last batch of 1 breaks batch-norm in training mode
    if plan.features is not None:
        X = torch.from_numpy(np.ascontiguousarray(plan.features))
        y = torch.from_numpy(ds.labels.astype(np.int64))
        sets = {s: torch.utils.data.TensorDataset(X[getattr(sp, s)], y[getattr(sp, s)]) for s in SPLITS}
        workers, net = 0, plan.train_module
        train_set = sets["train"]
    else:
        hint = resize_hint(plan.data_config)
        train_set = ImageItems(ds, sp.train, build_transform(plan.data_config, cfg.augment), hint)
        eval_tf = build_transform(plan.data_config, "none")
        sets = {s: ImageItems(ds, getattr(sp, s), eval_tf, hint) for s in SPLITS}
        workers, net = default_workers(len(sp.train), cfg.workers), plan.model
    if plan.channels_last and plan.features is None:
        net.to(memory_format=torch.channels_last)
    steps_per_epoch = len(train_set) // bs if drop_last else -(-len(train_set) // bs)
    optimizer = adamw(plan.groups, cfg.weight_decay)
    schedule = Schedule(optimizer, [e * steps_per_epoch for e in plan.stage_epochs], int(round(cfg.warmup_epochs * steps_per_epoch)))
    best, stopper = BestWeights(), EarlyStopping(cfg.patience, start_epoch=plan.early_stop_from)
    callbacks = [*plan.callbacks, best, stopper, ProgressLog(f"{cfg.strategy}: ", steps_per_epoch * bs if plan.features is None else None)]
    ckpt = Checkpoint(ctx.checkpoint_dir) if ctx.checkpoint_dir else None
    if ckpt:
        callbacks.append(ckpt)
    loop = Loop(net, optimizer, schedule, loss_fn, epochs=sum(plan.stage_epochs), callbacks=callbacks, seed=cfg.seed, channels_last=plan.channels_last and plan.features is None)
    if ctx.resume_state is not None:
        loop.load_state_dict(ctx.resume_state)
    params_trained = max(count_trainable(net), _trained_by_stages(plan))

    def train_batches(epoch, gen):
        return loader(train_set, bs, shuffle=True, generator=gen, workers=workers, drop_last=drop_last)

    def val_batches():
        return loader(sets["val"], bs * 2, workers=default_workers(len(sp.val), cfg.workers)) if len(sp.val) else []

    side = int(plan.data_config["input_size"][-1])
    what = "cached features" if plan.features is not None else f"{side}x{side} px images, augment {cfg.augment}"
    log(f"training {cfg.strategy}: {sum(plan.stage_epochs)} epochs (stages {plan.stage_epochs}) on {len(sp.train)} {what}, batch {bs}" + (f", resuming after epoch {loop.epoch}" if loop.epoch else ""))
    loop.fit(train_batches, val_batches)
    ctx.timing["train_s"] = sum(h["seconds"] for h in loop.history)  # training + per-epoch validation, resumed epochs included
    ctx.timing["train_items_per_s"] = loop.train_items / loop.train_seconds if loop.train_seconds else None
    t1 = time.perf_counter()
    proba = {s: predict_proba(net, sets[s], n_classes, bs * 2, default_workers(len(sets[s]), cfg.workers), plan.channels_last and plan.features is None) for s in SPLITS}
    ctx.timing["eval_s"] = time.perf_counter() - t1
    info = {
        "history": loop.history,
        "epochs_run": loop.epoch,
        "best_epoch": best.best_epoch,
        "best_val_loss": best.best,
        "stopped_early": bool(stopper.stopped_epoch),
        "stage_epochs": plan.stage_epochs,
        "class_weights": class_weights,
        "params_trainable": params_trained,
        "resumed_from_epoch": int(ctx.resume_state["epoch"]) if ctx.resume_state is not None else None,
    }
    if ckpt:
        ctx.cleanup.append(ckpt.remove)  # once the run folder is committed
    return info, proba


def _trained_by_stages(plan: Plan) -> int:
    return sum(p.numel() for g in plan.groups for p in g.params)


@torch.inference_mode()
def predict_proba(model: nn.Module, dataset, n_classes: int, batch_size: int, workers: int, channels_last: bool) -> np.ndarray:
    model.eval()
    out = []
    for x, _ in loader(dataset, batch_size, workers=workers):
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(model(x).softmax(-1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, n_classes), dtype=np.float32)
