"""What every strategy gets (`Context`) and returns (`Trained`), and the cached backbone
features that several of them share."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..log import log


@dataclass
class Context:
    """The config, the data, its split, the modality and the backbone, where to run."""

    config: object  # TrainConfig, resolved
    dataset: object  # ImageDataset or TextDataset
    splits: object  # Splits
    modality: object  # the dataset's Modality
    backbone: object | None  # image Backbone or TextBackbone; None for the baselines
    data_config: dict  # the run's preprocessing (images: input size, mean/std, crop; texts: tokens)
    placement: object  # loop.devices.Placement: device and precision
    dist: object  # loop.distributed.Dist: this process's rank among torchrun's
    features: np.ndarray | None = None  # (N, D) for every item, once a strategy extracted them
    timing: dict = field(default_factory=dict)
    checkpoint_dir: str | None = None  # where the loop saves its state each epoch (for --resume)
    resume_state: dict | None = None  # checkpoint file name -> the state saved in it
    cleanup: list = field(default_factory=list)  # called once the run folder is committed
    callbacks: list = field(default_factory=list)  # extra loop callbacks from the caller (tune's pruning), after the loop's own


@dataclass
class Trained:
    model: object  # a torch module with a spec (models.py), or a TfidfModel
    info: dict  # head kind, chosen hyper-parameters, history
    proba: dict  # split name -> (n, C) probabilities for the split's items


def cached_features(ctx: Context) -> np.ndarray:
    """Backbone features (N, D) of every item, through the on-disk cache (images or texts)."""
    from ..features import extract_features

    if ctx.features is not None:
        return ctx.features
    members = getattr(ctx.backbone, "members", None)
    if members:  # a feature ensemble: each member through its own cache, side by side
        ensemble, parts, timing, caches = ctx.backbone, [], {}, []
        for m in members:
            ctx.backbone, ctx.features = m, None
            parts.append(cached_features(ctx))
            caches.append((ctx.config.extra["feature_cache"], ctx.config.extra["engine_dir"]))
            for k in ("extract_s", "backbone_runs", "cached_items"):
                timing[k] = timing.get(k, 0) + ctx.timing[k]
        ctx.backbone = ensemble
        ctx.timing.update(timing)
        ctx.config.extra["feature_cache"], ctx.config.extra["feature_caches"] = caches[0][0], [c for c, _ in caches]
        ctx.config.extra["engine_dir"], ctx.config.extra["engine_dirs"] = caches[0][1], [e for _, e in caches]
        ctx.features = np.concatenate(parts, axis=1)
        return ctx.features
    cfg = ctx.config
    stats: dict = {}
    if ctx.dist.is_main:
        log(f"extracting {ctx.backbone.name} features of {len(ctx.dataset)} items (cached items are not recomputed)")
    engine = cfg.engine if len(ctx.backbone.engines) > 1 else ctx.backbone.engines[0]  # one engine (texts): no choice to read
    X = extract_features(ctx.backbone, ctx.dataset, modality=ctx.modality, cache_dir=cfg.cache_dir, batch_size=cfg.batch_size, stats=stats,
                         engine=engine, num_workers=cfg.workers, placement=ctx.placement, dist=ctx.dist)
    ctx.features = X
    choice = stats.get("engine_choice")
    cfg.extra["engine"] = choice["engine"] if choice else f"none: all {stats['cached']} items cached"
    cfg.extra["engine_choice"] = choice or {"requested": engine, "reason": "backbone not run: every item's features were cached"}
    ctx.timing.update(extract_s=stats["extract_s"], backbone_runs=stats["computed"], cached_items=stats["cached"])
    cfg.extra["feature_cache"] = stats["cache_dir"]  # where the report finds the features (PCA/t-SNE)
    cfg.extra["engine_dir"] = stats["engine_dir"]  # where the backbone's export and engine choice are (predict runs it there)
    return X
