"""Which numbers to believe and which items to look at, for a finished fit: selective
prediction (the confidence that gives a target accuracy on validation, and what it keeps on
test), suspected label errors (confident learning on out-of-fold probe probabilities of the
training and validation items; never test), and near-duplicates found from the backbone
features (across splits: leakage, with the test accuracy recomputed without them; under
different labels: contradictions; within a class).

The label audit and the near-duplicates need the run's cached backbone features (probe, and
head/partial/finetune without augmentation, texts always); other runs say so and point at
`transferkit audit DATA`, which extracts them.
"""
from __future__ import annotations

import numpy as np

from .errors import TransferkitError
from .log import log

TARGET_ACCURACY = 0.95  # selective prediction: the confidence threshold that reaches this on validation
AUDIT_FOLDS = 5
CURVE_POINTS = 200  # the coverage curve kept in metrics.json, at most
SUSPECTS_KEPT = 100  # label suspects listed in metrics.json (all of them are in label_issues.csv)
PAIRS_KEPT = 200  # near-duplicate pairs listed per kind


def selective(proba_val: np.ndarray, y_val: np.ndarray, proba_test: np.ndarray, y_test: np.ndarray, target: float = TARGET_ACCURACY) -> dict:
    """The lowest confidence P whose kept validation predictions reach `target` accuracy, what
    it keeps and gets on test, and the test accuracy/coverage curve (downsampled)."""
    from .calibrate import coverage_curve, threshold_for_accuracy

    out = {"target": target, "threshold": None, "test": None, "curve_test": None}
    if len(y_val):
        t = threshold_for_accuracy(proba_val, y_val, target)
        out["threshold"] = None if t is None else float(t)
    if len(y_test):
        c = coverage_curve(proba_test, y_test)
        keep = np.unique(np.linspace(0, len(c["coverage"]) - 1, min(CURVE_POINTS, len(c["coverage"]))).round().astype(int))
        out["curve_test"] = {k: [float(v) for v in np.asarray(c[k])[keep]] for k in ("thresholds", "coverage", "accuracy")}
        if out["threshold"] is not None:
            kept = proba_test.max(1) >= out["threshold"]
            out["test"] = {"coverage": float(kept.mean()), "accuracy": float((proba_test[kept].argmax(1) == y_test[kept]).mean()) if kept.any() else None, "kept": int(kept.sum())}
    return out


def audit_labels(X: np.ndarray, ds, splits, C: float | None = None, seed: int = 0, folds: int = AUDIT_FOLDS, features_dir=None) -> dict:
    """Suspected label errors among the training and validation items (out-of-fold probes;
    kept beside the features in `features_dir`, the cache they came from, when given)."""
    from .audit import find_label_issues
    from .head_cache import heads_dir_for, out_of_fold_cached

    idx = np.concatenate([splits.train, splits.val]).astype(np.int64)
    y = np.asarray(ds.labels)[idx]
    oof = out_of_fold_cached(X[idx], y, len(ds.classes), heads_dir_for(features_dir) if features_dir else None, folds, seed=seed, C=C)
    res = find_label_issues(y, oof, ds.classes)
    issues = [{**r, "index": int(idx[r["index"]]), "path": ds.display_path(int(idx[r["index"]]))} for r in res["issues"]]
    return {"method": res["method"], "folds": folds, "audited": int(len(idx)), "n_issues": int(res["n_issues"]), "noise_rate": float(res["noise_rate"]),
            "noise_rate_by_class": {k: float(v) for k, v in res["noise_rate_by_class"].items()}, "issues": issues}


def near_duplicates(X: np.ndarray, ds, splits, proba_test: np.ndarray | None, threshold: float) -> dict:
    """Pairs of items with nearly identical features, by what they mean; the test accuracy
    without the test items that have a near-copy in training or validation."""
    from .neardup import classify_pairs, near_duplicate_pairs

    split_of = np.asarray(splits.assignment(len(ds)), dtype=str)
    pairs = near_duplicate_pairs(X, threshold=threshold)
    kinds = classify_pairs(pairs, np.asarray(ds.labels), split_of)
    out = {"threshold": threshold, "pairs": len(pairs), "method": "cosine similarity of the backbone features"}
    for kind, rows in kinds.items():
        out[kind] = [{"a": ds.display_path(r["i"]), "b": ds.display_path(r["j"]), "similarity": round(r["similarity"], 5),
                      "labels": [ds.classes[r["label_i"]], ds.classes[r["label_j"]]], "splits": [r["split_i"], r["split_j"]]} for r in rows[:PAIRS_KEPT]]
        out[f"{kind}_n"] = len(rows)
    if proba_test is not None and len(splits.test):
        leaked = {r["i"] for r in kinds["across_splits"] if split_of[r["i"]] == "test" and split_of[r["j"]] != "test"}
        leaked |= {r["j"] for r in kinds["across_splits"] if split_of[r["j"]] == "test" and split_of[r["i"]] != "test"}
        keep = np.asarray([int(i) not in leaked for i in splits.test])
        y = np.asarray(ds.labels)[splits.test]
        right = proba_test.argmax(1) == y
        out["test_leaked"] = int((~keep).sum())
        out["test_accuracy_without_leaked"] = float(right[keep].mean()) if keep.any() else None
        out["test_accuracy"] = float(right.mean())
    return out


def assess(ctx, trained) -> dict:
    """Everything above for a finished fit; what needs features says why it is missing."""
    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    y = np.asarray(ds.labels)
    out = {"selective": selective(trained.proba["val"], y[sp.val], trained.proba["test"], y[sp.test])}
    X = ctx.features
    if X is None:
        why = "this run has no cached backbone features (it trained through augmented inputs); `transferkit audit DATA` extracts them and audits the data"
        out["audit"] = out["near_duplicates"] = {"available": False, "reason": why}
        return out
    if not cfg.audit:
        out["audit"] = out["near_duplicates"] = {"available": False, "reason": "turned off (--no-audit)"}
        return out
    log(f"auditing the labels of {len(sp.train) + len(sp.val)} training and validation items ({AUDIT_FOLDS}-fold probes) and looking for near-duplicates")
    try:
        out["audit"] = {"available": True, **audit_labels(X, ds, sp, None, cfg.seed, features_dir=cfg.extra.get("feature_cache"))}  # C chosen by the audit itself: `transferkit audit` gives the same list
    except Exception as exc:  # noqa: BLE001 - an audit that cannot run must not lose the trained run
        out["audit"] = {"available": False, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
    try:
        out["near_duplicates"] = {"available": True, **near_duplicates(X, ds, sp, trained.proba["test"], cfg.near_dup_threshold)}
    except Exception as exc:  # noqa: BLE001 - as for the audit: the run is kept, the page says why
        out["near_duplicates"] = {"available": False, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


def audit_dataset(data, out=None, *, backbone: str | None = None, weights=None, pretrained: bool = True, image_size: int | None = None, max_length: int | None = None,
                  val_size: float = 0.15, test_size: float = 0.15, seed: int = 0, near_dup_threshold: float = 0.95, cache_dir=None,
                  batch_size: int = 32, device: str = "auto", data_root=None, text_column=None, label_column=None):
    """`transferkit audit DATA`: suspected label errors and near-duplicates of a dataset, without
    training a final model. The items' backbone features (default backbone of the data's kind,
    through the feature cache: a later probe on the same data extracts nothing) feed k-fold
    probes on the training and validation items and the near-duplicate search over all items.
    Writes OUT (default runs/<data>-audit) whole: audit.json, label_issues.csv, checks.json,
    report.html. Returns the audit dict."""
    from pathlib import Path

    from . import io as tkio
    from . import modality as modalities
    from .config import TrainConfig
    from .data import check_dataset, make_splits
    from .features import extract_features
    from .loop.devices import choose
    from .rundir import RunFolder, check_target
    from .strategies import get

    TrainConfig(data=str(data), val_size=val_size, test_size=test_size, near_dup_threshold=near_dup_threshold).validate()
    ds = modalities.load_dataset(data, data_root=data_root, text_column=text_column, label_column=label_column)
    if ds.multilabel:
        raise TransferkitError(f"transferkit audit {data}: the label audit (confident learning) is for one label per item; this data holds label sets. "
                               "Its data checks (rare and always co-occurring labels) are in any run's page: transferkit train DATA")
    mod = modalities.of(ds)
    cfg = TrainConfig(data=str(data), strategy="probe", backbone=backbone, weights=weights, pretrained=pretrained, image_size=image_size, max_length=max_length, seed=seed,
                      val_size=val_size, test_size=test_size, cache_dir=cache_dir, batch_size=batch_size, device=device).validate().resolve(mod, get("probe"))
    protect = [str(data)] if Path(str(data)).expanduser().exists() else []
    target = check_target(out or Path("runs") / f"{Path(str(data)).stem or data}-audit", protect)
    splits = make_splits(ds, val_size, test_size, seed)
    checks = check_dataset(ds, splits)
    log(f"{ds.name}: {len(ds)} {ds.unit}s, {len(ds.classes)} classes; auditing with {cfg.backbone} features")
    placement = choose(device, "auto")
    import torch

    torch.manual_seed(seed)  # random-init weights (--no-pretrained) follow the seed, as in `train`
    bb, dc = mod.prepare(cfg, ds, splits, True)
    stats: dict = {}
    X = extract_features(bb, ds, modality=mod, cache_dir=cache_dir, batch_size=batch_size, stats=stats, placement=placement)
    result = {"available": True, **audit_labels(X, ds, splits, None, seed, features_dir=stats.get("cache_dir"))}
    near = {"available": True, **near_duplicates(X, ds, splits, None, near_dup_threshold)}
    folder = RunFolder(target, protect)
    try:
        from .audit import write_label_issues_csv

        write_label_issues_csv(folder / "label_issues.csv", result["issues"], {r["index"]: r["path"] for r in result["issues"]})
        summary = {**result, "issues": result["issues"][:SUSPECTS_KEPT], "file": "label_issues.csv"}
        tkio.write_json(folder / "audit.json", {"data": str(data), "backbone": cfg.backbone, "data_config": dc, "items": len(ds), "classes": ds.classes,
                                                "split_sizes": {k: len(getattr(splits, k)) for k in ("train", "val", "test")}, "extract_s": stats.get("extract_s"),
                                                "audit": summary})
        tkio.write_json(folder / "checks.json", {"classes": ds.class_counts(), **checks.as_dict(), "near_duplicates": near})
        final = folder.commit()
    except BaseException:
        folder.abandon()
        raise
    try:
        from .report.render import write_audit_report

        page = write_audit_report(final, ds)
        log(f"audit: {result['n_issues']} suspected label errors (estimated {100 * result['noise_rate']:.1f}% wrong), {near['pairs']} near-duplicate pairs; report: {page}")
    except Exception as exc:  # noqa: BLE001 - the audit files are safe on disk
        log(f"warning: the audit page failed ({type(exc).__name__}: {exc}); the audit is in {final}")
    return {"dir": str(final), "audit": result, "near_duplicates": near}
