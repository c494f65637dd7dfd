"""Metrics from arrays: accuracy, per-class precision/recall/F1, confusion matrix."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support


def evaluate(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Metrics for one split. `proba` is (N, C) class probabilities."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return {"n": 0}
    labels = list(range(len(classes)))
    y_pred = proba.argmax(1)
    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-7, 1.0)  # float64: rows sum to 1 within log_loss's check
    clipped = clipped / clipped.sum(1, keepdims=True)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "log_loss": float(log_loss(y_true, clipped, labels=labels)),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def classification_report_md(m: dict, classes: list[str]) -> str:
    """The classification report as a Markdown table (like scikit-learn's text report)."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for c in classes:
        pc = m["per_class"][c]
        lines.append(f"| {c} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    n = m["n"]
    macro = {k: float(np.mean([m["per_class"][c][k] for c in classes])) for k in ("precision", "recall")}
    w = np.array([m["per_class"][c]["support"] for c in classes], dtype=float)
    weighted = {k: float(np.dot(w, [m["per_class"][c][k] for c in classes]) / max(w.sum(), 1)) for k in ("precision", "recall")}
    lines.append(f"| **accuracy** | | | {m['accuracy']:.3f} | {n} |")
    lines.append(f"| **macro avg** | {macro['precision']:.3f} | {macro['recall']:.3f} | {m['macro_f1']:.3f} | {n} |")
    lines.append(f"| **weighted avg** | {weighted['precision']:.3f} | {weighted['recall']:.3f} | {m['weighted_f1']:.3f} | {n} |")
    return "\n".join(lines)


def confusion_md(m: dict, classes: list[str]) -> str:
    cm = m["confusion_matrix"]
    head = "| true \\ predicted | " + " | ".join(classes) + " |"
    sep = "|---|" + "---:|" * len(classes)
    rows = [f"| **{c}** | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(classes, cm)]
    return "\n".join([head, sep, *rows])
