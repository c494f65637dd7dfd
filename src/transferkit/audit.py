"""Data you can fix: suspected label errors by confident learning (Northcutt, Jiang & Chuang 2021,
"Confident learning: estimating uncertainty in dataset labels", JAIR 70), with `cleanlab`.

1. `out_of_fold_proba`: every item's class probabilities from a linear probe that never saw it
   (stratified k-fold on cached features). In-sample probabilities would have memorised the
   wrong labels and hide them.
2. `find_label_issues`: cleanlab counts, per given class, the items whose out-of-fold
   probability of another class is above that class's mean self-confidence (the confident
   joint), calibrates it into an estimate of the joint P(given, true), prunes the most
   off-diagonal items per class ("prune_by_noise_rate") and ranks them by self-confidence
   p(given label), lowest first.
3. `write_label_issues_csv`: the review list, most suspect first, written atomically.

Only the items passed in are audited: callers pass train + validation, never test (the audit
must not look at the split that measures the final number).
Shapes: X (N, D) features, y (N,) int in [0, K), proba (N, K).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import TransferkitError
from .heads import fit_linear_head

METHOD = ("confident learning (Northcutt et al. 2021, cleanlab): out-of-fold probabilities of a linear probe, "
          "issues pruned by noise rate, ranked by self-confidence p(given label)")


def _pick_C(X, y, n_classes: int, folds: int, seed: int) -> float:
    """C for every fold, chosen once: fit_linear_head's validation search on one inner
    stratified split of all the items (the first of `folds` folds, with seed + 1). Those items
    thus take part in choosing this one scalar, a small optimism; choosing C per fold on the
    fold's held-out part would tune every probe on exactly the items it then scores."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        tr, va = next(skf.split(np.zeros(len(y)), y))
    _, info = fit_linear_head(X[tr], y[tr], X[va], y[va], n_classes, seed=seed, power="none")
    return float(info["C"])


def out_of_fold_proba(X, y, n_classes: int, folds: int = 5, seed: int = 0, C: float | None = None) -> np.ndarray:
    """(N, n_classes) float64 probabilities, row i from a linear probe fitted without item i.

    Stratified k-fold (`StratifiedKFold(folds, shuffle=True, random_state=seed)`); each fold
    is `heads.fit_linear_head(..., C=C, power="none")` on the other folds. `C=None`: one C for
    all folds, chosen on an inner split (see `_pick_C`), never per fold on its held-out part.
    Fewer items in the largest class than `folds`: fewer folds (at least 2). A class with fewer
    items than folds is absent from some training folds; its held-out items then get ~0
    probability for their label (nothing else vouches for them): the lowest label quality
    (cleanlab itself never flags a class's last item, so check `scores` for those).
    """
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int64, copy=False)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (N, D) with N = len(y); got {X.shape} and {len(y)} labels")
    if len(y) < 2:
        raise TransferkitError(f"the label audit needs at least 2 items, got {len(y)}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be class indices in [0, {n_classes})")
    k = int(max(2, min(folds, np.bincount(y).max())))
    if C is None:
        C = _pick_C(X, y, n_classes, k, seed)
    proba = np.zeros((len(y), n_classes))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(skf.split(np.zeros(len(y)), y))
    for tr, va in splits:
        # with one C there is nothing to choose: fit_linear_head ignores the validation arrays
        head, _ = fit_linear_head(X[tr], y[tr], X[:0], y[:0], n_classes, seed=seed, C=C, power="none")
        with torch.no_grad():
            proba[va] = torch.softmax(head(torch.from_numpy(X[va])).double(), 1).numpy()
    return proba


def _noise_rates(Q: np.ndarray) -> np.ndarray:
    """(K,) estimated fraction of the items *given* class c whose true class is another:
    1 - Q[c, c] / sum_j Q[c, j], Q (K, K) the estimated joint P(given = row, true = column)."""
    row = Q.sum(1)
    return np.where(row > 0, 1.0 - np.diag(Q) / np.where(row > 0, row, 1.0), 0.0)


def find_label_issues(y, oof_proba, classes) -> dict:
    """Suspected label errors from out-of-fold probabilities (cleanlab).

    Returns a dict:
    - `issues`: list of {index, given, suggested, score, p_given, p_suggested}, most suspect
      first; `given`/`suggested` are class names (suggested = argmax of the out-of-fold
      probabilities), `score` cleanlab's self-confidence label quality in [0, 1] (= p_given;
      lower = more suspect).
    - `scores`: (N,) label quality of every item, to rank beyond the flagged ones.
    - `noise_rate_by_class`: {class: estimated fraction of its given labels that are wrong};
      `noise_rate`: the estimated overall fraction (1 - trace of the joint).
    - `n_issues`, `n`, `method`.
    """
    try:
        from cleanlab.count import estimate_joint
        from cleanlab.filter import find_label_issues as cl_find
        from cleanlab.rank import get_label_quality_scores
    except ImportError as e:
        raise TransferkitError(f"the label audit needs cleanlab ({e}): pip install 'cleanlab>=2.6'") from e

    y = np.asarray(y).astype(np.int64, copy=False)
    p = np.asarray(oof_proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    if p.ndim != 2 or p.shape != (len(y), len(classes)):
        raise ValueError(f"oof_proba must be (N, K) = ({len(y)}, {len(classes)}), got {p.shape}")
    if len(y) == 0:
        return {"issues": [], "scores": np.zeros(0), "noise_rate_by_class": {c: 0.0 for c in classes}, "noise_rate": 0.0,
                "n_issues": 0, "n": 0, "method": METHOD}
    p = np.clip(p, 1e-12, None)
    p /= p.sum(1, keepdims=True)  # cleanlab asserts rows sum to 1; ~0 entries keep it well-defined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes; the rates say it
        ranked = cl_find(y, p, return_indices_ranked_by="self_confidence", n_jobs=1)
        scores = get_label_quality_scores(y, p, method="self_confidence")
        Q = estimate_joint(y, p)
    rates = _noise_rates(Q)
    suggested = p.argmax(1)
    issues = [{
        "index": int(i),
        "given": classes[y[i]],
        "suggested": classes[suggested[i]],
        "score": float(scores[i]),
        "p_given": float(p[i, y[i]]),
        "p_suggested": float(p[i, suggested[i]]),
    } for i in ranked]
    return {
        "issues": issues,
        "scores": scores,
        "noise_rate_by_class": {c: float(r) for c, r in zip(classes, rates)},
        "noise_rate": float(1.0 - np.trace(Q)),
        "n_issues": len(issues),
        "n": int(len(y)),
        "method": METHOD,
    }


def write_label_issues_csv(path, rows, ids) -> Path:
    """Write `path,given_label,suggested_label,score` for `rows` (find_label_issues' `issues`,
    most suspect first), `ids[row["index"]]` being the item's path or id; atomically (io.py)."""
    from . import io as tkio

    tkio.write_csv(path, ["path", "given_label", "suggested_label", "score"], [[ids[r["index"]], r["given"], r["suggested"], f"{r['score']:.6g}"] for r in rows])
    return Path(path)
