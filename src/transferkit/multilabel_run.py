"""Label sets in a run: the decision thresholds (chosen on validation only, saved in the model's
spec), each split's numbers (evaluate_multilabel.py; `accuracy` is the subset accuracy and
`macro_f1` the macro F1, so code written for single-label runs reads them alike), the worst test
items and the test predictions file. pipeline.py calls these where label sets replace the
softmax-only steps (temperature, test-time augmentation, selective prediction, the label audit)."""
from __future__ import annotations

import numpy as np

from . import io as tkio
from .evaluate_multilabel import DEFAULT_THRESHOLD, choose_thresholds, evaluate_multilabel, worst_items
from .log import log

SKIPPED = ("temperature calibration, selective prediction and the label audit assume one softmax label per item; "
           "for label sets each label's sigmoid probability is used as it is, with its own decision threshold")
WORST_KEPT = 24  # worst test items in metrics.json and on the page


def set_thresholds(ctx, trained) -> np.ndarray:
    """Each label's decision threshold (L,), chosen on the VALIDATION probabilities only
    (`--threshold per_label | global`), written into the model's spec (saved, exported, served)."""
    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    L = len(ds.classes)
    if len(sp.val):
        t = choose_thresholds(ds.Y[sp.val], trained.proba["val"], cfg.threshold)
        how = f"{cfg.threshold.replace('_', '-')} thresholds chosen on {len(sp.val)} validation items (F1-best)"
    else:
        t = np.full(L, DEFAULT_THRESHOLD)
        how = f"no validation items: every threshold {DEFAULT_THRESHOLD}"
    model = trained.model
    model.spec = {**(getattr(model, "spec", None) or {}), "output": "sigmoid", "thresholds": [float(x) for x in t]}
    trained.info["thresholds"] = {"mode": cfg.threshold, "chosen_on": "validation", "val_items": int(len(sp.val)), "how": how,
                                  "by_label": {c: float(x) for c, x in zip(ds.classes, t)}}
    trained.info["calibration"] = {"method": "none", "temperature": 1.0, "skipped": SKIPPED}
    log(f"multi-label: {how}; {SKIPPED}")
    return t


def thresholds_of(model) -> np.ndarray | None:
    """A multi-label model's thresholds (L,), None for a single-label model."""
    spec = getattr(model, "spec", None) or {}
    return np.asarray(spec["thresholds"], dtype=np.float64) if spec.get("output") == "sigmoid" else None


def split_metrics(Y, P, classes, thresholds) -> dict:
    """evaluate_multilabel's numbers of one split, plus the generic keys (accuracy = subset accuracy)."""
    if not len(Y):
        return {"n": 0}
    m = evaluate_multilabel(Y, P, classes, thresholds)
    m.update(n=int(len(Y)), accuracy=m["subset_accuracy"], macro_f1=m["f1_macro"], micro_f1=m["f1_micro"], samples_f1=m["f1_samples"],
             mAP=m["mean_average_precision"], multilabel=True)
    return m


def run_metrics(ctx, trained) -> dict:
    """{split: numbers} for train, val and test, and the worst test items."""
    ds, sp = ctx.dataset, ctx.splits
    t = np.asarray(trained.model.spec["thresholds"])
    out = {name: split_metrics(ds.Y[getattr(sp, name)], trained.proba[name], ds.classes, t) for name in ("test", "val", "train")}
    if len(sp.test):
        worst = worst_items(ds.Y[sp.test], trained.proba["test"], t, k=WORST_KEPT, classes=ds.classes)
        out["test"]["worst_items"] = [{**w, "index": int(sp.test[w["index"]]), "path": ds.display_path(int(sp.test[w["index"]])),
                                       "true": [ds.classes[j] for j in np.flatnonzero(ds.Y[sp.test[w["index"]]])]} for w in worst]
    return out


def metrics_json(ctx, trained, params_total: int, params_trainable: int) -> dict:
    """metrics.json of a multi-label run: each split's numbers, thresholds, timing, model, data."""
    cfg, ds, sp, mod = ctx.config, ctx.dataset, ctx.splits, ctx.modality
    metrics = run_metrics(ctx, trained)
    metrics.update(calibration={"method": "none", "temperature": 1.0, "skipped": trained.info["calibration"]["skipped"]}, selective=None, audit=None,
                   multilabel={"thresholds": trained.info["thresholds"]}, timing=dict(ctx.timing),
                   model={"params_total": params_total, "params_trainable": params_trainable, **trained.info},
                   data={"name": ds.name, "items": len(ds), "classes": ds.classes, "multilabel": True, "split_sizes": {k: len(getattr(sp, k)) for k in ("train", "val", "test")},
                         "class_counts": label_counts(ds, sp), "kind": mod.name, **({"truncation": cfg.extra["truncation"]} if "truncation" in cfg.extra else {})})
    return metrics


def label_counts(ds, sp) -> dict:
    """Items holding each label, per split (the data section of metrics.json)."""
    return {k: ds.Y[getattr(sp, k)].sum(0).astype(int).tolist() for k in ("train", "val", "test")}


def predicted_sets(P: np.ndarray, classes: list[str], thresholds) -> list[list[str]]:
    """Every label at or above its threshold, most probable first."""
    P = np.asarray(P)
    t = np.asarray(thresholds)
    return [[classes[j] for j in sorted(np.flatnonzero(p >= t), key=lambda j: -p[j])] for p in P]


def write_predictions(path, ctx, trained, extra_cols=(), extra=()) -> None:
    """The test items' true and predicted label sets (joined by '|') and every label's probability."""
    ds, sp = ctx.dataset, ctx.splits
    P = trained.proba["test"]
    t = np.asarray(trained.model.spec["thresholds"])
    pred = predicted_sets(P, ds.classes, t)
    rows = [[ds.display_path(int(i)), "|".join(ds.classes[j] for j in np.flatnonzero(ds.Y[i])), "|".join(ps), *[f"{v:.4f}" for v in p]]
            for i, p, ps in zip(sp.test, P, pred)]
    extra = list(extra) or [[] for _ in rows]
    tkio.write_csv(path, ["path", "true", "predicted", *[f"p_{c}" for c in ds.classes], *extra_cols], [r + e for r, e in zip(rows, extra)])
