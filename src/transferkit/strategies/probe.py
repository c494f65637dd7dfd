"""probe: backbone features computed once (cached on disk), a classifier fitted on them — the
seed's "transfer values". The linear head is a multinomial logistic regression with C (and the
signed-square-root feature power) chosen on validation, refitted on train + validation; the
`--head mlp` head (dense -> ReLU -> [batch-norm] -> dropout -> classes) trains in the one loop
on the cached features."""
from __future__ import annotations

import torch

from ..log import log
from .context import Context, Trained, cached_features


def probe(ctx: Context) -> Trained:
    from ..head_cache import fit_head_cached, heads_dir_for
    from ..heads import POWERS, DenseHead

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    X = cached_features(ctx)  # under torchrun every rank embeds its share into the one cache
    dim, n = int(X.shape[1]), len(ds.classes)
    if cfg.head == "mlp":
        from ..loop import Group, Plan, fit

        shape = {"kind": "dense", "dim": dim, "n_classes": n, "hidden": cfg.hidden, "batch_norm": cfg.batch_norm, "dropout": cfg.dropout}
        head = DenseHead(dim, n, cfg.hidden, batch_norm=cfg.batch_norm, dropout=cfg.dropout)
        model = ctx.backbone.transfer_model(head, shape)
        plan = Plan(model, [Group("head", list(head.parameters()), cfg.lr)], [cfg.epochs], on_features=True, label="probe mlp head")
        info, proba = fit(ctx, plan, X)
        info.update(head="mlp", hidden=cfg.hidden, dim=dim, n_classes=n, trained_on="cached features")
        return Trained(model, info, proba)
    if not ctx.dist.is_main:  # the linear head is fitted once, on rank 0
        return None
    if getattr(ds, "Y", None) is not None:
        return _probe_label_sets(ctx, X)
    log(f"fitting the {cfg.head} head on {len(sp.train)} training items")
    heads_dir = heads_dir_for(cfg.extra["feature_cache"])  # beside the features it is fitted on (set by cached_features)
    y = ds.labels
    head, info, timing, heldout = fit_head_cached(cfg.head, X[sp.train], y[sp.train], X[sp.val], y[sp.val], n, heads_dir, seed=cfg.seed,
                                                  power=cfg.feature_power, refit=cfg.refit, class_weight=cfg.class_weight)
    ctx.timing.update(timing)
    info.update(dim=dim, n_classes=n)
    with torch.no_grad():  # validation metrics from the fit that never saw the validation items
        proba = {name: (heldout if name == "val" else head)(torch.from_numpy(X[getattr(sp, name)])).softmax(-1).numpy() for name in ("train", "val", "test")}
    shape = {"kind": "linear", "power": POWERS[info["power"]], "dim": dim, "n_classes": n}
    return Trained(ctx.backbone.transfer_model(head, shape), info, proba)


def _probe_label_sets(ctx: Context, X) -> Trained:
    """Label sets: one-vs-rest logistic regression (heads_multilabel.py), C and the feature power
    chosen on validation; refitted on train + validation at them (`--refit`), the validation
    probabilities (thresholds are chosen on them) from the fit that never saw validation."""
    import time

    import numpy as np

    from ..heads import POWERS
    from ..heads_multilabel import fit_ovr_head

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    Y = ds.Y
    log(f"fitting {len(ds.classes)} one-vs-rest logistic regressions on {len(sp.train)} training items")
    t0 = time.perf_counter()
    head, info = fit_ovr_head(X[sp.train], Y[sp.train], X[sp.val], Y[sp.val], power=cfg.feature_power, class_weight=cfg.class_weight, seed=cfg.seed)
    heldout = head
    if cfg.refit and len(sp.val):
        both = np.concatenate([sp.train, sp.val])
        head, _ = fit_ovr_head(X[both], Y[both], X[:0], Y[:0], power=info["power"], class_weight=cfg.class_weight, C=info["C"], seed=cfg.seed)
        info["refit"] = {"on": "train+val", "items": int(len(both))}
    ctx.timing.update(train_s=time.perf_counter() - t0, head_cached=False)
    dim, n = int(X.shape[1]), len(ds.classes)
    info.update(dim=dim, n_classes=n)
    with torch.no_grad():
        proba = {name: (heldout if name == "val" else head)(torch.from_numpy(X[getattr(sp, name)])).sigmoid().numpy() for name in ("train", "val", "test")}
    shape = {"kind": "linear", "power": POWERS[info["power"]], "dim": dim, "n_classes": n}
    return Trained(ctx.backbone.transfer_model(head, shape), info, proba)
