"""Multi-label metrics: thresholds from validation only, every number against scikit-learn."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from mldata import mosaic_label_sets
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss, log_loss, precision_score, recall_score

from transferkit.data.multilabel import label_matrix
from transferkit.errors import TransferkitError
from transferkit.evaluate_multilabel import choose_thresholds, evaluate_multilabel, worst_items


def _scores(Y, seed=0, noise=0.25):
    """Scores that follow the labels, with noise: a plausible model's outputs in [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(0.3 + 0.4 * Y + rng.normal(0, noise, Y.shape), 0, 1)


def _mosaics(n=300, seed=0):
    ms, _ = mosaic_label_sets(n, seed)
    Y, classes = label_matrix(ms)
    return Y, _scores(Y, seed), classes


def _f1(y, pred):
    """F1 by its definition (scikit-learn is too slow to call once per candidate threshold)."""
    y, pred = np.asarray(y, bool), np.asarray(pred, bool)
    tp, wrong = (y & pred).sum(), (y != pred).sum()
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0


def _candidates(p):
    """Every distinct decision on scores p: each score, and above them all."""
    return np.r_[np.unique(p), np.inf]


def test_per_label_thresholds_maximise_validation_f1():
    Y, P, _ = _mosaics(300)
    t = choose_thresholds(Y, P)
    assert t.shape == (Y.shape[1],) and t.dtype == np.float64
    for j in range(Y.shape[1]):
        best = max(_f1(Y[:, j], P[:, j] >= c) for c in _candidates(P[:, j]))
        assert f1_score(Y[:, j], P[:, j] >= t[j], zero_division=0) == pytest.approx(best, abs=1e-12)
    assert (t != 0.5).sum() >= Y.shape[1] - 1  # real choices, not the default


def test_threshold_ties_go_to_the_one_nearest_half_and_no_positive_gives_half():
    y = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    p = np.array([[0.9, 0.8, 0.9, 0.1], [0.8, 0.3, 0.85, 0.2], [0.2, 0.9, 0.7, 0.3], [0.1, 0.2, 0.6, 0.4]])
    t = choose_thresholds(y, p)
    # label 0: any t in (0.2, 0.8] is perfect -> 0.5; label 1: no positive -> 0.5;
    # label 2: perfect for t in (0.7, 0.85] (0.5 lies below) -> the middle, 0.775; label 3: perfect for t in (0.3, 0.4] -> 0.4
    assert t.tolist() == pytest.approx([0.5, 0.5, 0.775, 0.4])
    y = np.array([0, 1, 0, 0, 0, 1])[:, None]  # F1 0.5 both for t in (0.8, 0.85] and for t <= 0.6: the second holds 0.5
    assert choose_thresholds(y, np.array([0.95, 0.85, 0.8, 0.75, 0.65, 0.6])[:, None]).tolist() == [0.5]


def test_global_threshold_maximises_micro_f1():
    Y, P, _ = _mosaics(200, seed=3)
    t = choose_thresholds(Y, P, mode="global")
    assert np.all(t == t[0])
    best = max(_f1(Y.ravel(), P.ravel() >= c) for c in _candidates(P.ravel()))
    assert f1_score(Y, P >= t[0], average="micro", zero_division=0) == pytest.approx(best, abs=1e-12)
    assert f1_score(Y, P >= t, average="micro") >= f1_score(Y, P >= 0.5, average="micro")
    assert choose_thresholds(np.zeros((5, 3)), np.random.default_rng(0).random((5, 3)), mode="global").tolist() == [0.5] * 3


def test_thresholds_are_chosen_from_validation_arrays_only():
    assert list(inspect.signature(choose_thresholds).parameters) == ["Y_val", "P_val", "mode"]
    Y, P, classes = _mosaics(300)
    t = choose_thresholds(Y[:150], P[:150])
    before = t.copy()
    ev = evaluate_multilabel(Y[150:], P[150:], classes, t)  # the test split is only scored
    assert np.array_equal(t, before) and [ev["per_label"][c]["threshold"] for c in classes] == t.tolist()
    with pytest.raises(TransferkitError, match="'per_label' or 'global'"):
        choose_thresholds(Y, P, mode="test")


def _with_edge_labels():
    """A label with no true item (predicted now and then) and one never predicted (has positives)."""
    Y, P, classes = _mosaics(250, seed=1)
    Y = np.hstack([Y, np.zeros((250, 1), dtype=np.uint8), Y[:, :1]])
    P = np.hstack([P, np.random.default_rng(2).random((250, 1)) * 0.7, np.zeros((250, 1))])
    t = np.r_[choose_thresholds(Y[:, :-2], P[:, :-2]), 0.6, 0.5]
    return Y, P, classes + ["ghost", "mute"], t


def test_every_number_matches_scikit_learn():
    Y, P, classes, t = _with_edge_labels()
    pred = (P >= t).astype(int)
    assert Y[:, -2].sum() == 0 and pred[:, -2].sum() > 0 and Y[:, -1].sum() > 0 and pred[:, -1].sum() == 0
    ev = evaluate_multilabel(Y, P, classes, t)
    for avg in ("micro", "macro", "samples"):
        assert ev[f"f1_{avg}"] == pytest.approx(f1_score(Y, pred, average=avg, zero_division=0), abs=1e-12)
        assert ev[f"precision_{avg}"] == pytest.approx(precision_score(Y, pred, average=avg, zero_division=0), abs=1e-12)
        assert ev[f"recall_{avg}"] == pytest.approx(recall_score(Y, pred, average=avg, zero_division=0), abs=1e-12)
    assert ev["hamming_loss"] == pytest.approx(hamming_loss(Y, pred), abs=1e-12)
    assert ev["subset_accuracy"] == pytest.approx(accuracy_score(Y, pred), abs=1e-12)
    per = [ev["per_label"][c] for c in classes]
    assert [r["f1"] for r in per] == pytest.approx(f1_score(Y, pred, average=None, zero_division=0).tolist(), abs=1e-12)
    assert [r["precision"] for r in per] == pytest.approx(precision_score(Y, pred, average=None, zero_division=0).tolist(), abs=1e-12)
    assert [r["recall"] for r in per] == pytest.approx(recall_score(Y, pred, average=None, zero_division=0).tolist(), abs=1e-12)
    assert [r["support"] for r in per] == Y.sum(0).tolist() and [r["predicted"] for r in per] == pred.sum(0).tolist()
    has = Y.sum(0) > 0
    assert ev["mean_average_precision"] == pytest.approx(average_precision_score(Y[:, has], P[:, has], average="macro"), abs=1e-12)
    assert ev["ap_labels"] == has.sum() == len(classes) - 1 and per[-2]["ap"] is None
    assert per[0]["ap"] == pytest.approx(average_precision_score(Y[:, 0], P[:, 0]))
    assert np.array_equal(ev["cooccurrence"]["counts"], Y.T.astype(int) @ Y.astype(int)) and ev["cooccurrence"]["classes"] == classes
    assert ev["label_cardinality"] == pytest.approx({"true": Y.sum(1).mean(), "predicted": pred.sum(1).mean()})
    assert (ev["n_items"], ev["n_labels"]) == Y.shape


def test_samples_average_counts_a_correct_empty_item_as_scikit_learn_does():
    Y = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    P = np.array([[0.1, 0.2, 0.9], [0.1, 0.1, 0.1], [0.4, 0.1, 0.2]])
    ev = evaluate_multilabel(Y, P, ["a", "b", "c"], np.full(3, 0.5))
    assert ev["f1_samples"] == pytest.approx(1 / 3) and ev["subset_accuracy"] == pytest.approx(2 / 3)
    assert ev["f1_micro"] == pytest.approx(2 / 3) and ev["f1_macro"] == pytest.approx(1 / 3)


def test_worst_items_rank_by_cross_entropy_and_name_the_mistakes():
    Y, P, classes, t = _with_edge_labels()
    worst = worst_items(Y, P, t, k=10, classes=classes)
    assert len(worst) == 10
    loss = np.array([log_loss(Y[i], np.clip(P[i], 1e-7, 1 - 1e-7), labels=[0, 1]) for i in range(len(Y))])
    assert [w["index"] for w in worst] == np.argsort(-loss, kind="stable")[:10].tolist()
    assert [w["loss"] for w in worst] == pytest.approx(loss[[w["index"] for w in worst]].tolist(), rel=1e-6)
    pred = P >= t
    for w in worst:
        i = w["index"]
        assert w["missing"] == [classes[j] for j in range(len(classes)) if Y[i, j] and not pred[i, j]]
        assert w["extra"] == [classes[j] for j in range(len(classes)) if pred[i, j] and not Y[i, j]]
    assert any(w["missing"] or w["extra"] for w in worst)
    assert worst_items(Y, P, t, k=3)[0]["missing"] == [classes.index(m) for m in worst[0]["missing"]]  # indices without names
    assert len(worst_items(Y, P, t, k=10_000)) == len(Y)


def test_bad_inputs_say_what_to_fix():
    Y, P, classes = _mosaics(20)
    with pytest.raises(TransferkitError, match="both must be"):
        evaluate_multilabel(Y, P[:, 1:], classes, np.full(10, 0.5))
    with pytest.raises(TransferkitError, match="9 thresholds for 10 labels"):
        evaluate_multilabel(Y, P, classes, np.full(9, 0.5))
    with pytest.raises(TransferkitError, match="0/1 indicator"):
        choose_thresholds(Y * 2, P)
    with pytest.raises(TransferkitError, match="NaN"):
        worst_items(Y, np.full(P.shape, np.nan), np.full(10, 0.5))
