"""A comparison's leaderboard: its columns, one row from a run's metrics, and the files
(DIR/leaderboard.json and .csv) that `transferkit compare` writes and its page reads."""

from __future__ import annotations

from pathlib import Path

from . import io as tkio

FIELDS = [
    "name", "strategy", "backbone", "test_accuracy", "macro_f1", "weighted_f1", "val_accuracy", "train_accuracy",
    "params_total", "params_trainable", "train_s", "features_s", "predict_ms", "peak_mem_mb", "train_peak_mb", "predict_peak_mb",
    "image_size", "epochs_run", "ece", "mAP", "micro_f1", "multilabel", "run_dir", "error",
]  # fmt: skip


def _image_size(cfg) -> int | None:
    """The input side a run's images were resized to; None for texts (no pixels)."""
    size = (cfg.extra.get("data_config") or {}).get("input_size")
    return int(size[-1]) if size else None


def leaderboard_row(m: dict, cfg, feature_s_per_item: float | None = None) -> dict:
    """One leaderboard row from a run's metrics. `train_s` is what the run cost to train,
    features included: extracted by this run, or read from the cache that an earlier run of
    the same comparison filled, priced at that run's measured `feature_s_per_item` (else a
    text head trained on the probe's cached embeddings would look 100x cheaper than the probe)."""
    t, mem, mod = m.get("timing", {}), m.get("memory", {}), m.get("model", {})
    features_s = (t.get("extract_s") or 0.0) + (t.get("cached_items") or 0) * (feature_s_per_item or 0.0)
    peaks = [v for v in (mem.get("train_peak_mb"), mem.get("predict_peak_mb")) if v is not None]
    return {
        "test_accuracy": m["test"].get("accuracy"),
        "macro_f1": m["test"].get("macro_f1"),
        "weighted_f1": m["test"].get("weighted_f1"),
        "val_accuracy": m["val"].get("accuracy"),
        "train_accuracy": m["train"].get("accuracy"),
        "params_total": mod.get("params_total"),
        "params_trainable": mod.get("params_trainable"),
        "train_s": (t.get("train_s") or 0.0) + features_s,
        "features_s": features_s if (t.get("extract_s") is not None or t.get("cached_items")) else None,
        "predict_ms": (t["predict_s_per_item"] * 1000) if t.get("predict_s_per_item") is not None else None,
        "peak_mem_mb": max(peaks) if peaks else mem.get("peak_rss_mb"),
        "train_peak_mb": mem.get("train_peak_mb"),
        "predict_peak_mb": mem.get("predict_peak_mb"),
        "image_size": _image_size(cfg),
        "epochs_run": mod.get("epochs_run"),
        "ece": (((m.get("calibration") or {}).get("test") or {}).get("after") or {}).get("ece"),
        "mAP": m["test"].get("mAP"),  # label sets only (test_accuracy is then the subset accuracy)
        "micro_f1": m["test"].get("micro_f1"),
        "multilabel": bool(m["test"].get("multilabel")),
    }


def write_leaderboard(d: Path, rows: list[dict]) -> list[dict]:
    """DIR/leaderboard.json and .csv; returns the rows with every field (None where unknown)."""
    full = [{k: r.get(k) for k in FIELDS} for r in rows]
    tkio.write_json(d / "leaderboard.json", full)
    tkio.write_csv(d / "leaderboard.csv", FIELDS, [["" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in FIELDS] for r in full])
    return full
