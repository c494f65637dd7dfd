"""The probe's linear head for label sets: one-vs-rest L2 logistic regression, one binary
classifier per label, on the cached features.

Each label's objective is scikit-learn's `LogisticRegression(C)` on that label's 0/1 column,
C * sum(w_i * binary cross-entropy_i) + ||w||^2 / 2 (bias not penalised); the L labels share
the standardised features and C, so their sum is minimised at once by one full-batch L-BFGS in
torch (the per-label problems are independent: the sum's minimum is each one's). C and the
feature power are chosen by the mean validation binary cross-entropy; a label with no positive
(or no negative) training item gets a constant logit at its training rate (clipped), since
no weights can be learnt for it. Returns a module on raw features, logits out (sigmoid = P)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .heads import C_GRID, PATH_PATIENCE, POWERS, _folded_linear, _standardised, threads_for

CONSTANT_RATE_CLIP = 1e-3  # a label seen always or never in training: P = its training rate, clipped to [this, 1 - this]


def _fit_bce(Z: torch.Tensor, Y: torch.Tensor, C: float, init, max_iter: int, pos_weight) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = Z.shape
    L = Y.shape[1]
    W = torch.zeros(L, d, dtype=Z.dtype) if init is None else init[0].clone()
    b = torch.zeros(L, dtype=Z.dtype) if init is None else init[1].clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    lam = 1.0 / (C * n)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        bce = nn.functional.binary_cross_entropy_with_logits(Z @ W.T + b, Y, pos_weight=pos_weight, reduction="none").sum(1).mean()
        loss = bce + 0.5 * lam * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def _val_bce(Zva, Yva, W, b) -> float:
    with torch.no_grad():
        return float(nn.functional.binary_cross_entropy_with_logits(Zva @ W.T + b, Yva).item())


def fit_ovr_head(Xtr, Ytr, Xva, Yva, power: str = "auto", class_weight: str = "none", C: float | None = None, max_iter: int = 300, seed: int = 0) -> tuple[nn.Module, dict]:
    """One-vs-rest logistic regression: (head on raw features, logits (N, L); info)."""
    Ytr = np.asarray(Ytr, dtype=np.float32)
    Yva = np.asarray(Yva, dtype=np.float32)
    names = list(POWERS) if power == "auto" else [power]
    if power == "auto" and not len(Yva):
        names = ["none"]
    pos = Ytr.sum(0)
    learnable = (pos > 0) & (pos < len(Ytr))
    pw = None
    if class_weight == "balanced":
        pw = torch.from_numpy(np.where(learnable, (len(Ytr) - pos) / np.maximum(pos, 1), 1.0).astype(np.float32))[learnable]
    grid = sorted([C] if C is not None else C_GRID)
    torch.manual_seed(seed)
    t_tr = torch.from_numpy(Ytr[:, learnable])
    t_va = torch.from_numpy(Yva[:, learnable])
    chosen, scores_by = None, {}
    for name in names:
        Ztr, mu, sd = _standardised(Xtr, POWERS[name])
        Zva = _standardised(Xva, POWERS[name], (mu, sd))[0]
        scores, fits, init, rises, best = {}, {}, None, 0, None
        with torch.enable_grad(), threads_for(Ztr.numel()):
            for c in grid:  # strong to weak regularisation, warm-started; stops PATH_PATIENCE past the best
                W, b = _fit_bce(Ztr, t_tr, c, init, max_iter, pw)
                init = fits[c] = (W, b)
                scores[c] = _val_bce(Zva, t_va, W, b) if len(Yva) else 0.0
                if best is None or scores[c] < scores[best]:
                    best, rises = c, 0
                else:
                    rises += 1
                    if rises >= PATH_PATIENCE:
                        break
        scores_by[name] = scores
        if chosen is None or scores[best] < chosen[1]:
            chosen = (name, scores[best], best, fits[best], mu, sd)
    name, _, best, (Wb, bb), mu, sd = chosen
    L = Ytr.shape[1]
    W = np.zeros((L, Xtr.shape[1]), dtype=np.float64)
    rate = np.clip(pos / max(len(Ytr), 1), CONSTANT_RATE_CLIP, 1 - CONSTANT_RATE_CLIP)
    b = np.log(rate / (1 - rate))  # the constant labels' logit
    W[learnable], b[learnable] = Wb.numpy(), bb.numpy()
    info = {"head": "linear", "C": best, "val_bce_by_C": scores_by[name], "power": name, "solver": "torch-lbfgs one-vs-rest", "class_weight": class_weight,
            "constant_labels": int((~learnable).sum())}
    if len(scores_by) > 1:
        info["val_bce_by_power"] = scores_by
    return _folded_linear(W, b, mu, sd, POWERS[name]), info
