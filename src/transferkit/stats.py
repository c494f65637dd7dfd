"""Paired significance tests between two classifiers scored on the same test items.

Both tests use the pairing: each item is seen by both models, so item difficulty cancels out and
far smaller differences are detectable than by comparing two accuracies with separate intervals.

- `mcnemar`: single-label, where each item is simply right or wrong for each model. Only the
  discordant items (one model right, the other wrong) carry information; under the null hypothesis
  (equal error rates) each of them is equally likely to favour either model, so `only_a` is
  Binomial(only_a + only_b, 1/2). The exact two-sided binomial test (scipy.stats.binomtest) is used
  rather than the chi-square approximation, which is poor for the few discordant items of a small
  test split (McNemar 1947; Dietterich 1998 recommends it for comparing classifiers).
- `paired_permutation`: any metric computed on the whole test set, e.g. macro-F1 of multi-label
  indicator matrices. Multi-label items have no single right/wrong (an item with three labels can be
  two-thirds right), and macro-F1 is not a sum of per-item scores, so McNemar's counts do not exist.
  Approximate randomisation (Noreen 1989; Yeh 2000 for F-scores; Dror et al. 2018) needs neither:
  under the null hypothesis the two models' predictions for an item are exchangeable, so swapping
  them on a random half of the items gives a draw of the metric difference under the null; the
  p-value is the share of draws at least as far from 0 as the observed difference.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import TransferkitError


def _bools(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or not (a.dtype == bool or np.isin(a, (0, 1)).all()):
        raise TransferkitError(f"{name} must be a 1-D array of booleans (is each test item right?); got shape {a.shape}, dtype {a.dtype}")
    return a.astype(bool)


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test. correct_a, correct_b: (N,) booleans, item i right for model a / b.

    Returns {"n": items, "only_a": items only a got right, "only_b": items only b got right,
    "p": two-sided exact p-value; 1.0 when no item is discordant}."""
    a, b = _bools(correct_a, "correct_a"), _bools(correct_b, "correct_b")
    if len(a) != len(b):
        raise TransferkitError(f"the two models were scored on different numbers of items ({len(a)} vs {len(b)}); pair them by item first")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = 1.0
    if only_a + only_b:
        from scipy.stats import binomtest

        p = float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)
    return {"n": int(len(a)), "only_a": only_a, "only_b": only_b, "p": p}


def macro_f1(Y: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 of (N, L) 0/1 indicator matrices: the mean over labels of 2TP / (2TP + FP + FN),
    a label with no positives and no predictions counting 0 (scikit-learn's zero_division=0)."""
    Y, pred = np.asarray(Y, dtype=bool), np.asarray(pred, dtype=bool)
    tp = (Y & pred).sum(0)
    denom = Y.sum(0) + pred.sum(0)  # = 2TP + FP + FN
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(len(denom)), where=denom > 0)))


def paired_permutation(metric: Callable[[np.ndarray, np.ndarray], float], Y, pred_a, pred_b,
                       n_perm: int = 2000, seed: int = 0) -> dict:
    """Two-sided paired permutation test of metric(Y, pred_a) - metric(Y, pred_b).

    Y: targets, first axis = the N items (e.g. (N, L) 0/1 indicators); pred_a, pred_b: the two
    models' predictions for the same items, the same shape as each other (first axis N; labels,
    scores or probabilities, whatever `metric` takes). Each permutation swaps the two predictions of
    every item with probability 1/2 (one shared mask, so the pairing by item is kept).

    Returns {"diff": observed metric difference a - b, "p": (1 + #{|null diff| >= |diff|}) /
    (1 + n_perm), "n": items}. The +1 counts the observed split as one of the draws, so p is never
    0 and the test keeps its level (Phipson & Smyth 2010); the smallest p is 1 / (1 + n_perm).
    The result depends only on the inputs and `seed`."""
    Y, A, B = np.asarray(Y), np.asarray(pred_a), np.asarray(pred_b)
    if A.shape != B.shape or A.ndim == 0 or len(A) != len(Y):
        raise TransferkitError(f"pred_a {A.shape} and pred_b {B.shape} must have the same shape, one row per item of Y {Y.shape}")
    if int(n_perm) != n_perm or n_perm < 1:
        raise TransferkitError(f"n_perm must be a whole number >= 1; got {n_perm!r}")
    diff = float(metric(Y, A) - metric(Y, B))
    rng = np.random.default_rng(seed)
    # float rounding: a draw equal to the observed difference (e.g. the identity swap) must count
    tol = 1e-12 * max(1.0, abs(diff))
    extreme = 0
    shape = (len(A),) + (1,) * (A.ndim - 1)  # one coin per item, broadcast over its labels
    for _ in range(int(n_perm)):
        swap = rng.random(len(A)) < 0.5
        s = swap.reshape(shape)
        d = metric(Y, np.where(s, B, A)) - metric(Y, np.where(s, A, B))
        extreme += abs(d) >= abs(diff) - tol
    return {"diff": diff, "p": float((1 + extreme) / (1 + n_perm)), "n": int(len(A))}
