"""The comparison page: the leaderboard, its charts and the inferences, from leaderboard.json
and the run folders it points at.

The contract with `transferkit compare` (the one place it is written down): what
`write_compare_report(DIR)` reads, and what it writes.

Reads
- DIR/leaderboard.json: a JSON list of row objects (or {"rows": [...]}), one per run, any order
  (the page ranks them). Keys, each may be null or absent (facts.LEADERBOARD_FIELDS):
    name              label shown for the row; default "<strategy> · <backbone>"; duplicates
                      get their run folder's name appended
    strategy          probe | head | partial | finetune | scratch | mlp | tfidf ...; scratch,
                      mlp and tfidf are the from-scratch baselines (inferences.BASELINES)
    backbone          backbone name ("none" for baselines)
    test_accuracy, macro_f1, weighted_f1, val_accuracy, train_accuracy     fractions in [0, 1]
    params_total, params_trainable                                          counts
    train_s           seconds to train, the features' cost included for cached-feature runs (their
                      extraction, or cache hits priced at the rate measured when an earlier run of
                      the comparison extracted them; `features_s` holds that part)
    predict_ms        milliseconds per item, end to end
    ece               expected calibration error of the test split (15 bins), calibrated
    peak_mem_mb       MB, the run's peak memory (the leaderboard's "peak MB" column)
    run_dir           the run folder, relative to DIR (or absolute); null for a run that failed
    error             null or "" for a finished run; the message for a failed one (shown, not ranked)
  Other keys (train_peak_mb, predict_peak_mb, image_size, epochs_run, ...) are kept and ignored.
  A row without test_accuracy or with an error is listed as failed.
- DIR/<run_dir>/: a run folder as `transferkit train` writes it: config.json and metrics.json
  (required), labels.json, checks.json, splits.json, history.csv, predictions.csv (optional).
  predictions.csv (path, true, predicted, confidence, p_true) gives the paired McNemar test
  of the two best runs; metrics.json's test.per_class gives the per-class gains and F1 chart,
  data.class_counts.train the F1-vs-support chart, timing/model the time and size charts. All runs of one comparison share one split and one
  class list (the first run's classes are the page's).

Writes
- DIR/report.html (plots inline) and DIR/plots/*.png: accuracy_vs_time, accuracy_vs_params,
  per_class_f1, f1_vs_support;
- each run's report.html / report.md / plots/ again (runs="all"; "missing": only where absent;
  "none": not at all), linked back to DIR/report.html.
"""
from __future__ import annotations

import numpy as np

from . import plots
from .facts import RunFacts, load_run_facts
from .inferences import is_baseline, write_inferences
from .run_page import fmt, fmt_seconds


def load_runs(rows: list[dict]) -> tuple[dict[str, RunFacts], list[str]]:
    runs, notes = {}, []
    for r in rows:
        p = r.get("run_path")
        if p is None or r.get("error"):
            continue
        try:
            runs[r["label"]] = load_run_facts(p)
        except Exception as exc:  # noqa: BLE001 - a damaged run folder must not sink the page
            notes.append(f"{r['label']}: run folder {r.get('run_dir')} could not be read ({exc})")
    return runs, notes


COLUMNS = [("test_accuracy", "test acc", ""), ("macro_f1", "macro-F1", ""), ("weighted_f1", "weighted-F1", ""), ("val_accuracy", "val acc", ""), ("train_accuracy", "train acc", ""),
           ("ece", "ECE", "expected calibration error on test, 15 bins; lower is better"), ("params_total", "params", ""), ("params_trainable", "trainable", ""),
           ("train_s", "train time", ""), ("predict_ms", "ms/item", ""), ("peak_mem_mb", "peak MB", "")]
COLUMNS_MULTILABEL = [("macro_f1", "macro-F1", "test macro-F1, each label counted equally, at the thresholds chosen on validation"), ("mAP", "mAP", "test mean average precision over the labels (threshold-free)"),
                      ("micro_f1", "micro-F1", "test F1 over all (item, label) decisions"), ("test_accuracy", "subset acc", "test items whose whole label set is right"),
                      ("val_accuracy", "val subset acc", ""), ("params_total", "params", ""), ("params_trainable", "trainable", ""),
                      ("train_s", "train time", ""), ("predict_ms", "ms/item", ""), ("peak_mem_mb", "peak MB", "")]


def rank_key(rows: list[dict]):
    """How a comparison's runs are ranked: test accuracy (then macro-F1); label sets: macro-F1 (then mAP)."""
    if any(r.get("multilabel") for r in rows):
        return lambda r: (-(r.get("macro_f1") or 0), -(r.get("mAP") or 0))
    return lambda r: (-r["test_accuracy"], -(r.get("macro_f1") or 0))


def build_compare_page(rows: list[dict], runs: dict[str, RunFacts]) -> tuple[dict, dict]:
    figs: dict = {}
    multi = any(r.get("multilabel") for r in rows)
    ok = sorted((r for r in rows if r.get("test_accuracy") is not None and not r.get("error")), key=rank_key(rows))
    failed = [r for r in rows if r.get("error") or r.get("test_accuracy") is None]
    table = []
    for rank, r in enumerate(ok + failed, start=1):
        table.append({
            **r,
            "rank": rank if r in ok else None,
            "kind": "baseline" if is_baseline(r) else "transfer",
            "has_page": bool(r.get("run_path") and (r["run_path"] / "report.html").is_file()),
            "cells": {
                "test_accuracy": fmt(r.get("test_accuracy"), 4), "macro_f1": fmt(r.get("macro_f1"), 4), "weighted_f1": fmt(r.get("weighted_f1"), 4),
                "val_accuracy": fmt(r.get("val_accuracy"), 4), "train_accuracy": fmt(r.get("train_accuracy"), 4), "ece": fmt(r.get("ece"), 3),
                "params_total": fmt(_int(r.get("params_total"))), "params_trainable": fmt(_int(r.get("params_trainable"))),
                "train_s": fmt_seconds(r.get("train_s")), "predict_ms": fmt(r.get("predict_ms"), 2), "peak_mem_mb": fmt(r.get("peak_mem_mb"), 0),
                "mAP": fmt(r.get("mAP"), 4), "micro_f1": fmt(r.get("micro_f1"), 4),
            },
        })  # fmt: skip
    if ok:
        if any(r.get("train_s") for r in ok):
            figs["accuracy_vs_time"] = plots.accuracy_vs(ok, "train_s", "training time (log scale)", "Test accuracy vs training time")
        if any(r.get("params_total") for r in ok):
            figs["accuracy_vs_params"] = plots.accuracy_vs(ok, "params_total", "parameters (log scale)", "Test accuracy vs model size")
    classes, labels, f1, series = _per_class(ok, runs)
    if labels:
        figs["per_class_f1"] = plots.per_class_f1(labels, classes, f1)
        figs["f1_vs_support"] = plots.f1_vs_support(series, classes)
    first = next(iter(runs.values()), None)
    ctx = {
        "table": table,
        "n_ok": len(ok),
        "n_failed": sum(1 for r in failed if not str(r.get("error") or "").startswith("skipped")),
        "n_skipped": sum(1 for r in failed if str(r.get("error") or "").startswith("skipped")),
        "inferences": write_inferences(rows, runs),
        "data": _data_line(first),
        "per_class_classes": classes,
        "columns": COLUMNS_MULTILABEL if multi else COLUMNS,
        "sorted_by": "test macro-F1 (label sets; then mAP)" if multi else "test accuracy",
    }
    return ctx, figs


def _int(v):
    return None if v is None else int(v)


def _per_class(ok: list[dict], runs: dict[str, RunFacts]):
    """Test F1 per class for every ranked run with a folder (runs × classes)."""
    have = [r for r in ok if r["label"] in runs and runs[r["label"]].split("test").get("per_class")]
    if not have:
        return [], [], np.zeros((0, 0)), []
    classes = runs[have[0]["label"]].classes
    f1 = np.full((len(have), len(classes)), np.nan)
    series = []
    for i, r in enumerate(have):
        facts = runs[r["label"]]
        pc = facts.split("test")["per_class"]
        for j, c in enumerate(classes):
            if c in pc:
                f1[i, j] = pc[c]["f1"]
        counts = (facts.metrics.get("data", {}).get("class_counts") or {}).get("train")
        if counts and len(counts) == len(classes):
            series.append((r["label"], list(f1[i]), list(counts)))
    return classes, [r["label"] for r in have], f1, series


def _data_line(facts: RunFacts | None) -> str:
    if facts is None:
        return ""
    d = facts.metrics.get("data", {})
    s = d.get("split_sizes", {})
    return f"{facts.config.get('data')}: {fmt(d.get('items'))} items, {len(facts.classes)} classes; one shared split (seed {facts.config.get('seed')}): train {fmt(s.get('train'))} / val {fmt(s.get('val'))} / test {fmt(s.get('test'))}"
