"""Run a strategy's training plan through the one loop, for any modality: loss, batches (from
the modality), device and precision, torchrun ranks, callbacks, checkpoints and resume, and the
class probabilities of every split with the best weights.

Two kinds of input feed the loop: the modality's items (images or texts through the whole
model) or the cached backbone features (only the head trains, standardised features in, the
standardisation folded into the head's first layer afterwards, so it takes raw features)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..heads import fold_standardisation, standardiser
from ..log import log
from .callbacks import BestWeights, Checkpoint, EarlyStopping, ProgressLog
from .data import default_workers, loader
from .distributed import gather_rows
from .freeze import count_trainable
from .loop import Loop, forward
from .optim import Group, Schedule, adamw, balanced_class_weights

SPLITS = ("train", "val", "test")
FEATURE_BATCH = 128  # cached feature vectors per step: cheap steps, many of them


@dataclass
class Plan:
    """What a strategy hands to `fit`: the model, its parameter groups and stages."""

    model: nn.Module  # the model the run saves (inputs in, logits out)
    groups: list[Group]  # AdamW groups; `first_stage` says when each starts learning
    stage_epochs: list[int]  # epochs per stage, e.g. [2, 8]: head warm-up, then everything
    callbacks: list = field(default_factory=list)  # strategy-specific (e.g. Unfreeze), run before the common ones
    early_stop_from: int = 1  # epoch from which early stopping counts (after a warm-up stage)
    on_features: bool = False  # train only model.head, on the cached backbone features
    checkpoint_name: str = "last.pt"  # file in the run's checkpoint folder
    label: str = ""  # what the progress lines call this fit
    channels_last: bool | None = None  # None: the modality's choice (images: channels-last for CNNs)


def make_loss(cfg, train_labels: np.ndarray, n_classes: int) -> tuple[nn.Module, list[float] | None]:
    """Cross-entropy on class indices; for label sets (train_labels (N, L) 0/1) binary cross-entropy
    on each label's logit, with positive weights n_neg / n_pos per label under --class-weight balanced."""
    if train_labels.ndim == 2:
        pw = None
        if cfg.class_weight == "balanced":
            pos = train_labels.sum(0).astype(np.float64)
            pw = np.where(pos > 0, (len(train_labels) - pos) / np.maximum(pos, 1), 1.0)
        return nn.BCEWithLogitsLoss(pos_weight=None if pw is None else torch.tensor(pw, dtype=torch.float32)), (None if pw is None else pw.tolist())
    weights = balanced_class_weights(train_labels, n_classes) if cfg.class_weight == "balanced" else None
    w = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
    return nn.CrossEntropyLoss(weight=w, label_smoothing=cfg.label_smoothing), (weights.tolist() if weights is not None else None)


class _FeatureItems(torch.utils.data.Dataset):
    def __init__(self, Z: torch.Tensor, y: torch.Tensor):
        self.Z, self.y = Z, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, j):
        return self.Z[j], self.y[j]


def micro_batches(order: list[np.ndarray], micro: int, world: int, rank: int) -> list[list[int]]:
    """This rank's share of each micro-batch: every step batch of `order` cut into micro-batches
    of `micro` items (the last step's may be fewer), each shared out among the ranks. So K
    accumulated micro-batches, or N ranks' shares, hold exactly one step batch's items."""
    out = []
    for step in order:
        for s in range(0, len(step), micro):
            mine = step[s : s + micro][rank::world]
            if len(mine):
                out.append(mine.tolist())
    return out


def fit(ctx, plan: Plan, features: np.ndarray | None = None):
    """Train `plan.model` on ctx's split; returns (info, proba per split). `features` (N, D) of
    every item when `plan.on_features`."""
    cfg, ds, sp, mod = ctx.config, ctx.dataset, ctx.splits, ctx.modality
    place, dist = ctx.placement, ctx.dist
    n_classes = len(ds.classes)
    multilabel = getattr(ds, "Y", None) is not None
    targets = ds.Y if multilabel else ds.labels
    loss_fn, class_weights = make_loss(cfg, targets[sp.train], n_classes)
    loss_fn = loss_fn.to(place.device)
    y_all = torch.from_numpy(ds.Y.astype(np.float32) if multilabel else ds.labels.astype(np.int64))
    net = plan.model.head if plan.on_features else plan.model
    if plan.on_features:
        mu, sd = standardiser(features[sp.train])
        Z = torch.from_numpy((features - mu) / sd)
        sets = {s: _FeatureItems(Z[getattr(sp, s)], y_all[getattr(sp, s)]) for s in SPLITS}
        eval_sets = sets
        bs, collate, workers, channels_last = FEATURE_BATCH, None, 0, False
        random_tf = False
    else:
        augment = cfg.augment if len(mod.augments) > 1 else "none"  # texts have no augmentation
        sets = {s: mod.training_items(ds, getattr(sp, s), ctx, augment=augment if s == "train" else "none") for s in SPLITS}
        # every split is predicted without augmentation: random transforms would make the train
        # split's probabilities depend on the RNG state the last epoch left (so a run resumed
        # after its final epoch, which runs no epoch, would report other train metrics)
        eval_sets = {**sets, "train": mod.training_items(ds, sp.train, ctx, augment="none")} if augment not in (None, "none") else sets
        bs, collate = cfg.batch_size, mod.collate(ctx)
        channels_last = mod.channels_last if plan.channels_last is None else plan.channels_last
        random_tf = augment not in (None, "none")
        workers = default_workers(len(sp.train), place.device, cfg.workers, random_transforms=random_tf)
        if channels_last:
            net.to(memory_format=torch.channels_last)
    plan.model.to(place.device)
    # items per micro-batch over all ranks (--batch-size is per process; the feature batch is global),
    # and per optimizer step (x --grad-accum)
    micro = FEATURE_BATCH if plan.on_features else bs * dist.world
    if plan.on_features:
        bs = -(-FEATURE_BATCH // dist.world)
    step_bs = micro * cfg.grad_accum
    n_train = len(sets["train"])
    drop_last = mod.drop_last and n_train > step_bs and not plan.on_features  # a last batch of 1 breaks batch-norm in training mode
    lengths = mod.item_lengths(ctx, sp.train) if not plan.on_features else None
    steps_per_epoch = max(1, n_train // step_bs if drop_last else -(-n_train // step_bs))
    optimizer = adamw(plan.groups, cfg.weight_decay)
    schedule = Schedule(optimizer, [e * steps_per_epoch for e in plan.stage_epochs], int(round(cfg.warmup_epochs * steps_per_epoch)))
    best, stopper = BestWeights(), EarlyStopping(cfg.patience, start_epoch=plan.early_stop_from)
    label = plan.label or cfg.strategy
    callbacks = [*plan.callbacks, best, stopper, ProgressLog(f"{label}: ", None if plan.on_features else (steps_per_epoch * step_bs if drop_last else n_train), unit=mod.unit), *ctx.callbacks]
    ckpt = Checkpoint(ctx.checkpoint_dir, plan.checkpoint_name) if ctx.checkpoint_dir else None
    if ckpt:
        callbacks.append(ckpt)
    model = net
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # DDP synchronises the parameters that require gradients when it is built: every one
        # of the plan's (a body unfrozen at stage 2 included), then the stage-1 freezing is restored
        trainable = [p for g in plan.groups for p in g.params]
        was = [p.requires_grad for p in trainable]
        for p in trainable:
            p.requires_grad_(True)
        model = DDP(net, device_ids=[place.device.index] if place.device.type == "cuda" else None, find_unused_parameters=True)
        for p, w in zip(trainable, was):
            p.requires_grad_(w)
    loop = Loop(model, optimizer, schedule, loss_fn, epochs=sum(plan.stage_epochs), callbacks=callbacks, seed=cfg.seed, channels_last=channels_last,
                clip_grad_norm=mod.clip_grad_norm if not plan.on_features else None, placement=place, accumulate=cfg.grad_accum, dist=dist)
    resume = (ctx.resume_state or {}).get(plan.checkpoint_name)
    if resume is not None:
        loop.load_state_dict(resume)
    params_trained = max(count_trainable(net), sum(p.numel() for g in plan.groups for p in g.params))

    def train_batches(epoch, gen):
        order = mod.batch_order(n_train, step_bs, gen, lengths, drop_last) if not plan.on_features else _random_order(n_train, step_bs, gen)
        mine = micro_batches(order, micro, dist.world, dist.rank)
        return loader(sets["train"], 1, batch_sampler=mine, generator=gen, workers=workers, collate_fn=collate, pin_memory=place.pin_memory, thread=not random_tf)

    def eval_batches(split):
        order = mod.eval_order(ctx, getattr(sp, split)) if not plan.on_features else np.arange(len(sets[split]))
        mine = dist.shard(order)
        spans = [mine[s : s + bs * 2].tolist() for s in range(0, len(mine), bs * 2)]
        w = 0 if plan.on_features else default_workers(len(mine), place.device, cfg.workers)
        return mine, loader(eval_sets[split], 1, batch_sampler=spans, workers=w, collate_fn=collate, pin_memory=place.pin_memory)

    if dist.is_main:
        what = "cached features" if plan.on_features else mod.describe_inputs(ctx)
        log(f"training {label}: {sum(plan.stage_epochs)} epochs (stages {plan.stage_epochs}) on {len(sp.train)} {what}, batch {step_bs}"
            + (f" ({dist.world} processes x {bs}" + (f" x {cfg.grad_accum} accumulated" if cfg.grad_accum > 1 else "") + ")" if dist.active or cfg.grad_accum > 1 else "")
            + f", {place.device} {place.precision}" + (f", resuming after epoch {loop.epoch}" if loop.epoch else ""))
    loop.fit(train_batches, (lambda: eval_batches("val")[1]) if len(sp.val) else None)
    ctx.timing["train_s"] = ctx.timing.get("train_s", 0.0) + sum(h["seconds"] for h in loop.history)  # training + per-epoch validation, resumed epochs included
    ctx.timing["train_items_per_s"] = loop.train_items / loop.train_seconds if loop.train_seconds else None
    t1 = time.perf_counter()
    proba = {s: _predict(net, *eval_batches(s), len(sets[s]), n_classes, place, channels_last, dist, multilabel) for s in SPLITS}
    ctx.timing["eval_s"] = ctx.timing.get("eval_s", 0.0) + time.perf_counter() - t1
    if plan.on_features:
        fold_standardisation(_first_linear(plan.model.head), mu, sd)
    plan.model.to("cpu")
    info = {
        "history": loop.history,
        "epochs_run": loop.epoch,
        "best_epoch": best.best_epoch,
        "best_val_loss": best.best,
        "stopped_early": bool(stopper.stopped_epoch),
        "stage_epochs": plan.stage_epochs,
        "class_weights": class_weights,
        "params_trainable": params_trained,
        "resumed_from_epoch": int(resume["epoch"]) if resume is not None else None,
        "effective_batch": step_bs,
    }
    if ckpt:
        ctx.cleanup.append(ckpt.remove)  # once the run folder is committed
    return info, proba


def _random_order(n: int, batch: int, gen: torch.Generator) -> list[np.ndarray]:
    perm = torch.randperm(n, generator=gen).numpy()
    return [perm[s : s + batch] for s in range(0, n, batch)]


def _first_linear(head: nn.Module) -> nn.Linear:
    return next(m for m in head.modules() if isinstance(m, nn.Linear))


@torch.inference_mode()
def _predict(model: nn.Module, positions: np.ndarray, batches, n: int, n_classes: int, place, channels_last: bool, dist, multilabel: bool = False) -> np.ndarray:
    """Softmax probabilities (n, C) in the split's order, each rank predicting its share (label
    sets: each label's sigmoid)."""
    from .devices import to_device

    model.eval()
    out = []
    for x, _ in batches:
        with place.autocast():
            logits = forward(model, to_device(x, place.device), channels_last)
        out.append((logits.float().sigmoid() if multilabel else logits.float().softmax(-1)).cpu().numpy())
    rows = np.concatenate(out) if out else np.zeros((0, n_classes), dtype=np.float32)
    full = np.zeros((n, n_classes), dtype=np.float32)
    full[positions] = rows
    return gather_rows(dist, positions, rows, n) if dist.active else full
