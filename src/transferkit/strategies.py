"""Strategies: each takes the shared context and returns a trained TransferModel + info."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .backbones import Backbone
from .config import TrainConfig
from .data import ItemDataset, Splits
from .features import extract_features
from .heads import fit_linear_head, fit_mlp_head
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


@dataclass
class Trained:
    model: object  # TransferModel, TextTransferModel, or TfidfModel (tfidf)
    info: dict  # head kind, chosen hyper-parameters, history
    proba: dict  # split name -> (n, C) probabilities for the split's items


def cached_features(ctx: Context) -> np.ndarray:
    """Backbone features (N, D) of every item, through the on-disk cache (images or texts)."""
    cfg = ctx.config
    stats: dict = {}
    log(f"extracting {ctx.backbone.name} features of {len(ctx.dataset)} items (cached items are not recomputed)")
    X = extract_features(ctx.backbone, ctx.dataset, cache_dir=cfg.cache_dir, batch_size=cfg.batch_size, stats=stats)
    ctx.features = X
    ctx.timing.update(extract_s=stats["extract_s"], backbone_runs=stats["computed"], cached_items=stats["cached"])
    cfg.extra["feature_cache"] = stats["cache_dir"]  # where the report finds the features (PCA/t-SNE)
    return X


def probe(ctx: Context) -> Trained:
    """Backbone features computed once (cached on disk), a classifier fitted on them."""
    import torch

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    X = cached_features(ctx)
    y = ds.labels
    t0 = time.perf_counter()
    log(f"fitting the {cfg.head} head on {len(sp.train)} training items")
    if cfg.head == "mlp":
        head, info = fit_mlp_head(X[sp.train], y[sp.train], X[sp.val], y[sp.val], len(ds.classes), seed=cfg.seed, hidden=cfg.hidden)
    else:
        head, info = fit_linear_head(X[sp.train], y[sp.train], X[sp.val], y[sp.val], len(ds.classes), seed=cfg.seed)
    ctx.timing["train_s"] = time.perf_counter() - t0
    info.update(dim=X.shape[1], n_classes=len(ds.classes))
    with torch.no_grad():
        proba = {name: head(torch.from_numpy(X[getattr(sp, name)])).softmax(-1).numpy() for name in ("train", "val", "test")}
    return Trained(ctx.backbone.transfer_model(head), info, proba)


STRATEGY_FUNCS = {"probe": probe}


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
