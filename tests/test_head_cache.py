"""The probe's fitted-head cache: a hit only for the very same features, labels and settings."""
import numpy as np
import pytest
import torch

from transferkit.head_cache import fit_head_cached


def _data(seed=0, n=120, d=16, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = (rng.normal(size=(n, d)) + 2.0 * np.eye(k, d)[y]).astype(np.float32)
    return X[:90], y[:90], X[90:], y[90:]


def _logits(head, X):
    with torch.no_grad():
        return head(torch.from_numpy(X)).numpy()


def test_identical_fit_is_reused_and_any_change_refits(tmp_path):
    Xtr, ytr, Xva, yva = _data()
    h1, info1, t1, _ = fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path)
    h2, info2, t2, _ = fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path)
    assert not t1["head_cached"] and t2["head_cached"] and t2["head_fit_s"] == t1["head_fit_s"]
    assert info2 == info1 and np.array_equal(_logits(h1, Xva), _logits(h2, Xva))
    assert (_logits(h2, Xva).argmax(1) == yva).mean() > 0.8  # a real fit came back, not an empty head
    ytr2 = ytr.copy()
    ytr2[0] = (ytr2[0] + 1) % 3  # one label changed
    Xtr2 = Xtr.copy()
    Xtr2[5, 3] += 1e-3  # one feature value changed
    for args in [(Xtr, ytr2, Xva, yva), (Xtr2, ytr, Xva, yva)]:
        assert not fit_head_cached("linear", *args, 3, tmp_path)[2]["head_cached"]
    assert not fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path, seed=1)[2]["head_cached"]
    _, info_w, t_w, _ = fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path, class_weight="balanced")
    assert info_w["class_weight"] == "balanced" and not t_w["head_cached"]  # class weights are part of the key
    assert fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path, class_weight="balanced")[2]["head_cached"]
    with pytest.raises(ValueError, match="linear probe heads"):  # the mlp head trains in the loop, uncached
        fit_head_cached("mlp", Xtr, ytr, Xva, yva, 3, tmp_path)


def test_damaged_entry_is_refitted_and_replaced(tmp_path):
    Xtr, ytr, Xva, yva = _data()
    fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path)
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(b"not a checkpoint")
    h, _, t, _ = fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path)
    assert not t["head_cached"] and (_logits(h, Xva).argmax(1) == yva).mean() > 0.8
    assert fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path)[2]["head_cached"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp files left


def test_refit_sees_validation_and_the_heldout_fit_is_kept_beside_it(tmp_path):
    from transferkit.heads import fit_linear_head

    Xtr, ytr, Xva, yva = _data(seed=3)
    head, info, t, heldout = fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path, power="auto", refit=True)
    alone, alone_info = fit_linear_head(Xtr, ytr, Xva, yva, 3, power="auto")
    assert info["C"] == alone_info["C"] and info["power"] == alone_info["power"]
    assert np.allclose(_logits(heldout, Xva), _logits(alone, Xva), atol=1e-5)  # the validation metrics' head never saw validation
    both, _ = fit_linear_head(np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]), Xva[:0], yva[:0], 3, C=info["C"], power=info["power"])
    assert np.allclose(_logits(head, Xva), _logits(both, Xva), atol=1e-5)
    assert not np.allclose(_logits(head, Xva), _logits(heldout, Xva), atol=1e-3)
    assert info["refit"]["items"] == len(ytr) + len(yva)
    h2, info2, t2, heldout2 = fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path, power="auto", refit=True)
    assert t2["head_cached"] and info2 == info
    assert np.array_equal(_logits(h2, Xva), _logits(head, Xva)) and np.array_equal(_logits(heldout2, Xva), _logits(heldout, Xva))
    assert not fit_head_cached("linear", Xtr, ytr, Xva, yva, 3, tmp_path, power="auto", refit=False)[2]["head_cached"]  # other settings: another entry


def test_out_of_fold_probabilities_are_reused_only_for_the_same_items_and_settings(tmp_path, monkeypatch):
    """The label audit of a second run on unchanged data repeats no out-of-fold probe; a changed
    label, feature, fold count or seed computes them again; a damaged entry is replaced."""
    from transferkit import audit, head_cache

    Xtr, ytr, _, _ = _data()
    calls = []
    real = audit.out_of_fold_proba
    monkeypatch.setattr(audit, "out_of_fold_proba", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = head_cache.out_of_fold_cached(Xtr, ytr, 3, tmp_path, 5, seed=0)
    again = head_cache.out_of_fold_cached(Xtr, ytr, 3, tmp_path, 5, seed=0)
    assert len(calls) == 1 and np.array_equal(first, again)
    assert np.array_equal(first, real(Xtr, ytr, 3, folds=5, seed=0))  # the very numbers the audit computes
    assert (first.argmax(1) == ytr).mean() > 0.8
    y2 = ytr.copy()
    y2[0] = (y2[0] + 1) % 3
    X2 = Xtr.copy()
    X2[3, 1] += 1e-3
    for args, kw in [((Xtr, y2), {}), ((X2, ytr), {}), ((Xtr, ytr), {"seed": 1})]:
        head_cache.out_of_fold_cached(*args, 3, tmp_path, 5, **kw)
    head_cache.out_of_fold_cached(Xtr, ytr, 3, tmp_path, 4)
    assert len(calls) == 5
    for f in tmp_path.glob("oof-*.npy"):
        f.write_bytes(b"not an array")
    assert np.array_equal(head_cache.out_of_fold_cached(Xtr, ytr, 3, tmp_path, 5, seed=0), first) and len(calls) == 6
    head_cache.out_of_fold_cached(Xtr, ytr, 3, None, 5)  # no cache folder: always computed
    assert len(calls) == 7
