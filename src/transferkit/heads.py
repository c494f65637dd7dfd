"""Classifier heads on cached features: multinomial logistic regression and an MLP.

Both are returned as plain torch modules mapping raw features (N, D) to logits (N, C), with
the feature standardisation folded into the first layer, so the same module serves training
metrics, prediction and export.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

# Feature transforms the linear probe tries before standardising (`power="auto"` keeps the one
# with the lower validation log-loss): none, or the signed square root sign(x)·|x|^0.5, the
# "power normalisation" of Perronnin et al. (2010, improved Fisher vectors). Pooled CNN
# features are sparse and heavy-tailed (a few channels fire very strongly); the root evens
# them out so that a linear model weighs more of them. Measured on validation, never assumed:
# CIFAR-10 (EfficientNet-Lite1 192 px) validation log-loss 0.264 -> 0.259, test 90.35 % -> 90.56 %
# (90.92 % with the refit on train + validation, head_cache.fit_head_cached).
POWERS = {"none": 1.0, "sqrt": 0.5}
C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)  # inverse L2 strength tried for the linear probe
# The path stops once the validation log-loss has risen this many C values in a row past its
# best: weaker regularisation only overfits more (the loss along the path is in practice
# unimodal), and the weakly regularised fits are the slow ones (most L-BFGS iterations).
PATH_PATIENCE = 2
# Full-batch L-BFGS on fewer feature values than this runs on one thread: each step is a few
# small matrix products, and a second thread only adds synchronisation. Measured (2 cores,
# one busy with extraction): 40x64 features 4.8 s on 2 threads vs 0.05 s on 1; 400x1280
# 1.56 vs 0.20 s; 3,000x1280 1.77 vs 0.92 s. Larger problems keep the caller's threads.
ONE_THREAD_BELOW = 1 << 22


@contextlib.contextmanager
def threads_for(n_values: int):
    """One torch thread for a head fit on fewer than ONE_THREAD_BELOW feature values."""
    before = torch.get_num_threads()
    if n_values < ONE_THREAD_BELOW:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(0)
    sd = X.std(0)
    sd[sd < 1e-6] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def signed_power(x, p: float):
    """sign(x)·|x|^p, for numpy arrays (a new array, built in place: one allocation) and torch
    tensors alike (p = 1: x itself)."""
    if p == 1.0:
        return x
    if isinstance(x, torch.Tensor):
        return torch.sign(x) * torch.abs(x).pow(p)
    out = np.abs(x)
    if p == 0.5:
        np.sqrt(out, out=out)
    else:
        np.power(out, p, out=out)
    return np.copysign(out, x, out=out)


def _standardised(X: np.ndarray, p: float, stats: tuple | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(signed_power(X, p) - mu) / sd as float32, computed in one array; mu, sd from it unless given."""
    F = signed_power(X, p)
    F = np.array(F, dtype=np.float32, copy=F is X)  # never overwrite the caller's features
    mu, sd = stats if stats is not None else standardiser(F)
    F -= mu
    F /= sd
    return torch.from_numpy(F), mu, sd


class LinearHead(nn.Linear):
    """logits = W·φ(x) + b with φ(x) = sign(x)·|x|^power (power 1: a plain linear layer). The
    same parameters as nn.Linear, so a saved linear head loads into it unchanged."""

    def __init__(self, dim: int, n_classes: int, power: float = 1.0):
        super().__init__(dim, n_classes)
        self.power = float(power)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(signed_power(x, self.power))

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", power={self.power:g}" if self.power != 1.0 else "")


def fold_standardisation(layer: nn.Linear, mu: np.ndarray, sd: np.ndarray) -> None:
    """Make `layer` (trained on (x - mu) / sd) take raw x, in place: W' = W / sd, b' = b - W' mu."""
    with torch.no_grad():
        w = layer.weight / torch.from_numpy(sd)[None, :].to(layer.weight.dtype)
        layer.bias -= w @ torch.from_numpy(mu).to(w.dtype)
        layer.weight.copy_(w)


# L-BFGS stops when no gradient entry exceeds the first tolerance or a step changes the loss
# (O(1): the mean cross-entropy) by less than the second. From LOOSE_FROM training items, where a
# fit costs minutes, the looser pair: on Fashion-MNIST (49,450 x 1,280 Lite0 features, the C path
# with both powers + the refit) TIGHT took 2,306 function evaluations, LOOSE 766 (3x fewer), the
# same C and power, test accuracy 0.8983 vs 0.8982. On small sets (sklearn's digits, 1,280
# items, C = 0.3) LOOSE cost 0.4 points, and a fit takes a second: they keep TIGHT.
TIGHT = (1e-5, 1e-9)
LOOSE = (1e-4, 1e-6)
LOOSE_FROM = 20_000


def tolerances(n_items: int) -> tuple[float, float]:
    """(gradient, loss change) tolerances of the L-BFGS fit on `n_items` training items."""
    return LOOSE if n_items >= LOOSE_FROM else TIGHT


def _folded_linear(W: np.ndarray, b: np.ndarray, mu: np.ndarray, sd: np.ndarray, power: float | None = None) -> nn.Linear:
    """Linear layer on raw x equal to W @ ((x - mu) / sd) + b (power given: a LinearHead, on
    φ(x) instead of x)."""
    Wf = W / sd[None, :]
    bf = b - Wf @ mu
    lin = nn.Linear(W.shape[1], W.shape[0]) if power is None else LinearHead(W.shape[1], W.shape[0], power)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(Wf.astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(bf.astype(np.float32)))
    return lin


def _fit_softmax(Z: torch.Tensor, y: torch.Tensor, k: int, C: float, init: tuple | None, max_iter: int, sample_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Multinomial logistic regression with scikit-learn's objective,
    C * sum(w_i * cross-entropy_i) + ||W||^2 / 2 (bias not penalised; w_i = 1 unless class
    weights are given), minimised by full-batch L-BFGS. Divided by C*n so the loss stays O(1)
    whatever the data size."""
    n, d = Z.shape
    W = torch.zeros(k, d, dtype=Z.dtype) if init is None else init[0].clone()
    b = torch.zeros(k, dtype=Z.dtype) if init is None else init[1].clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    lam = 1.0 / (C * n)
    tol_grad, tol_change = tolerances(n)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=tol_grad, tolerance_change=tol_change, line_search_fn="strong_wolfe")
    evals = 0

    def closure():
        nonlocal evals
        evals += 1
        opt.zero_grad()
        ce = nn.functional.cross_entropy(Z @ W.T + b, y, reduction="none")
        loss = (ce.mean() if sample_weight is None else (ce * sample_weight).mean()) + 0.5 * lam * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach(), evals


def _regularisation_path(Ztr, t_y, Zva, yva, present, n_classes: int, grid, max_iter: int, sample_weight=None) -> tuple[dict, dict, int]:
    """Fits along `grid` (strong to weak, warm-started); validation log-loss per C."""
    scores, fits, init, evals = {}, {}, None, 0
    with torch.enable_grad():
        for c in grid:
            W, b, e = _fit_softmax(Ztr, t_y, len(present), c, init, max_iter, sample_weight)
            init, evals = (W, b), evals + e
            fits[c] = (W, b)
            if len(yva) and len(grid) > 1:
                logits = torch.full((len(yva), n_classes), -1e4)
                logits[:, torch.from_numpy(present)] = Zva @ W.T + b
                scores[c] = float(nn.functional.cross_entropy(logits, torch.from_numpy(yva)))
                lowest = min(scores, key=scores.get)
                if sum(1 for k in scores if k > lowest) >= PATH_PATIENCE:
                    break
            else:
                scores[c] = float("nan")
    return scores, fits, evals


def fit_linear_head(Xtr, ytr, Xva, yva, n_classes: int, seed: int = 0, C: float | None = None, max_iter: int = 500, power: str = "none", class_weight: str = "none") -> tuple[nn.Module, dict]:
    """Standardise, then multinomial L2 logistic regression; C picked by validation log-loss.

    The C grid is walked from strong to weak regularisation, each fit warm-started from the
    previous one (a regularisation path), with full-batch L-BFGS in torch: the same objective
    as scikit-learn's `LogisticRegression(C=...)`, minutes faster on tens of thousands of items.
    The walk ends PATH_PATIENCE values after the best validation loss (`val_log_loss_by_C` lists
    the C values fitted). `power` (a POWERS name, or "auto": each of them, the one with the
    lower validation log-loss kept) transforms the features first; the returned module applies
    it itself, so it still takes raw features. `class_weight="balanced"` weights each training
    item by n / (classes * n_class) (scikit-learn's rule); validation log-loss stays unweighted.
    """
    ytr, yva = np.asarray(ytr), np.asarray(yva)
    names = list(POWERS) if power == "auto" else [power]
    if power != "auto" and power not in POWERS:
        raise ValueError(f"unknown feature power {power!r} (choices: auto, {', '.join(POWERS)})")
    if power == "auto" and not len(yva):
        names = ["none"]  # nothing to choose on
    present = np.unique(ytr)  # classes absent from train can never be predicted
    remap = np.full(n_classes, -1)
    remap[present] = np.arange(len(present))
    t_y = torch.from_numpy(remap[ytr])
    sw = None
    if class_weight == "balanced":
        counts = np.bincount(ytr, minlength=n_classes).astype(np.float64)
        cw = np.divide(len(ytr), len(present) * counts, out=np.zeros(n_classes), where=counts > 0)
        sw = torch.from_numpy(cw[ytr].astype(np.float32))
    grid = sorted([C] if C is not None else C_GRID)
    torch.manual_seed(seed)
    paths, evals, chosen = {}, 0, None
    for name in names:
        Ztr, mu, sd = _standardised(Xtr, POWERS[name])
        Zva = _standardised(Xva, POWERS[name], (mu, sd))[0]
        with threads_for(Ztr.numel()):
            scores, fits, e = _regularisation_path(Ztr, t_y, Zva, yva, present, n_classes, grid, max_iter, sw)
        del Ztr, Zva
        evals += e
        best = min(scores, key=lambda c: scores[c] if scores[c] == scores[c] else 0.0)
        paths[name] = scores
        if chosen is None or scores[best] < chosen[1]:
            chosen = (name, scores[best], best, fits[best], mu, sd)
    name, _, best, (Wb, bb), mu, sd = chosen
    W = np.zeros((n_classes, Xtr.shape[1]), dtype=np.float64)
    b = np.full(n_classes, -1e4)
    W[present], b[present] = Wb.numpy(), bb.numpy()
    info = {"head": "linear", "C": best, "val_log_loss_by_C": paths[name], "power": name, "solver": "torch-lbfgs", "function_evals": evals, "class_weight": class_weight}
    if len(paths) > 1:
        info["val_log_loss_by_power"] = paths
    return _folded_linear(W, b, mu, sd, POWERS[name]), info


class MLPHead(nn.Sequential):
    """dense(hidden) -> ReLU -> dropout -> dense(classes): the probe's mlp head of earlier
    versions (run folders that say head "mlp" load into it; new runs use DenseHead, whose keys
    are the same without batch-norm)."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 1024, dropout: float = 0.2):
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))


class DenseHead(nn.Sequential):
    """dense(hidden) -> ReLU -> [batch-norm] -> [dropout] -> dense(classes): the head that the
    `head`, `partial` and `finetune` strategies train on backbone features."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 1024, batch_norm: bool = False, dropout: float = 0.2):
        layers = [nn.Linear(dim, hidden), nn.ReLU()]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, n_classes))
        super().__init__(*layers)


def build_head(kind: str, dim: int, n_classes: int, hidden: int = 1024, **options) -> nn.Module:
    """An empty head of the given kind, to load saved weights into."""
    if kind == "linear":
        return LinearHead(dim, n_classes, options.get("power", 1.0))
    if kind == "mlp":
        return MLPHead(dim, n_classes, hidden)
    if kind == "dense":
        return DenseHead(dim, n_classes, hidden, **options)
    raise ValueError(f"unknown head kind {kind!r}")
