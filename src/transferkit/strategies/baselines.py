"""The baselines transfer is measured against: a compact CNN and a dense network on pixels
trained from random init (images), and TF-IDF n-grams with logistic regression (texts)."""
from __future__ import annotations

import time

from .context import Context, Trained


def _train(ctx: Context, model, head: str, channels_last: bool | None = None) -> Trained:
    from ..loop import Group, Plan, fit

    cfg = ctx.config
    info, proba = fit(ctx, Plan(model, [Group("all", list(model.parameters()), cfg.lr)], [cfg.epochs], channels_last=channels_last))
    info.update(head=head, strategy=cfg.strategy, augment=cfg.augment, image_size=int(ctx.data_config["input_size"][-1]), lr=cfg.lr, epochs=cfg.epochs, dropout=cfg.dropout)
    return Trained(model, info, proba)


def scratch(ctx: Context) -> Trained:
    """A compact CNN sized from the input resolution, trained from random init."""
    from ..models import ScratchCNN

    return _train(ctx, ScratchCNN(len(ctx.dataset.classes), int(ctx.data_config["input_size"][-1]), dropout=ctx.config.dropout), "scratch_cnn")


def mlp(ctx: Context) -> Trained:
    """A dense network on raw pixels (the seeds' "ANN")."""
    from ..models import PixelMLP

    return _train(ctx, PixelMLP(len(ctx.dataset.classes), int(ctx.data_config["input_size"][-1]), dropout=ctx.config.dropout), "pixel_mlp", channels_last=False)


def tfidf(ctx: Context) -> Trained:
    """TF-IDF word + character n-grams and logistic regression; no backbone."""
    from ..tfidf import TfidfModel

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    if not ctx.dist.is_main:  # scikit-learn on one process: rank 0 fits it
        return None
    texts = lambda idx: [ds.texts[i] for i in idx]  # noqa: E731
    t0 = time.perf_counter()
    model = TfidfModel(len(ds.classes), seed=cfg.seed, class_weight=cfg.class_weight).fit(texts(sp.train), ds.labels[sp.train], texts(sp.val), ds.labels[sp.val])
    ctx.timing["train_s"] = time.perf_counter() - t0
    proba = {name: model.predict_proba(texts(getattr(sp, name))) for name in ("train", "val", "test")}
    return Trained(model, model.info(), proba)
