"""Strategies: each takes the shared context and returns a trained TransferModel + info."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .backbones import Backbone
from .config import TrainConfig
from .data import ImageDataset, Splits
from .features import extract_features
from .heads import fit_linear_head, fit_mlp_head
from .log import log
from .model import TransferModel


@dataclass
class Context:
    """What every strategy gets: the config, the data, its split and the backbone."""

    config: TrainConfig
    dataset: ImageDataset
    splits: Splits
    backbone: Backbone
    features: np.ndarray | None = None  # (N, D) for every item, when a strategy extracted them
    timing: dict = field(default_factory=dict)


@dataclass
class Trained:
    model: TransferModel
    info: dict  # head kind, chosen hyper-parameters, history
    proba: dict  # split name -> (n, C) probabilities for the split's items


def probe(ctx: Context) -> Trained:
    """Backbone features computed once (cached on disk), a classifier fitted on them."""
    import torch

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    stats: dict = {}
    log(f"extracting {ctx.backbone.name} features of {len(ds)} items (cached items are not recomputed)")
    X = extract_features(ctx.backbone, ds, cache_dir=cfg.cache_dir, batch_size=cfg.batch_size, stats=stats)
    ctx.features = X
    ctx.timing.update(extract_s=stats["extract_s"], backbone_runs=stats["computed"], cached_items=stats["cached"])
    cfg.extra["feature_cache"] = stats["cache_dir"]  # where the report finds the features (PCA/t-SNE)
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
    return Trained(TransferModel(ctx.backbone.model, head), info, proba)


STRATEGY_FUNCS = {"probe": probe}
