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
SELECT_ON = 6000  # at most this many train (and val) items are used to choose C


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


def fit_linear_head(Xtr, ytr, Xva, yva, n_classes: int, seed: int = 0, C: float | None = None) -> tuple[nn.Module, dict]:
    """Standardise, then multinomial L2 logistic regression; C picked by validation log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    ytr, yva = np.asarray(ytr), np.asarray(yva)
    mu, sd = _standardiser(Xtr)
    Ztr, Zva = (Xtr - mu) / sd, (Xva - mu) / sd
    present = np.unique(ytr)
    grid = [C] if C is not None else list(C_GRID)
    # choosing C on a sample keeps large datasets fast; the chosen C is refitted on everything
    pick = np.arange(len(ytr))
    if len(grid) > 1 and len(ytr) > SELECT_ON:
        pick = np.sort(np.random.default_rng(seed).choice(len(ytr), SELECT_ON, replace=False))
        vpick = np.sort(np.random.default_rng(seed + 1).choice(len(yva), min(len(yva), SELECT_ON), replace=False))
        Zva, yva = Zva[vpick], yva[vpick]
    scores, best = {}, None
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(Ztr[pick], ytr[pick])
        if len(yva) and len(grid) > 1:
            proba = np.zeros((len(yva), n_classes))
            proba[:, clf.classes_] = clf.predict_proba(Zva)
            proba = np.clip(proba, 1e-7, 1)
            scores[c] = float(log_loss(yva, proba / proba.sum(1, keepdims=True), labels=list(range(n_classes))))
        else:
            scores[c] = 0.0
        if best is None or scores[c] < scores[best[0]]:
            best = (c, clf)
    c, clf = best
    if len(pick) < len(ytr):
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(Ztr, ytr)
    W = np.zeros((n_classes, Xtr.shape[1]), dtype=np.float64)
    b = np.full(n_classes, -1e4)  # classes absent from train can never be predicted
    coef, icpt = clf.coef_, clf.intercept_
    if len(present) == 2:  # sklearn's binary case: one row for the positive class
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    W[clf.classes_] = coef
    b[clf.classes_] = icpt
    return _folded_linear(W, b, mu, sd), {"head": "linear", "C": c, "val_log_loss_by_C": scores, "C_chosen_on": int(len(pick))}


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
