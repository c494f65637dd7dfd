"""The linear probe solves scikit-learn's logistic-regression objective (torch L-BFGS)."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from transferkit.heads import C_GRID, PATH_PATIENCE, LinearHead, build_head, fit_linear_head


def _blobs(n, d=20, k=4, seed=0):
    centres = np.random.default_rng(123).normal(size=(k, d)) * 1.5  # the same classes for every sample
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d)) * 2.0).astype(np.float32), y


def test_probe_matches_sklearn_at_the_same_C():
    X, y = _blobs(600)
    Xv, yv = _blobs(200, seed=1)
    head, info = fit_linear_head(X, y, Xv, yv, 4, C=0.1)
    mu, sd = X.mean(0), X.std(0)
    ref = LogisticRegression(C=0.1, max_iter=5000, tol=1e-8).fit((X - mu) / sd, y)
    with torch.no_grad():
        ours = head(torch.from_numpy(Xv)).softmax(-1).numpy()
    theirs = ref.predict_proba((Xv - mu) / sd)
    assert np.abs(ours - theirs).max() < 5e-3
    assert (ours.argmax(1) == theirs.argmax(1)).mean() > 0.99


def test_c_is_chosen_on_validation_and_absent_classes_are_never_predicted():
    X, y = _blobs(400)
    keep = y != 3  # class 3 has no training items
    Xv, yv = _blobs(200, seed=1)
    head, info = fit_linear_head(X[keep], y[keep], Xv, yv, 4)
    losses = info["val_log_loss_by_C"]
    assert info["C"] == min(losses, key=losses.get) and len(losses) > 1
    with torch.no_grad():
        pred = head(torch.from_numpy(Xv)).argmax(1).numpy()
    assert 3 not in set(pred)
    assert (pred[yv != 3] == yv[yv != 3]).mean() > 0.7


def test_regularisation_path_stops_after_the_validation_loss_rises():
    def noisy(n, seed):  # 5 informative features and 300 of noise, few items: weak regularisation overfits
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 4, n)
        centres = np.random.default_rng(7).normal(size=(4, 5))
        return np.concatenate([centres[y] + rng.normal(size=(n, 5)), rng.normal(size=(n, 300))], 1).astype(np.float32), y

    X, y = noisy(120, 0)
    Xv, yv = noisy(300, 1)
    head, info = fit_linear_head(X, y, Xv, yv, 4)
    losses = info["val_log_loss_by_C"]
    tried = list(losses)
    assert tried == list(C_GRID[: len(tried)]) and len(tried) < len(C_GRID)  # walked strong to weak, stopped early
    best = tried.index(info["C"])
    assert tried[best + 1 :] and len(tried) - 1 - best == PATH_PATIENCE
    assert all(losses[c] > losses[info["C"]] for c in tried[best + 1 :])


def _sparse_heavy_tailed(n, seed):
    """Non-negative features like pooled CNN activations: mostly small, a few very large (the
    class signal is in which channels fire, not how hard)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    fire = rng.random((n, 30)) < np.where(np.eye(3, 30, dtype=bool)[y] | (np.arange(30) % 3 == y[:, None]), 0.6, 0.15)
    return (fire * np.exp(rng.normal(0.0, 1.5, (n, 30)))).astype(np.float32), y


def test_feature_power_is_chosen_on_validation_and_applied_by_the_head():
    X, y = _sparse_heavy_tailed(400, 0)
    Xv, yv = _sparse_heavy_tailed(400, 1)
    head, info = fit_linear_head(X, y, Xv, yv, 3, power="auto")
    paths = info["val_log_loss_by_power"]
    assert set(paths) == {"none", "sqrt"}
    best = {k: min(v.values()) for k, v in paths.items()}
    assert info["power"] == min(best, key=best.get) == "sqrt"  # the root wins on heavy-tailed features
    assert isinstance(head, LinearHead) and head.power == 0.5
    sq, _ = fit_linear_head(X, y, Xv, yv, 3, power="sqrt")
    with torch.no_grad():
        out = head(torch.from_numpy(Xv))
        manual = torch.from_numpy(np.sqrt(Xv)) @ head.weight.T + head.bias  # the head takes raw features
        assert torch.allclose(out, manual, atol=1e-5) and torch.allclose(out, sq(torch.from_numpy(Xv)), atol=1e-5)
    signed = torch.tensor([[-4.0] + [0.0] * 29])
    with torch.no_grad():
        assert torch.allclose(head(signed), -2.0 * head.weight[:, 0] + head.bias)  # sign(x)·|x|^0.5
    rebuilt = build_head("linear", 30, 3, power=0.5)
    rebuilt.load_state_dict(head.state_dict())  # same parameters as nn.Linear: the power lives in the spec
    with torch.no_grad():
        assert torch.equal(rebuilt(torch.from_numpy(Xv)), out)
    with pytest.raises(ValueError, match="unknown feature power"):
        fit_linear_head(X, y, Xv, yv, 3, power="cube")


def test_large_fits_stop_sooner_with_the_same_answers(monkeypatch):
    from transferkit import heads

    rng = np.random.default_rng(0)
    n, d, k = heads.LOOSE_FROM, 48, 6
    centres = rng.normal(0, 1, (k, d))
    y = rng.integers(0, k, n + 2000)
    X = (centres[y] + rng.normal(0, 2.0, (len(y), d))).astype(np.float32)
    fits = {}
    for name, loose_from in (("tight", float("inf")), ("default", heads.LOOSE_FROM)):
        monkeypatch.setattr(heads, "LOOSE_FROM", loose_from)
        head, info = heads.fit_linear_head(X[:n], y[:n], X[n:], y[n:], k, power="none")
        with torch.no_grad():
            fits[name] = (head(torch.from_numpy(X[n:])).argmax(1).numpy(), info)
    assert fits["default"][1]["function_evals"] < fits["tight"][1]["function_evals"]
    assert fits["default"][1]["C"] == fits["tight"][1]["C"]
    assert (fits["default"][0] == fits["tight"][0]).mean() >= 0.995
