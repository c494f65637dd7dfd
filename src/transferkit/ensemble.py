"""Greedy ensemble selection over validation predictions (Caruana et al. 2004).

Caruana, Niculescu-Mizil, Crew, Ksikes, "Ensemble selection from libraries of models" (ICML 2004):
start from the best `init_n` single models (their "sorted initialisation"), then, each round, add
the library member (WITH replacement: a model may be added again, which raises its weight) whose
addition gives the best validation metric of the averaged probabilities; finally keep the best
prefix of that path, not the last round. A member's weight is how many times it was picked over the
ensemble size, so the weights are multiples of 1/len(members) and sum to 1.

Only validation arrays go in, so selection cannot see the test split by construction; apply the
weights to test (or production) probabilities with `combine`.

Guarantee: with `init_n=1` (the default) the chosen ensemble is never worse on validation than the
best single model, because that model alone is round 0 of the path. With `init_n > 1` round 0 is
the average of the top `init_n`; the paper chose N on the validation set, so do the same (call with
several `init_n` and keep the best `val_metric`) if you need the guarantee there.

Ties are deterministic: models are taken in sorted-name order (dict order does not matter) and,
among candidates equal to within float rounding (`TIE`), the first name wins; equal prefixes
resolve to the earliest (smallest) round.
"""
from __future__ import annotations

import numpy as np

from .errors import TransferkitError

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] in the log losses (as metrics.py)
TIE = 1e-12  # relative: metric values closer than this are equal (float rounding of averages)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-probability of the true class, nats. y (N,) ints, p (N, C) rows sum 1."""
    q = np.clip(p, EPS, 1.0)
    q = q / q.sum(1, keepdims=True)
    return float(-np.log(q[np.arange(len(y)), y]).mean())


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float((p.argmax(1) == y).mean())


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy over all N*L (item, label) cells, nats. y, p (N, L)."""
    q = np.clip(p, EPS, 1.0 - EPS)
    return float(-(y * np.log(q) + (1.0 - y) * np.log1p(-q)).mean())


def average_precision(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-label average precision, shape (L,), NaN for labels without a positive.

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, tied scores counted
    together: the definition of scikit-learn's average_precision_score (tests check), in numpy
    because the greedy search calls it (models x rounds) times."""
    n, n_labels = y.shape
    out = np.full(n_labels, np.nan)
    for j in range(n_labels):
        pos = y[:, j].sum()
        if pos == 0:
            continue
        order = np.argsort(-s[:, j], kind="mergesort")
        ss, tp = s[order, j], np.cumsum(y[order, j])
        last = np.r_[np.flatnonzero(np.diff(ss)), n - 1]  # last index of each tied score group
        tp = tp[last]
        out[j] = np.sum(np.diff(np.r_[0.0, tp / pos]) * (tp / (last + 1)))
    return out


def _map(y: np.ndarray, p: np.ndarray) -> float:
    """Macro mean of per-label AP over labels with at least one positive (others are undefined)."""
    ap = average_precision(y, p)
    return float(np.nanmean(ap))


# name -> (function(y, proba) -> float, higher is better, multilabel?)
METRICS = {
    "log_loss": (_log_loss, False, False),
    "accuracy": (_accuracy, True, False),
    "bce": (_bce, False, True),
    "map": (_map, True, True),
}


def _check(val_probas: dict, y_val, metric: str, multilabel: bool):
    """Validated (names in sorted order, stacked probas (M, N, C|L) float64, y) or TransferkitError."""
    if metric not in METRICS or METRICS[metric][2] != multilabel:
        ok = [m for m, (_, _, ml) in METRICS.items() if ml == multilabel]
        raise TransferkitError(f"ensemble metric {metric!r} is not available with multilabel={multilabel}; use one of {ok}")
    if not val_probas:
        raise TransferkitError("ensemble selection needs at least one model's validation probabilities")
    names = sorted(val_probas)
    P = [np.asarray(val_probas[k], dtype=np.float64) for k in names]
    shapes = {k: p.shape for k, p in zip(names, P)}
    if len(set(shapes.values())) != 1 or P[0].ndim != 2:
        raise TransferkitError(f"every model's validation probabilities must be one (N, C) array of the same shape; got {shapes}")
    P = np.stack(P)
    if not np.isfinite(P).all() or P.min() < 0 or P.max() > 1:
        raise TransferkitError("validation probabilities must be finite and in [0, 1] (pass probabilities, not logits)")
    y = np.asarray(y_val)
    n, c = P.shape[1:]
    if multilabel:
        if y.shape != (n, c) or not np.isin(y, (0, 1)).all():
            raise TransferkitError(f"multi-label targets must be a 0/1 array of shape {(n, c)}; got shape {y.shape}")
        y = y.astype(np.float64)
    else:
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c:
            raise TransferkitError(f"single-label targets must be {n} class indices in [0, {c}); got shape {y.shape}, dtype {y.dtype}")
        bad = np.abs(P.sum(2) - 1.0).max()
        if bad > 1e-3:
            raise TransferkitError(f"single-label probabilities must sum to 1 per row (worst row is off by {bad:.3g}); "
                                   "apply softmax, or pass multilabel=True for per-label sigmoids")
    return names, P, y


def _first_best(values: list[float], sign: float) -> int:
    """Index of the first value within float rounding (TIE) of the best, so that mathematically
    equal candidates (the same model under two names, a:b = 1:1 vs 2:2) resolve by order, not
    by the last bit of a sum."""
    v = [sign * x for x in values]
    best = min(v)
    return next(i for i, x in enumerate(v) if x <= best + TIE * max(1.0, abs(best)))


def greedy_selection(val_probas: dict[str, np.ndarray], y_val, rounds: int = 50, metric: str = "log_loss",
                     init_n: int = 1, multilabel: bool = False) -> dict:
    """Choose ensemble weights on validation predictions by greedy forward selection with replacement.

    val_probas: model name -> validation probabilities, all the same shape: (N, C) softmax rows
        (single-label) or (N, L) per-label sigmoid probabilities (multilabel=True).
    y_val: (N,) class indices, or (N, L) 0/1 indicators when multilabel.
    rounds: additions after the initial `init_n` members (ensemble size is at most init_n + rounds).
    metric: "log_loss" (nats, lower better) or "accuracy"; multi-label: "bce" (nats, lower
        better) or "map" (macro average precision, higher better).

    Returns {"weights": {every name: fraction, 0.0 if never picked; sum 1}, "members": [names in
    pick order, the best prefix], "history": [metric of the ensemble after round r; r = 0 is the
    initial one], "best_round": r of the best prefix, "val_metric": history[best_round],
    "single_best": (name, metric of that model alone)}.
    """
    if int(rounds) != rounds or rounds < 0:
        raise TransferkitError(f"ensemble rounds must be a whole number >= 0; got {rounds!r}")
    names, P, y = _check(val_probas, y_val, metric, multilabel)
    if int(init_n) != init_n or not 1 <= init_n <= len(names):
        raise TransferkitError(f"init_n must be between 1 and the number of models ({len(names)}); got {init_n!r}")
    fn, higher, _ = METRICS[metric]
    sign = -1.0 if higher else 1.0  # minimise sign * metric

    singles = [fn(y, p) for p in P]
    ranked = sorted(range(len(names)), key=lambda i: (sign * singles[i], names[i]))
    members = [ranked[i] for i in range(init_n)]
    total = P[members].sum(0)  # running sum of the members' probabilities, (N, C)
    history = [fn(y, total / len(members))]
    for _ in range(int(rounds)):
        scores = [fn(y, (total + p) / (len(members) + 1)) for p in P]
        best_i = _first_best(scores, sign)  # sorted names: a tie goes to the first name
        members.append(best_i)
        total += P[best_i]
        history.append(scores[best_i])
    best_round = _first_best(history, sign)  # a tie goes to the earliest (smallest) prefix
    chosen = members[: init_n + best_round]
    counts = np.bincount(chosen, minlength=len(names))
    b = ranked[0]
    return {
        "weights": {name: float(counts[i] / len(chosen)) for i, name in enumerate(names)},
        "members": [names[i] for i in chosen],
        "history": [float(h) for h in history],
        "best_round": int(best_round),
        "val_metric": float(history[best_round]),
        "single_best": (names[b], float(singles[b])),
    }


def combine(probas: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted average of the models' probabilities, float64 of their common shape.

    Models missing from `weights`, or with weight 0, are not needed in `probas` (so a deployed
    ensemble only runs its members); the weights are renormalised to sum 1 over those used."""
    used = {k: float(w) for k, w in weights.items() if w != 0}
    if not used or any(w < 0 or not np.isfinite(w) for w in used.values()):
        raise TransferkitError(f"ensemble weights must be finite, >= 0 and not all zero; got {weights}")
    missing = sorted(set(used) - set(probas))
    if missing:
        raise TransferkitError(f"no probabilities for ensemble member(s) {missing}; predict with them first")
    arrays = {k: np.asarray(probas[k], dtype=np.float64) for k in used}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise TransferkitError(f"ensemble members' probabilities differ in shape: { {k: a.shape for k, a in arrays.items()} }")
    total = sum(used.values())
    return sum(arrays[k] * (w / total) for k, w in sorted(used.items()))
