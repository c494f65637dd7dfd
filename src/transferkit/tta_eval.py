"""Test-time augmentation of a finished fit (`--tta flip|flip+crops`, images): the test split is
predicted again with the augmented model (`tta.TTA`: probabilities averaged over the views),
which becomes the saved model (its spec says which views, so predict, serve and export apply
them). The validation numbers stay those of the un-augmented fit (for the probe, the fit that
never saw the validation items); the test numbers without TTA are kept beside, with the time
each costs per item."""
from __future__ import annotations

import time

import numpy as np
import torch

from .log import log


def _proba(model, raws, pre, placement, batch: int = 32) -> np.ndarray:
    from .model_io import predict_proba

    return np.concatenate([predict_proba(model, pre.batch(raws[s : s + batch]), placement) for s in range(0, len(raws), batch)]) if raws else np.zeros((0, 0))


def apply_tta(ctx, trained) -> None:
    from .tta import TTA, tta_views

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    if cfg.tta == "none" or not isinstance(trained.model, torch.nn.Module) or not len(sp.test):
        return
    n_views = tta_views(cfg.tta)
    log(f"test-time augmentation ({cfg.tta}: {n_views} views per image) on the {len(sp.test)} test items")
    pre = ctx.modality.preprocessor(ctx.data_config)
    raws = [ctx.modality.raw_item(ds, int(i), ctx.data_config) for i in sp.test]
    inner = trained.model.eval().to(ctx.placement.device)
    aug = TTA(inner, cfg.tta).eval()
    t0 = time.perf_counter()
    plain = _proba(inner, raws[:32], pre, ctx.placement)
    t_plain = (time.perf_counter() - t0) / max(1, len(plain))
    t0 = time.perf_counter()
    proba = _proba(aug, raws, pre, ctx.placement)
    t_aug = (time.perf_counter() - t0) / max(1, len(proba))
    inner.to("cpu")
    trained.info["tta"] = {"views": cfg.tta, "n_views": n_views, "test_without": trained.proba["test"], "predict_s_per_item": t_aug,
                           "predict_s_per_item_without": t_plain, "note": "validation numbers are without TTA (the fit that never saw them); test numbers with it"}
    trained.proba["test"] = proba
    trained.model.spec = {**trained.model.spec, "tta": cfg.tta}
