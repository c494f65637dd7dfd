"""The run page: what goes in each section, computed from the run folder's files.

`build_run_page` returns the template context and the figures (unsaved), so tests can check
both against metrics.json; `report.html` only renders them."""
from __future__ import annotations

import math
import time

import numpy as np

from . import plots
from .facts import SPLITS, RunFacts
from .items import PCA_MAX, TSNE_MAX, DataView, run_features, samples_per_class, stratified_sample

SAMPLES_PER_CLASS = 8
SAMPLE_TEXTS_PER_CLASS = 3
MISCLASSIFIED_MAX = 24
CONFUSED_PAIRS = 10
LIST_MAX = 50  # skipped files, leakage groups... listed on the page (all of them are in checks.json)


def fmt(v, digits: int = 3, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}{unit}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def fmt_seconds(s) -> str:
    if s is None:
        return "–"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def build_run_page(facts: RunFacts, view: DataView, with_embeddings: bool = True) -> tuple[dict, dict]:
    figs: dict = {}
    timings: dict = {}
    ctx = {"facts": facts, "title": f"transferkit run: {facts.title}", "notes": list(facts.notes)}
    from . import multilabel_page as ml

    multi = ml.is_multilabel(facts)
    ctx["overview"] = _overview(facts)
    ctx["cards"] = ml.cards(facts, fmt, fmt_seconds) if multi else _cards(facts)
    t0 = time.perf_counter()
    ctx["dataset"] = _dataset(facts, view, figs)
    timings["dataset"] = time.perf_counter() - t0
    ctx["results"] = _results(facts, figs)
    if multi:  # label sets: their own numbers, per-label table and worst items (report/multilabel_page.py)
        ctx["multilabel"] = ml.results(facts, figs)
        ctx["worst"] = ml.worst(facts, view, figs, _snippet)
        skipped = (facts.metrics.get("calibration") or {}).get("skipped")
        if skipped:
            ctx["notes"].append(f"Multi-label run: {skipped}. The Trust section below therefore has no calibration, selective prediction or label audit.")
    ctx["training"] = _training(facts, figs)
    t0 = time.perf_counter()
    ctx["errors"] = _misclassified(facts, view, figs) if not multi else {"available": False, "reason": "label sets: see the worst items below"}
    timings["errors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx["features"] = _embeddings(facts, view, figs) if with_embeddings else {"available": False, "reason": "not drawn (embeddings turned off for this render)"}
    timings["features"] = time.perf_counter() - t0
    from .trust_page import build_trust

    ctx["trust"] = build_trust(facts, view, figs)
    ctx["performance"] = performance_rows(facts)
    ctx["timings"] = timings
    return ctx, figs


def _overview(facts: RunFacts) -> list[tuple[str, str]]:
    cfg, m = facts.config, facts.metrics
    d = m.get("data", {})
    ex = cfg.get("extra", {})
    sizes = d.get("split_sizes", {})
    size = (ex.get("data_config") or {}).get("input_size")
    rows = [
        ("data", f"{cfg.get('data')} — {fmt(d.get('items'))} items, {len(facts.classes)} classes"),
        ("split", f"train {fmt(sizes.get('train'))} / val {fmt(sizes.get('val'))} / test {fmt(sizes.get('test'))} (seed {cfg.get('seed')})"),
        ("strategy", facts.strategy),
        ("backbone", f"{facts.backbone}" + (f", {size[-1]} px input" if size else "") + (f", weights: {ex.get('weights_source')}" if ex.get("weights_source") else "") + ("" if cfg.get("pretrained", True) else " (random init)")),
    ]
    line = _modality(facts).input_summary(ex, d)
    if line:
        rows.append(("input", line))
    return rows


def _modality(facts: RunFacts):
    from .. import modality as modalities

    kind = (facts.config.get("extra") or {}).get("kind") or (facts.metrics.get("data") or {}).get("kind") or "image"
    return modalities.get(kind if kind in modalities.MODALITIES else "image")


def _cards(facts: RunFacts) -> list[tuple[str, str]]:
    t, te = facts.metrics.get("timing", {}), facts.split("test")
    ms = (t.get("predict_s_per_item") or 0) * 1000 or None
    return [
        ("test accuracy", fmt(te.get("accuracy"))),
        ("test macro-F1", fmt(te.get("macro_f1"))),
        ("training time", fmt_seconds(t.get("train_s"))),
        ("prediction", fmt(ms, 1, " ms/item") if ms else "–"),
    ]


# ------------------------------------------------------------------------------- dataset
def _dataset(facts: RunFacts, view: DataView, figs: dict) -> dict:
    d = facts.metrics.get("data", {})
    classes = facts.classes
    counts = d.get("class_counts") or {}
    out: dict = {"classes": [], "samples_text": None, "samples_note": ""}
    if counts:
        for i, c in enumerate(classes):
            row = {s: (counts.get(s) or [0] * len(classes))[i] for s in SPLITS}
            out["classes"].append({"name": c, **row, "total": sum(row.values())})
        figs["class_counts"] = plots.class_counts(classes, counts)
    elif facts.checks.get("classes"):
        out["classes"] = [{"name": c, "train": None, "val": None, "test": None, "total": n} for c, n in facts.checks["classes"].items()]
    if view.ds is None:
        out["samples_note"] = f"Sample items are not shown: {view.error}."
    else:
        groups = samples_per_class(facts, view, SAMPLES_PER_CLASS)
        if view.is_text:
            out["samples_text"] = [(name, [_snippet(view.preview(i)) for i in idx[:SAMPLE_TEXTS_PER_CLASS]]) for name, idx in groups]
            out["samples_note"] = f"Up to {SAMPLE_TEXTS_PER_CLASS} training texts per class, spread over each class (the first 280 characters of each)."
        else:
            rows = [(name, [view.preview(i, 128) for i in idx]) for name, idx in groups]
            figs["samples"] = plots.image_grid(rows)
            out["samples_note"] = f"Up to {SAMPLES_PER_CLASS} training images per class, spread over each class."
    out["checks"] = _checks(facts.checks)
    return out


def _checks(ch: dict) -> dict:
    skipped = ch.get("skipped") or []
    leakage = ch.get("leakage") or []
    contra = ch.get("contradictions") or []
    return {
        "warnings": ch.get("warnings") or [],
        "skipped": skipped[:LIST_MAX],
        "skipped_more": max(0, len(skipped) - LIST_MAX),
        "skipped_n": len(skipped),
        "duplicates": int(ch.get("duplicates") or 0),
        "leakage": leakage[:LIST_MAX],
        "leakage_n": len(leakage),
        "contradictions": contra[:LIST_MAX],
        "contradictions_n": len(contra),
        "recorded": bool(ch),
    }


def _snippet(text: str, n: int = 280) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------------------- results
def classification_rows(m: dict, classes: list[str]) -> tuple[list[dict], list[dict]]:
    """Per-class rows and the accuracy / macro / weighted rows, like scikit-learn's report."""
    pc = m.get("per_class") or {}
    rows = [{"name": c, **pc[c]} for c in classes if c in pc]
    if not rows:
        return [], []
    w = np.array([r["support"] for r in rows], dtype=float)
    macro = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "recall")}
    weighted = {k: float(np.dot(w, [r[k] for r in rows]) / max(w.sum(), 1)) for k in ("precision", "recall")}
    n = m.get("n")
    totals = [
        {"name": "accuracy", "precision": None, "recall": None, "f1": m.get("accuracy"), "support": n, "key": "accuracy"},
        {"name": "macro avg", **macro, "f1": m.get("macro_f1"), "support": n, "key": "macro_f1"},
        {"name": "weighted avg", **weighted, "f1": m.get("weighted_f1"), "support": n, "key": "weighted_f1"},
    ]
    return rows, totals


def confused_pairs(cm, classes: list[str], k: int = CONFUSED_PAIRS) -> list[dict]:
    """The largest off-diagonal cells: true class, predicted class, count, share of the true class."""
    cm = np.asarray(cm, dtype=int)
    pairs = []
    for i in range(len(classes)):
        for j in range(len(classes)):
            if i != j and cm[i, j] > 0:
                pairs.append({"true": classes[i], "predicted": classes[j], "count": int(cm[i, j]), "share": cm[i, j] / max(cm[i].sum(), 1), "reverse": int(cm[j, i])})
    pairs.sort(key=lambda p: (-p["count"], -p["share"], p["true"], p["predicted"]))
    return pairs[:k]


def _results(facts: RunFacts, figs: dict) -> dict:
    te = facts.split("test")
    out = {"available": bool(te.get("n")), "splits": [], "tta": None}
    for s in SPLITS:
        m = facts.split(s)
        if m.get("n"):
            out["splits"].append({"name": s, "n": m["n"], "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "weighted_f1": m.get("weighted_f1"), "log_loss": m.get("log_loss")})
    tta = facts.metrics.get("tta")
    if tta:
        out["tta"] = {"views": tta["views"], "n_views": tta["n_views"], "with": te.get("accuracy"), "without": (tta.get("test_without") or {}).get("accuracy"),
                      "f1_with": te.get("macro_f1"), "f1_without": (tta.get("test_without") or {}).get("macro_f1"),
                      "ms": 1000 * tta["predict_s_per_item"], "ms_without": 1000 * tta["predict_s_per_item_without"]}
    if not out["available"]:
        return out
    out["rows"], out["totals"] = classification_rows(te, facts.classes)
    cm = te.get("confusion_matrix")
    if cm:
        figs["confusion_counts"] = plots.confusion(np.asarray(cm), facts.classes, normalized=False)
        figs["confusion_normalized"] = plots.confusion(np.asarray(cm), facts.classes, normalized=True)
        out["pairs"] = confused_pairs(cm, facts.classes)
        out["errors_total"] = int(np.asarray(cm).sum() - np.trace(np.asarray(cm)))
    return out


def _training(facts: RunFacts, figs: dict) -> dict:
    h = facts.history
    mod = facts.metrics.get("model", {})
    if h:
        figs["learning_curves"] = plots.learning_curves(h)
        vl = [(r.get("val_loss"), r) for r in h if r.get("val_loss") is not None]
        best = min(vl, key=lambda t: t[0])[1] if vl else None
        strategy = facts.config.get("strategy")
        # what the curves are of: a head on cached features, or the head and encoder together
        trained = "the backbone and its " + str(mod.get("head")) + " head" if strategy in ("partial", "finetune") else None
        return {"kind": "curves", "epochs": len(h), "best": best, "head": mod.get("head"), "trained": trained}
    scores = mod.get("val_log_loss_by_C")
    if isinstance(scores, dict) and len(scores) > 1:
        paths = mod.get("val_log_loss_by_power")
        paths = {p: {k: float(v) for k, v in path.items()} for p, path in paths.items()} if isinstance(paths, dict) else None
        figs["c_selection"] = plots.c_selection({k: float(v) for k, v in scores.items()}, paths, mod.get("power"))
        refit = mod.get("refit") if isinstance(mod.get("refit"), dict) else None
        return {"kind": "c_selection", "C": mod.get("C"), "power": mod.get("power"), "powers_tried": sorted(paths) if paths else None, "refit_items": refit.get("items") if refit else None}
    return {"kind": "none"}


# ---------------------------------------------------------------------- misclassified
def misclassified(predictions: list[dict] | None) -> list[dict]:
    """Wrong test predictions, highest loss (-log p_true) first."""
    out = []
    for r in predictions or []:
        if r.get("true") == r.get("predicted"):
            continue
        conf = _float(r.get("confidence"))
        p_true = _float(r.get("p_true"))
        loss = -math.log(max(p_true, 1e-7)) if p_true is not None else None
        out.append({"path": r.get("path", ""), "true": r.get("true", ""), "predicted": r.get("predicted", ""), "confidence": conf, "p_true": p_true, "loss": loss})
    # without p_true (older runs) the most confident mistakes come first
    out.sort(key=lambda r: -(r["loss"] if r["loss"] is not None else (r["confidence"] or 0)))
    return out


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _is_text(facts: RunFacts) -> bool:
    return _modality(facts).preview_kind == "snippet"


def _misclassified(facts: RunFacts, view: DataView, figs: dict) -> dict:
    if facts.predictions is None:
        return {"available": False, "reason": "this run has no predictions.csv"}
    wrong = misclassified(facts.predictions)
    out = {"available": True, "n_wrong": len(wrong), "n": len(facts.predictions), "rows": wrong[:MISCLASSIFIED_MAX], "texts": None, "note": ""}
    if not wrong:
        return out
    if _is_text(facts) and view.ds is None and any(r.get("text") for r in facts.predictions):  # predictions.csv keeps a snippet of each text
        by_path = {r.get("path"): r.get("text") or "" for r in facts.predictions}
        out["texts"] = [{**r, "text": _snippet(by_path.get(r["path"], ""), 400)} for r in wrong[:MISCLASSIFIED_MAX]]
        return out
    if view.ds is None:
        out["note"] = f"{_modality(facts).unit.capitalize()}s are not shown: {view.error}."
        return out
    shown = [(r, view.find(r["path"])) for r in wrong[:MISCLASSIFIED_MAX]]
    missing = sum(i is None for _, i in shown)
    shown = [(r, i) for r, i in shown if i is not None]
    if view.is_text:
        out["texts"] = [{**r, "text": _snippet(view.preview(i), 400)} for r, i in shown]
    elif shown:
        figs["misclassified"] = plots.labelled_grid([(view.preview(i, 160), r["true"], r["predicted"], r["confidence"] or 0.0) for r, i in shown])
    if missing:
        out["note"] = f"{missing} of these items are no longer in the data folder and are not shown."
    return out


# ------------------------------------------------------------------------- embeddings
def _embeddings(facts: RunFacts, view: DataView, figs: dict) -> dict:
    feats, reason = run_features(facts, view)
    if feats is None:
        return {"available": False, "reason": reason}
    from sklearn.decomposition import PCA

    X, y = np.asarray(feats.X, dtype=np.float32), np.asarray(feats.y)
    if (y < 0).any():  # label sets: coloured by each item's most frequent label; items without a label are left out
        X, y = X[y >= 0], y[y >= 0]
    out = {"available": True, "what": feats.what, "n": len(X), "dim": X.shape[1]}
    if len(X) < 3 or X.shape[1] < 2:
        return {"available": False, "reason": f"too few items or dimensions to project ({X.shape})"}
    from threadpoolctl import threadpool_limits

    # one thread: OpenMP threads that spin while other processes hold the cores make t-SNE
    # 10x slower on a busy machine, and at this size one thread is as fast as many
    with threadpool_limits(limits=1):
        return _project(X, y, facts, figs, out)


def _project(X, y, facts: RunFacts, figs: dict, out: dict) -> dict:
    from sklearn.decomposition import PCA

    sel = stratified_sample(y, PCA_MAX, seed=0)
    pca = PCA(n_components=2, random_state=0).fit(X)
    P = pca.transform(X[sel])
    ev = pca.explained_variance_ratio_ * 100
    figs["pca"] = plots.embedding(P, y[sel], facts.classes, "PCA", f"PC1 ({ev[0]:.1f}% of variance)", f"PC2 ({ev[1]:.1f}%)")
    out["pca_note"] = f"PCA of {len(X):,} items; the first two components explain {ev[0]:.1f}% and {ev[1]:.1f}% of the variance" + (f" (a stratified sample of {len(sel):,} drawn)" if len(sel) < len(X) else "") + "."
    sel = stratified_sample(y, TSNE_MAX, seed=0)
    if len(sel) >= 5:
        from sklearn.manifold import TSNE

        Z = X[sel]
        if Z.shape[1] > 50:  # the usual PCA-to-50 step: faster, less noise
            Z = PCA(n_components=min(50, len(Z) - 1), random_state=0).fit_transform(Z)
        T = TSNE(n_components=2, perplexity=min(30.0, (len(sel) - 1) / 3.0), init="pca", random_state=0, max_iter=500).fit_transform(Z)
        figs["tsne"] = plots.embedding(T, y[sel], facts.classes, "t-SNE")
        out["tsne_note"] = f"t-SNE of a stratified sample of {len(sel):,} of the {len(X):,} items (each class keeps its share), to keep rendering quick." if len(sel) < len(X) else f"t-SNE of all {len(X):,} items."
    return out


# ------------------------------------------------------------------------ performance
def _mem_note(phase: str, start_mb) -> str:
    """What a phase's peak memory covers."""
    return phase + (f"; {_float(start_mb):,.0f} MB of it were already resident when the phase began" if _float(start_mb) is not None else "")


def performance_rows(facts: RunFacts) -> list[dict]:
    """The model performance table: label, value, note, and the metrics.json key it shows."""
    m = facts.metrics
    t, mod, mem = m.get("timing", {}), m.get("model", {}), m.get("memory", {}) or {}
    rows = [
        {"label": "parameters (total)", "value": fmt(mod.get("params_total")), "key": "model.params_total"},
        {"label": "parameters (trainable)", "value": fmt(mod.get("params_trainable")), "key": "model.params_trainable", "note": "the head only: the backbone is frozen" if facts.config.get("strategy") in ("probe", "head") and mod.get("params_trainable") != mod.get("params_total") else ""},
    ]
    train_mb, pred_mb = mem.get("train_peak_mb"), mem.get("predict_peak_mb")
    if train_mb is not None or pred_mb is not None:
        how = {"VmHWM": "the kernel's peak-RSS counter, reset when each phase begins", "sampled": "RSS sampled every 5 ms"}.get(mem.get("method"), mem.get("method") or "")
        rows.append({"label": "peak memory, training", "value": fmt(_float(train_mb), 0, " MB"), "key": "memory.train_peak_mb", "note": mem.get("note") or _mem_note("feature extraction + training", mem.get("train_start_mb"))})
        rows.append({"label": "peak memory, prediction", "value": fmt(_float(pred_mb), 0, " MB"), "key": "memory.predict_peak_mb", "note": _mem_note("loading the saved model + predicting test items", mem.get("predict_start_mb"))})
    if mem.get("peak_rss_mb") is not None:
        note = "peak resident memory of the process; this run did not record training and prediction peaks separately"
        if train_mb is not None or pred_mb is not None:
            note = "measured, not estimated: resident memory of the training process" + (f" ({how})" if how else "") + "; data-loading worker processes are not included"
        rows.append({"label": "peak memory, whole run (RSS)", "value": fmt(_float(mem["peak_rss_mb"]), 0, " MB"), "key": "memory.peak_rss_mb", "note": note})
    if t.get("extract_s") is not None:
        rows.append({"label": "feature extraction", "value": fmt_seconds(t["extract_s"]), "key": "timing.extract_s", "note": f"{fmt(t.get('backbone_runs'))} items through the backbone, {fmt(t.get('cached_items'))} from the cache"})
    cached = {"note": f"the head was reused from the cache: an earlier run fitted it on the same features and settings in {fmt_seconds(t.get('head_fit_s'))}"} if t.get("head_cached") else {}
    rows.append({"label": "training time", "value": fmt_seconds(t.get("train_s")), "key": "timing.train_s", **cached})
    if t.get("total_s") is not None:
        rows.append({"label": "whole run", "value": fmt_seconds(t["total_s"]), "key": "timing.total_s", "note": "loading, checks, extraction, training, evaluation"})
    ps = t.get("predict_s_per_item")
    how = _modality(facts).predict_steps(facts.config.get("strategy"))
    where = t.get("predict_device") or "cpu"
    rows.append({"label": "prediction time per item", "value": fmt(ps * 1000 if ps else None, 2, " ms"), "key": "timing.predict_s_per_item", "note": f"{how}, batches of 32, {where}"})
    rows.append({"label": "prediction throughput", "value": fmt(t.get("predict_items_per_s"), 1, " items/s"), "key": "timing.predict_items_per_s"})
    for s in SPLITS:
        rows.append({"label": f"{s} accuracy", "value": fmt(facts.split(s).get("accuracy"), 4), "key": f"{s}.accuracy"})
    rows.append({"label": "test macro-F1", "value": fmt(facts.split("test").get("macro_f1"), 4), "key": "test.macro_f1"})
    rows.append({"label": "test weighted-F1", "value": fmt(facts.split("test").get("weighted_f1"), 4), "key": "test.weighted_f1"})
    return rows
