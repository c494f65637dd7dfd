"""transferkit's metrics are scikit-learn's numbers (computed from the confusion matrix in numpy)."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

from transferkit.metrics import evaluate


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    k, n = 6, 200
    y = rng.integers(0, k - 1, n)  # class k-1 never occurs: zero support
    logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[y] * (rng.random(n) < 0.6)[:, None]
    logits[:, 2] -= 50 * (seed % 2)  # odd seeds: class 2 is never predicted (zero_division)
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    proba[0, y[0]] = 0.0  # a zero probability on a true class: clipped, not -inf
    m = evaluate(y, proba, [f"c{i}" for i in range(k)])
    labels = list(range(k))
    pred = proba.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro", zero_division=0), abs=1e-12)
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="weighted", zero_division=0), abs=1e-12)
    clipped = np.clip(proba, 1e-7, 1.0)
    assert m["log_loss"] == pytest.approx(log_loss(y, clipped / clipped.sum(1, keepdims=True), labels=labels), rel=1e-9)
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    for i in range(k):
        pc = m["per_class"][f"c{i}"]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx((p[i], r[i], f[i], s[i]), abs=1e-12)
    assert m["n"] == n and evaluate(np.array([], dtype=int), np.zeros((0, k)), list("abcdef")) == {"n": 0}
