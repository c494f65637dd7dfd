"""Classifier heads on cached features: multinomial logistic regression and an MLP.

Both are returned as plain torch modules mapping raw features (N, D) to logits (N, C), with
the feature standardisation folded into the first layer, so the same module serves training
metrics, prediction and export.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)  # inverse L2 strength tried for the linear probe
# The path stops once the validation log-loss has risen this many C values in a row past its
# best: weaker regularisation only overfits more (the loss along the path is in practice
# unimodal), and the weakly regularised fits are the slow ones (most L-BFGS iterations).
PATH_PATIENCE = 2


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(0)
    sd = X.std(0)
    sd[sd < 1e-6] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def _folded_linear(W: np.ndarray, b: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> nn.Linear:
    """Linear layer on raw x equal to W @ ((x - mu) / sd) + b."""
    Wf = W / sd[None, :]
    bf = b - Wf @ mu
    lin = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(Wf.astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(bf.astype(np.float32)))
    return lin


def _fit_softmax(Z: torch.Tensor, y: torch.Tensor, k: int, C: float, init: tuple | None, max_iter: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Multinomial logistic regression with scikit-learn's objective,
    C * sum(cross-entropy) + ||W||^2 / 2 (bias not penalised), minimised by full-batch L-BFGS.
    Divided by C*n so the loss stays O(1) whatever the data size."""
    n, d = Z.shape
    W = torch.zeros(k, d, dtype=Z.dtype) if init is None else init[0].clone()
    b = torch.zeros(k, dtype=Z.dtype) if init is None else init[1].clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    lam = 1.0 / (C * n)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    evals = 0

    def closure():
        nonlocal evals
        evals += 1
        opt.zero_grad()
        loss = nn.functional.cross_entropy(Z @ W.T + b, y) + 0.5 * lam * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach(), evals


def fit_linear_head(Xtr, ytr, Xva, yva, n_classes: int, seed: int = 0, C: float | None = None, max_iter: int = 500) -> tuple[nn.Module, dict]:
    """Standardise, then multinomial L2 logistic regression; C picked by validation log-loss.

    The C grid is walked from strong to weak regularisation, each fit warm-started from the
    previous one (a regularisation path), with full-batch L-BFGS in torch: the same objective
    as scikit-learn's `LogisticRegression(C=...)`, minutes faster on tens of thousands of items.
    The walk ends PATH_PATIENCE values after the best validation loss (`val_log_loss_by_C` lists
    the C values fitted).
    """
    ytr, yva = np.asarray(ytr), np.asarray(yva)
    mu, sd = _standardiser(Xtr)
    present = np.unique(ytr)  # classes absent from train can never be predicted
    remap = np.full(n_classes, -1)
    remap[present] = np.arange(len(present))
    Ztr = torch.from_numpy(((Xtr - mu) / sd).astype(np.float32))
    Zva = torch.from_numpy(((Xva - mu) / sd).astype(np.float32))
    t_y = torch.from_numpy(remap[ytr])
    grid = sorted([C] if C is not None else C_GRID)
    torch.manual_seed(seed)
    scores, fits, init, evals = {}, {}, None, 0
    with torch.enable_grad():
        for c in grid:
            W, b, e = _fit_softmax(Ztr, t_y, len(present), c, init, max_iter)
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
    best = min(scores, key=lambda c: scores[c] if scores[c] == scores[c] else 0.0)
    W = np.zeros((n_classes, Xtr.shape[1]), dtype=np.float64)
    b = np.full(n_classes, -1e4)
    W[present], b[present] = fits[best][0].numpy(), fits[best][1].numpy()
    return _folded_linear(W, b, mu, sd), {"head": "linear", "C": best, "val_log_loss_by_C": scores, "solver": "torch-lbfgs", "function_evals": evals}


class MLPHead(nn.Sequential):
    """dense(hidden) -> ReLU -> dropout -> dense(classes): the seeds' head on transfer values."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 1024, dropout: float = 0.2):
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))


def fit_mlp_head(Xtr, ytr, Xva, yva, n_classes: int, seed: int = 0, hidden: int = 1024, epochs: int = 60, lr: float = 1e-3, weight_decay: float = 1e-2, batch_size: int = 128, patience: int = 8) -> tuple[nn.Module, dict]:
    """Train an MLP on standardised features with AdamW; keep the epoch with the best val loss."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu, sd = _standardiser(Xtr)
    Ztr = torch.from_numpy((Xtr - mu) / sd)
    Zva = torch.from_numpy((Xva - mu) / sd)
    ytr_t, yva_t = torch.from_numpy(np.asarray(ytr)), torch.from_numpy(np.asarray(yva))
    head = MLPHead(Xtr.shape[1], n_classes, hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, history, bad = float("inf"), None, [], 0
    for epoch in range(1, epochs + 1):
        head.train()
        perm = torch.randperm(len(Ztr), generator=g)
        tot, correct = 0.0, 0
        for s in range(0, len(perm), batch_size):
            b = perm[s : s + batch_size]
            out = head(Ztr[b])
            loss = loss_fn(out, ytr_t[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
            correct += int((out.argmax(1) == ytr_t[b]).sum())
        sched.step()
        head.eval()
        with torch.no_grad():
            out = head(Zva) if len(Zva) else None
            vl = float(loss_fn(out, yva_t)) if out is not None else tot / len(Ztr)
            va = float((out.argmax(1) == yva_t).float().mean()) if out is not None else float("nan")
        history.append({"epoch": epoch, "train_loss": tot / len(Ztr), "train_accuracy": correct / len(Ztr), "val_loss": vl, "val_accuracy": va, "lr": opt.param_groups[0]["lr"]})
        if vl < best - 1e-4:
            best, bad = vl, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    head.load_state_dict(best_state)
    # fold the standardisation into the first layer so the module takes raw features
    first = head[0]
    folded = _folded_linear(first.weight.detach().numpy(), first.bias.detach().numpy(), mu, sd)
    head[0] = folded
    return head.eval(), {"head": "mlp", "hidden": hidden, "epochs_run": len(history), "best_val_loss": best, "history": history}


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
        return nn.Linear(dim, n_classes)
    if kind == "mlp":
        return MLPHead(dim, n_classes, hidden)
    if kind == "dense":
        return DenseHead(dim, n_classes, hidden, **options)
    raise ValueError(f"unknown head kind {kind!r}")
