"""Metrics for multi-label runs, from arrays: thresholds chosen on validation, scores on test.

A leaf module (numpy, scikit-learn; of ours only `errors`). Shapes: Y (N, L) 0/1 true labels,
P (N, L) scores, one column per label, higher = more likely (probabilities for worst_items'
cross-entropy); thresholds (L,). An item predicts label j when P[i, j] >= thresholds[j].

Every ratio follows scikit-learn with zero_division=0 (tests compare each number with
f1_score / precision_score / recall_score / hamming_loss / accuracy_score on the same indicator
matrices): a label never predicted has precision 0, a label with no true item recall 0, and in
the "samples" average an item with no true and no predicted label scores 0 (subset accuracy
counts it right). Macro averages run over all L labels, as scikit-learn's do; mean average
precision only over the labels with a positive item (AP is undefined without one).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from .errors import TransferkitError

DEFAULT_THRESHOLD = 0.5  # a label with no positive in validation: nothing to choose from
EPS = 1e-7  # probabilities clipped to [EPS, 1 - EPS] for the cross-entropy (nats)


def _arrays(Y, P, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    Y, P = np.asarray(Y), np.asarray(P, dtype=np.float64)
    if Y.ndim != 2 or Y.shape != P.shape:
        raise TransferkitError(f"{what}labels of shape {Y.shape} and scores of shape {P.shape}: both must be (items, labels)")
    if not np.isin(Y, (0, 1)).all():
        raise TransferkitError(f"{what}labels must be a 0/1 indicator matrix (one column per label)")
    if not np.isfinite(P).all():
        raise TransferkitError(f"{what}scores contain NaN or infinity; check the model's outputs")
    return Y.astype(bool), P


def _best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising F1 of (p >= t) against y; ties: the one nearest 0.5.

    Every t in (next lower distinct score, a score] gives the same predictions, so each distinct
    score ends one interval; the chosen point is 0.5 when inside the best interval, else its end
    nearest 0.5 (its midpoint when 0.5 lies below it: the interval is open at the bottom).
    """
    pos = int(y.sum())
    if pos == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # the last of each run of equal scores
    tp, fp = np.cumsum(ys)[last], np.cumsum(~ys)[last]
    hi = ps[last]
    lo = np.r_[hi[1:], -np.inf]
    f1 = 2 * tp / (2 * tp + fp + (pos - tp))
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    lo, hi, half = lo[best], hi[best], DEFAULT_THRESHOLD
    t = np.where(half > hi, hi, np.where(half > lo, half, (lo + hi) / 2))
    dist = np.where(half > hi, half - hi, np.maximum(lo - half, 0.0))
    return float(t[np.argmin(dist)])


def choose_thresholds(Y_val, P_val, mode: str = "per_label") -> np.ndarray:
    """Decision thresholds (L,) chosen on VALIDATION arrays only (the signature has no room for
    test data, so test numbers cannot leak into them).

    mode "per_label": each label's threshold maximises that label's F1 on validation (ties: the
    one nearest 0.5; a label with no positive in validation: 0.5). "global": one threshold for all
    labels maximising micro-F1 (F1 over all (item, label) pairs).
    """
    Y, P = _arrays(Y_val, P_val, "validation ")
    if mode == "per_label":
        return np.array([_best_threshold(Y[:, j], P[:, j]) for j in range(Y.shape[1])], dtype=np.float64)
    if mode == "global":
        return np.full(Y.shape[1], _best_threshold(Y.ravel(), P.ravel()), dtype=np.float64)
    raise TransferkitError(f"threshold mode {mode!r}: use 'per_label' or 'global'")


def _ratio(a, b) -> np.ndarray:
    """a / b, 0 where b == 0 (scikit-learn's zero_division=0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _prf(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def _check_thresholds(thresholds, L: int) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.shape != (L,):
        raise TransferkitError(f"{t.size} thresholds for {L} labels: give one per label (choose_thresholds returns them)")
    return t


def evaluate_multilabel(Y_true, P, classes, thresholds) -> dict:
    """All multi-label numbers of one split, JSON-ready.

    Keys: n_items, n_labels; f1/precision/recall _micro/_macro/_samples; mean_average_precision
    (macro AP over the ap_labels labels with a positive item); subset_accuracy (every label right);
    hamming_loss (share of wrong (item, label) pairs); label_cardinality {true, predicted} (labels
    per item); per_label {class: {support, predicted, precision, recall, f1, ap (None without a
    positive), threshold}}; cooccurrence {classes, counts: L x L items having both true labels
    (diagonal = support)}; zero_division 0.
    """
    Y, P = _arrays(Y_true, P)
    classes = [str(c) for c in classes]
    if len(classes) != Y.shape[1]:
        raise TransferkitError(f"{len(classes)} class names for {Y.shape[1]} label columns")
    t = _check_thresholds(thresholds, Y.shape[1])
    pred = P >= t[None, :]
    tp_l, fp_l, fn_l = (Y & pred).sum(0), (~Y & pred).sum(0), (Y & ~pred).sum(0)
    tp_i, fp_i, fn_i = (Y & pred).sum(1), (~Y & pred).sum(1), (Y & ~pred).sum(1)
    p_l, r_l, f_l = _prf(tp_l, fp_l, fn_l)
    p_i, r_i, f_i = _prf(tp_i, fp_i, fn_i)
    p_mi, r_mi, f_mi = _prf(tp_l.sum(), fp_l.sum(), fn_l.sum())
    support = Y.sum(0)
    ap = [float(average_precision_score(Y[:, j], P[:, j])) if support[j] else None for j in range(Y.shape[1])]
    have = [a for a in ap if a is not None]

    def mean(a) -> float:  # 0 over no items (or no labels)
        return float(np.mean(a)) if np.size(a) else 0.0

    return {
        "n_items": int(Y.shape[0]), "n_labels": int(Y.shape[1]),
        "f1_micro": float(f_mi), "f1_macro": mean(f_l), "f1_samples": mean(f_i),
        "precision_micro": float(p_mi), "precision_macro": mean(p_l), "precision_samples": mean(p_i),
        "recall_micro": float(r_mi), "recall_macro": mean(r_l), "recall_samples": mean(r_i),
        "mean_average_precision": float(np.mean(have)) if have else None, "ap_labels": len(have),
        "subset_accuracy": mean((Y == pred).all(1)), "hamming_loss": mean(Y != pred),
        "label_cardinality": {"true": mean(Y.sum(1)), "predicted": mean(pred.sum(1))},
        "per_label": {c: {"support": int(support[j]), "predicted": int(pred[:, j].sum()), "precision": float(p_l[j]),
                          "recall": float(r_l[j]), "f1": float(f_l[j]), "ap": ap[j], "threshold": float(t[j])}
                      for j, c in enumerate(classes)},
        "cooccurrence": {"classes": classes, "counts": (Y.T.astype(np.int64) @ Y.astype(np.int64)).tolist()},
        "zero_division": 0,
    }


def worst_items(Y_true, P, thresholds, k: int = 24, classes=None) -> list[dict]:
    """The k items the model gets most wrong: [{index, missing, extra, loss}], worst first.

    loss: the item's binary cross-entropy, mean over labels (nats per label; P clipped to
    [EPS, 1 - EPS]); ties: lower index first. missing: true labels not predicted; extra:
    predicted labels not true (class names if `classes` is given, else column indices).
    """
    Y, P = _arrays(Y_true, P)
    t = _check_thresholds(thresholds, Y.shape[1])
    if classes is not None and len(classes) != Y.shape[1]:
        raise TransferkitError(f"{len(classes)} class names for {Y.shape[1]} label columns")
    q = np.clip(P, EPS, 1 - EPS)
    loss = -np.where(Y, np.log(q), np.log1p(-q)).mean(1) if Y.shape[1] else np.zeros(len(Y))
    pred = P >= t[None, :]
    name = (lambda j: str(classes[j])) if classes is not None else int
    order = np.lexsort((np.arange(len(loss)), -loss))[: max(int(k), 0)]
    return [{"index": int(i), "missing": [name(j) for j in np.flatnonzero(Y[i] & ~pred[i])],
             "extra": [name(j) for j in np.flatnonzero(~Y[i] & pred[i])], "loss": float(loss[i])} for i in order]
