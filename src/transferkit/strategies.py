"""Strategies: each takes the shared context and returns the trained model, its info and the
class probabilities of every split.

Images (texts: text_strategies.py, found through `strategy_func(name, kind)`):
- probe: backbone features computed once (cached), a classifier fitted on them;
- head: backbone frozen, a dense head trained on augmented images (on cached features when
  there is no augmentation: a frozen body sees the same pixels every epoch);
- partial: the top `unfreeze` backbone blocks train too, at lower learning rates;
- finetune: two stages, the head warmed up on a frozen body, then everything with
  discriminative learning rates (fastai's `fine_tune`, the Keras transfer-learning guide);
- scratch: a compact CNN from random init; mlp: a dense network on raw pixels.
Every image strategy that trains a network runs the one loop in `transferkit.train`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backbones import Backbone
from .config import TrainConfig
from .data import ItemDataset, Splits
from .features import extract_features
from .head_cache import fit_head_cached
from .heads import POWERS, DenseHead
from .log import log


@dataclass
class Context:
    """What every strategy gets: the config, the data, its split and the backbone."""

    config: TrainConfig
    dataset: ItemDataset  # ImageDataset or TextDataset
    splits: Splits
    backbone: Backbone | None  # Backbone or TextBackbone; None for tfidf
    features: np.ndarray | None = None  # (N, D) for every item, when a strategy extracted them
    timing: dict = field(default_factory=dict)
    lengths: np.ndarray | None = None  # texts: tokens per item before truncation (batching by length)
    data_config: dict | None = None  # images: the run's preprocessing (input size, mean/std, crop)
    checkpoint_dir: str | None = None  # images: where the loop saves its state each epoch (for --resume)
    resume_state: dict | None = None  # images: a checkpoint to continue from
    cleanup: list = field(default_factory=list)  # called once the run folder is committed


@dataclass
class Trained:
    model: object  # TransferModel, ScratchCNN, PixelMLP, TextTransferModel, or TfidfModel (tfidf)
    info: dict  # head kind, chosen hyper-parameters, history
    proba: dict  # split name -> (n, C) probabilities for the split's items


def cached_features(ctx: Context) -> np.ndarray:
    """Backbone features (N, D) of every item, through the on-disk cache (images or texts)."""
    cfg = ctx.config
    stats: dict = {}
    log(f"extracting {ctx.backbone.name} features of {len(ctx.dataset)} items (cached items are not recomputed)")
    X = extract_features(ctx.backbone, ctx.dataset, cache_dir=cfg.cache_dir, batch_size=cfg.batch_size, stats=stats, engine=cfg.engine, num_workers=cfg.workers)
    ctx.features = X
    if ctx.dataset.kind != "text":  # what ran the backbone (or that nothing had to)
        choice = stats.get("engine_choice")
        cfg.extra["engine"] = choice["engine"] if choice else f"none: all {stats['cached']} items cached"
        cfg.extra["engine_choice"] = choice or {"requested": cfg.engine, "reason": "backbone not run: every item's features were cached"}
    ctx.timing.update(extract_s=stats["extract_s"], backbone_runs=stats["computed"], cached_items=stats["cached"])
    cfg.extra["feature_cache"] = stats["cache_dir"]  # where the report finds the features (PCA/t-SNE)
    return X


def probe(ctx: Context) -> Trained:
    """Backbone features computed once (cached on disk), a classifier fitted on them."""
    import torch

    from .model import TransferModel

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    X = cached_features(ctx)
    y = ds.labels
    log(f"fitting the {cfg.head} head on {len(sp.train)} training items")
    features_dir = Path(cfg.extra["feature_cache"])  # ROOT/features/<namespace>, set by cached_features
    heads_dir = features_dir.parent.parent / "heads" / features_dir.name  # beside the features it is fitted on
    head, info, timing, heldout = fit_head_cached(cfg.head, X[sp.train], y[sp.train], X[sp.val], y[sp.val], len(ds.classes), heads_dir, seed=cfg.seed, hidden=cfg.hidden, power=cfg.feature_power, refit=cfg.refit)
    ctx.timing.update(timing)
    dim, n = int(X.shape[1]), len(ds.classes)
    info.update(dim=dim, n_classes=n)
    with torch.no_grad():  # validation metrics from the fit that never saw the validation items
        proba = {name: (heldout if name == "val" else head)(torch.from_numpy(X[getattr(sp, name)])).softmax(-1).numpy() for name in ("train", "val", "test")}
    model = ctx.backbone.transfer_model(head)  # images: a TransferModel; texts: a TextTransferModel
    if isinstance(model, TransferModel):  # texts keep the head's shape in the weights file's metadata (run.save_model)
        shape = {"kind": "linear", "power": POWERS[info["power"]]} if cfg.head == "linear" else {"kind": "mlp", "hidden": cfg.hidden}
        model.spec = _transfer_spec(ctx, {**shape, "dim": dim, "n_classes": n}, classifier_reset=False)
    return Trained(model, info, proba)


# ---------------------------------------------------------------------------- trained (images)
def _transfer_spec(ctx: Context, head: dict, classifier_reset: bool) -> dict:
    from .backbones.registry import _resolve_arch

    return {"kind": "transfer", "backbone": ctx.config.backbone, "arch": _resolve_arch(ctx.config.backbone), "classifier_reset": classifier_reset, "head": head}


def _transfer_model(ctx: Context):
    """The backbone (its ImageNet classifier dropped) + a new dense head."""
    from .model import TransferModel

    cfg = ctx.config
    body = ctx.backbone.model
    body.reset_classifier(0)
    dim, n = int(body.num_features), len(ctx.dataset.classes)
    head = DenseHead(dim, n, cfg.hidden, batch_norm=cfg.batch_norm, dropout=cfg.dropout)
    spec = _transfer_spec(ctx, {"kind": "dense", "dim": dim, "n_classes": n, "hidden": cfg.hidden, "batch_norm": cfg.batch_norm, "dropout": cfg.dropout}, classifier_reset=True)
    return TransferModel(body, head, spec)


def _block_groups(body, blocks: list[list[str]], top_lr: float, decay: float, first_stage: int):
    """One AdamW group per block: `top_lr` for the top block, × `decay` per block below."""
    from .train import Group, discriminative_lrs
    from .train.optim import block_modules

    lrs = discriminative_lrs(len(blocks), top_lr, decay)
    groups, seen = [], set()
    for i, (names, lr) in enumerate(zip(blocks, lrs)):
        params = [p for m in block_modules(body, names) for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        groups.append(Group(f"block{i}", params, lr, first_stage))
    return groups, seen


def _fit(ctx: Context, plan, extra: dict) -> Trained:
    from .train import fit

    info, proba = fit(ctx, plan)
    cfg = ctx.config
    info.update(extra, strategy=cfg.strategy, augment=cfg.augment, image_size=int(plan.data_config["input_size"][-1]), lr=cfg.lr, epochs=cfg.epochs)
    return Trained(plan.model, info, proba)


def head(ctx: Context) -> Trained:
    """Frozen backbone (weights and BN statistics), dense head trained on augmented images."""
    from .train import Group, Plan, freeze

    cfg = ctx.config
    model = _transfer_model(ctx)
    freeze(model.backbone)
    groups = [Group("head", list(model.head.parameters()), cfg.lr)]
    if cfg.augment == "none":  # the frozen body would see the same pixels every epoch: use the cache
        X = cached_features(ctx)
        plan = Plan(model, groups, [cfg.epochs], ctx.data_config, features=X, train_module=model.head)
        return _fit(ctx, plan, {"head": "dense", "trained_on": "cached features"})
    plan = Plan(model, groups, [cfg.epochs], ctx.data_config)
    return _fit(ctx, plan, {"head": "dense", "trained_on": "augmented images"})


def partial(ctx: Context) -> Trained:
    """The top `unfreeze` backbone blocks (timm's group_matcher) train with the head, at
    `body_lr_mult` of its learning rate (× `layer_decay` per block further down); the rest
    stays frozen, BN statistics included."""
    from .train import Group, Plan, backbone_blocks, freeze, keep_bn_stats, unfreeze
    from .train.optim import block_modules

    cfg = ctx.config
    model = _transfer_model(ctx)
    body = model.backbone
    blocks = backbone_blocks(body)
    top = blocks[len(blocks) - min(cfg.unfreeze, len(blocks)) :]
    freeze(body)
    for names in top:
        for m in block_modules(body, names):
            unfreeze(m)
            if not cfg.train_bn:
                keep_bn_stats(m)
    body_groups, _ = _block_groups(body, top, cfg.lr * cfg.body_lr_mult, cfg.layer_decay, 0) if top else ([], set())
    groups = [Group("head", list(model.head.parameters()), cfg.lr), *body_groups]
    plan = Plan(model, groups, [cfg.epochs], ctx.data_config)
    return _fit(ctx, plan, {"head": "dense", "unfrozen_blocks": len(top), "unfrozen_modules": [n for g in top for n in g], "blocks_total": len(blocks)})


def finetune(ctx: Context) -> Trained:
    """Stage 1 (`head_epochs`): the head alone on the frozen body. Stage 2: everything, with
    the learning rate falling block by block from the head to the stem (discriminative)."""
    from .train import Group, Plan, Unfreeze, backbone_blocks, freeze

    cfg = ctx.config
    model = _transfer_model(ctx)
    body = model.backbone
    blocks = backbone_blocks(body)
    stage2 = 1 if cfg.head_epochs else 0
    body_groups, seen = _block_groups(body, blocks, cfg.lr * cfg.body_lr_mult, cfg.layer_decay, stage2)
    rest = [p for p in body.parameters() if id(p) not in seen]
    if rest:
        body_groups[-1].params += rest
    freeze(body)
    groups = [Group("head", list(model.head.parameters()), cfg.lr), *body_groups]
    stages = [cfg.head_epochs, cfg.epochs - cfg.head_epochs] if cfg.head_epochs else [cfg.epochs]
    callbacks = [Unfreeze([body], after_epoch=cfg.head_epochs, keep_stats=not cfg.train_bn)]
    plan = Plan(model, groups, stages, ctx.data_config, callbacks=callbacks, early_stop_from=cfg.head_epochs + 1)
    return _fit(ctx, plan, {"head": "dense", "blocks_total": len(blocks)})


def scratch(ctx: Context) -> Trained:
    """A compact CNN sized from the input resolution, trained from random init."""
    from .model import ScratchCNN
    from .train import Group, Plan

    cfg = ctx.config
    model = ScratchCNN(len(ctx.dataset.classes), int(ctx.data_config["input_size"][-1]))
    plan = Plan(model, [Group("all", list(model.parameters()), cfg.lr)], [cfg.epochs], ctx.data_config)
    return _fit(ctx, plan, {"head": "scratch_cnn"})


def mlp(ctx: Context) -> Trained:
    """A dense network on raw pixels (the seeds' "ANN")."""
    from .model import PixelMLP
    from .train import Group, Plan

    cfg = ctx.config
    model = PixelMLP(len(ctx.dataset.classes), int(ctx.data_config["input_size"][-1]))
    plan = Plan(model, [Group("all", list(model.parameters()), cfg.lr)], [cfg.epochs], ctx.data_config, channels_last=False)
    return _fit(ctx, plan, {"head": "pixel_mlp"})


STRATEGY_FUNCS = {"probe": probe, "head": head, "partial": partial, "finetune": finetune, "scratch": scratch, "mlp": mlp}


def strategy_func(name: str, kind: str):
    """The function behind strategy `name` for `kind` ('image' or 'text') data."""
    from .errors import TransferkitError

    if kind == "text":
        from . import text_strategies as ts

        funcs = {"probe": probe, "tfidf": ts.tfidf, "head": ts.head, "partial": ts.partial, "finetune": ts.finetune}
    else:
        funcs = STRATEGY_FUNCS
    if name not in funcs:
        raise TransferkitError(f"strategy '{name}' is not available for {kind} data (choices: {', '.join(funcs)})")
    return funcs[name]
