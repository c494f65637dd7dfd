"""Predictions you can trust: temperature scaling, calibration metrics and selective prediction.

Everything here works on plain arrays from the *validation* split (temperature, thresholds) and
reports on any split, so the same functions serve torch heads, ONNX models and the tf-idf
baseline (whose `predict_log_proba` are valid "logits": softmax(log p) = p).

- `fit_temperature` / `TemperatureScaling`: one scalar T > 0, logits / T, fitted by validation
  negative log-likelihood (Guo et al. 2017, "On calibration of modern neural networks"). It
  never changes the argmax, so accuracy is untouched; only confidences move.
- `calibration_report`: top-label expected calibration error (ECE) over equal-width confidence
  bins, Brier score, log-loss, and the per-bin numbers behind a reliability diagram.
- `coverage_curve` / `threshold_for_accuracy`: keep only predictions whose top probability is
  at least t; accuracy versus the fraction kept, and the lowest t reaching a target accuracy.

Shapes: logits / proba (N, K) float, y (N,) int class indices in [0, K).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

T_MIN, T_MAX = 0.05, 20.0  # search range of the temperature (log-spaced, bounded)
LOG_CLIP = 1e-7  # probabilities are clipped to [LOG_CLIP, 1] for the log-loss
N_BINS = 15  # confidence bins for the ECE; 15 as in Guo et al. (2017)
# A weak log-normal prior on T around 1 (sd 1 in log T: T = e or 1/e is one sd away), so the fit
# is a maximum a posteriori estimate: with thousands of validation items it is the plain NLL fit,
# but a small validation split that the model gets all right (the NLL then falls forever as
# T -> 0) no longer sharpens every probability to 0 or 1 on the strength of a few items.
PRIOR_SD = 1.0


def _arrays(scores, y) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y).astype(np.int64, copy=False).reshape(-1)
    if s.ndim != 2:
        raise ValueError(f"expected an (N, K) array of scores, got shape {s.shape}")
    if len(s) != len(y):
        raise ValueError(f"{len(s)} score rows but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {s.shape[1]}), got {y.min()}..{y.max()}")
    return s, y


def _finite_logits(z: np.ndarray) -> np.ndarray:
    """log-probabilities of exactly 0 are -inf: replace by a very negative finite number, so
    that z / T stays defined (the class keeps a probability of ~0 at any T)."""
    if np.isfinite(z).all():
        return z
    return np.where(np.isneginf(z), -1e4, np.nan_to_num(z, nan=0.0, posinf=1e4))


def _nll(z: np.ndarray, y: np.ndarray, T: float) -> float:
    return float(-log_softmax(z / T, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits, y) -> float:
    """The temperature T in [T_MIN, T_MAX] minimising the mean NLL of softmax(logits / T) on `y`.

    Bounded 1-d search over log T (scipy `minimize_scalar`, method "bounded"): the NLL is smooth
    and, in log T, close to convex, and the log scale treats T = 0.5 and T = 2 alike. `logits`
    may be any scores whose softmax is the model's probability, e.g. log-probabilities.
    Fewer than two items or a single class in `y`: nothing to learn from, returns 1.0. The NLL
    carries a weak prior on log T (PRIOR_SD), which matters only for small validation splits.
    """
    z, y = _arrays(logits, y)
    if len(y) < 2 or len(np.unique(y)) < 2:
        return 1.0
    z = _finite_logits(z)
    n = len(y)

    def objective(u: float) -> float:  # mean NLL + the prior's share per item
        return _nll(z, y, float(np.exp(u))) + u * u / (2 * PRIOR_SD**2 * n)

    res = minimize_scalar(objective, bounds=(np.log(T_MIN), np.log(T_MAX)), method="bounded", options={"xatol": 1e-5})
    # the bounded search never evaluates the end points: keep 1.0 unless it is really better
    return float(np.exp(res.x)) if objective(res.x) < objective(0.0) else 1.0


def softmax_t(logits, T: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the last axis as float64, (N, K) -> (N, K)."""
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    return softmax(_finite_logits(np.asarray(logits, dtype=np.float64)) / float(T), axis=-1)


class TemperatureScaling(torch.nn.Module):
    """logits -> logits / T. Placed after a head it calibrates the model's probabilities; T is
    a float32 buffer (saved in the state dict, not trained by an optimiser, exported to ONNX as
    a constant of the Div)."""

    temperature: torch.Tensor

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

    def fit(self, logits, y) -> "TemperatureScaling":
        """Set T by `fit_temperature` on validation logits (numpy or torch); returns self."""
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().cpu().numpy()
        self.temperature.fill_(fit_temperature(logits, y))
        return self

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):.4g}"


def calibration_report(proba, y, n_bins: int = N_BINS) -> dict:
    """Calibration of predicted probabilities `proba` (N, K) against labels `y` (N,).

    - `ece`: top-label expected calibration error. Each item's confidence is its top
      probability; items fall into `n_bins` equal-width bins on [0, 1], right-closed
      ((lo, hi], the first bin also holds 0, as scikit-learn's `calibration_curve`);
      ECE = sum over bins of (items in bin / N) * |accuracy in bin - mean confidence in bin|.
      `mce` is the largest of those gaps over non-empty bins. Both in [0, 1].
    - `brier`: mean over items of sum over classes (p_c - 1[y = c])^2, in [0, 2]; for two
      classes that is twice scikit-learn's binary `brier_score_loss(y, p_1)`.
    - `log_loss`: mean -ln p_y with p clipped to [1e-7, 1] (nats).
    - `bins`: the reliability diagram, JSON-ready lists: `edges` (n_bins + 1), `count`,
      `confidence` and `accuracy` (n_bins each; None for an empty bin).
    No items: every metric None.
    """
    p, y = _arrays(proba, y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = {"n": int(len(y)), "n_bins": int(n_bins), "method": f"top-label ECE, {n_bins} equal-width confidence bins (lo, hi]"}
    if not len(y):
        empty = [None] * n_bins
        return {**out, "ece": None, "mce": None, "brier": None, "log_loss": None, "accuracy": None, "mean_confidence": None,
                "bins": {"edges": edges.tolist(), "count": [0] * n_bins, "confidence": empty, "accuracy": list(empty)}}
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    ids = np.searchsorted(edges[1:-1], conf)  # side="left": bin i holds (edges[i], edges[i+1]]
    count = np.bincount(ids, minlength=n_bins)
    sum_conf = np.bincount(ids, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(ids, weights=correct, minlength=n_bins)
    full = count > 0
    mean_conf = np.where(full, sum_conf / np.maximum(count, 1), np.nan)
    acc = np.where(full, sum_acc / np.maximum(count, 1), np.nan)
    gap = np.abs(acc - mean_conf)[full]
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    p_y = np.clip(p[np.arange(len(y)), y], LOG_CLIP, 1.0)

    def _list(a):
        return [None if v != v else float(v) for v in a]

    return {
        **out,
        "ece": float((count[full] / len(y) * gap).sum()),
        "mce": float(gap.max()),
        "brier": float(((p - onehot) ** 2).sum(1).mean()),
        "log_loss": float(-np.log(p_y).mean()),
        "accuracy": float(correct.mean()),
        "mean_confidence": float(conf.mean()),
        "bins": {"edges": edges.tolist(), "count": count.astype(int).tolist(), "confidence": _list(mean_conf), "accuracy": _list(acc)},
    }


def coverage_curve(proba, y) -> dict:
    """Selective prediction: keep the items whose top probability is >= t, for every t.

    Returns arrays of one length M (M = number of distinct confidences), t descending:
    `thresholds` t, `coverage` (fraction of items kept, ascending to 1), `accuracy` (accuracy
    of the kept items), `kept` (their number). Items with equal confidence are kept or
    dropped together, as a threshold would. No items: empty arrays.
    """
    p, y = _arrays(proba, y)
    conf = p.max(1)
    correct = p.argmax(1) == y
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], correct[order]
    # the last index of each run of equal confidences: keeping >= t keeps the whole run
    last = np.flatnonzero(np.r_[c[1:] != c[:-1], True]) if len(c) else np.array([], dtype=int)
    kept = last + 1
    hits = np.cumsum(ok)[last] if len(c) else np.array([])
    return {
        "thresholds": c[last],
        "coverage": kept / max(len(c), 1),
        "accuracy": hits / np.maximum(kept, 1),
        "kept": kept,
    }


def threshold_for_accuracy(proba, y, target: float = 0.95) -> float | None:
    """The lowest confidence threshold t such that the predictions with top probability >= t
    reach `target` accuracy on these items (the most coverage at that accuracy), or None when
    no threshold does. Choose it on validation: on new data the accuracy above t scatters
    around the target (and is optimistic for small validation sets)."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target accuracy must be in [0, 1], got {target}")
    cur = coverage_curve(proba, y)
    ok = np.flatnonzero(cur["accuracy"] >= target - 1e-12)
    return float(cur["thresholds"][ok[-1]]) if len(ok) else None
