"""Metrics from arrays: accuracy, per-class precision/recall/F1, confusion matrix."""
from __future__ import annotations

import numpy as np


def evaluate(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Metrics for one split. `proba` is (N, C) class probabilities.

    Everything comes from the confusion matrix and one gather of the true class's probability,
    in numpy: the same numbers as scikit-learn's accuracy_score, precision_recall_fscore_support,
    f1_score (macro / weighted, zero_division=0) and log_loss (tests/test_evaluate.py checks),
    without their per-call input validation, which cost more than the metrics on every run."""
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        return {"n": 0}
    k = len(classes)
    y_pred = np.asarray(proba).argmax(1)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp, support, predicted = np.diag(cm).astype(np.float64), cm.sum(1), cm.sum(0)
    p = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    r = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = 2 * tp + (predicted - tp) + (support - tp)
    f = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-7, 1.0)
    clipped = clipped / clipped.sum(1, keepdims=True)
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / len(y_true)),
        "macro_f1": float(f.mean()),
        "weighted_f1": float(np.dot(f, support) / support.sum()),
        "log_loss": float(-np.log(clipped[np.arange(len(y_true)), y_true]).mean()),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
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
