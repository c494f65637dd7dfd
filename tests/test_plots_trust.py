"""Trust figures: the plotted data read back from the artists equals the numbers given."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transferkit import calibrate as cal
from transferkit.report import plots_trust as pt


@pytest.fixture(scope="module")
def reports():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (2000, 4))
    y = np.array([rng.choice(4, p=row) for row in cal.softmax_t(z, 2.0)])
    logits = z
    T = cal.fit_temperature(logits[:1000], y[:1000])
    before = cal.calibration_report(cal.softmax_t(logits[1000:], 1.0), y[1000:])
    after = cal.calibration_report(cal.softmax_t(logits[1000:], T), y[1000:])
    return before, after, cal.coverage_curve(cal.softmax_t(logits[1000:], T), y[1000:]), cal.softmax_t(logits[1000:], T), y[1000:]


def _bars(fig, gid):
    return [p for p in fig.axes[0].patches if p.get_gid() == gid]


def test_reliability_diagram_draws_the_bins_and_the_ece(reports):
    before, after, *_ = reports
    fig = pt.reliability_diagram(before, after)
    for rep, gid in ((before, "bars-before"), (after, "bars-after")):
        bars = _bars(fig, gid)
        acc = [a for a in rep["bins"]["accuracy"] if a is not None]
        assert len(bars) == len(acc) and np.allclose([b.get_height() for b in bars], acc)
        # each bar sits inside its bin: [lo, lo + width/2] before, [lo + width/2, hi] after
        lows = [rep["bins"]["edges"][i] for i, a in enumerate(rep["bins"]["accuracy"]) if a is not None]
        offset = 0.0 if gid == "bars-before" else 0.5 / rep["n_bins"]
        assert np.allclose([b.get_x() for b in bars], np.array(lows) + offset)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"before (ECE {100 * before['ece']:.1f} %)" in legend and f"after scaling (ECE {100 * after['ece']:.1f} %)" in legend
    diag = [ln for ln in fig.axes[0].lines if ln.get_gid() == "diagonal"][0]
    assert np.allclose(diag.get_xdata(), [0, 1]) and np.allclose(diag.get_ydata(), [0, 1])
    one = pt.reliability_diagram(before)
    assert len(_bars(one, "bars-before")) == len(_bars(fig, "bars-before")) and not _bars(one, "bars-after")


def test_accuracy_coverage_curve_and_marks(reports):
    *_, curve, proba, y = reports
    t = cal.threshold_for_accuracy(proba, y, 0.95)
    fig = pt.accuracy_coverage(curve, {"95 %": t})
    line = [ln for ln in fig.axes[0].lines if ln.get_gid() == "curve"][0]
    assert np.allclose(line.get_xdata(), 100 * curve["coverage"]) and np.allclose(line.get_ydata(), 100 * curve["accuracy"])
    mark = [ln for ln in fig.axes[0].lines if ln.get_gid() == "mark-95 %"][0]
    keep = proba.max(1) >= t
    assert mark.get_xdata()[0] == pytest.approx(100 * keep.mean()) and mark.get_ydata()[0] == pytest.approx(100 * (proba.argmax(1) == y)[keep].mean())
    assert mark.get_ydata()[0] >= 95


def test_label_suspects_grid_shows_both_labels():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8))
    long_text = "the quarterly dividend was raised " * 20
    items = [(img, "Shirt", "T-shirt/top", 0.012), (long_text, "earn", "acq", 0.2), (img.convert("RGB"), "Bag", "Sandal", 0.5)]
    fig = pt.label_suspects_grid(items, cols=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["given: Shirt\nsuggested: T-shirt/top\nscore 0.01", "given: earn\nsuggested: acq\nscore 0.20", "given: Bag\nsuggested: Sandal\nscore 0.50"]
    assert len(fig.axes[0].images) == 1 and fig.axes[0].images[0].get_array().shape[:2] == (28, 28)
    snippet = fig.axes[1].texts[0].get_text()
    assert snippet.startswith("the quarterly dividend") and "\n" in snippet and len(snippet.replace("\n", " ")) <= 201
    assert len(fig.axes) == 4  # 2 x 2 grid, the empty cell hidden
    assert not fig.axes[3].axison
