"""Figures for trust: reliability diagram, accuracy versus coverage, suspected label errors.

Each function takes plain data (the dicts of `transferkit.calibrate`, or a list of items) and
returns a matplotlib Figure; matplotlib is imported on first use with the Agg backend, so no
display is needed. Independent of the other plot modules on purpose (a leaf). Artists carry a
`gid` so tests and pages can find the plotted data again.
"""
from __future__ import annotations

import textwrap

BEFORE, AFTER, DIAGONAL = "#C0392B", "#2E86C1", "#7F8C8D"


def _plt(names=()):
    """pyplot with the report's style and font fallback (plots._plt), for labels in any script."""
    from .plots import _plt as styled

    return styled(names)


def _bars(ax, report: dict, color: str, label: str, width_frac: float, offset: float, gid: str):
    """One bar per non-empty bin: height = accuracy, at the bin's place on the confidence axis."""
    b = report["bins"]
    edges = b["edges"]
    xs, hs, ws = [], [], []
    for i, acc in enumerate(b["accuracy"]):
        if acc is None:
            continue
        w = (edges[i + 1] - edges[i]) * width_frac
        xs.append(edges[i] + (edges[i + 1] - edges[i]) * offset)
        hs.append(acc)
        ws.append(w)
    ece = report.get("ece")
    text = f"{label} (ECE {100 * ece:.1f} %)" if ece is not None else label
    ax.bar(xs, hs, width=ws, align="edge", color=color, alpha=0.75, edgecolor="white", label=text, gid=gid)


def reliability_diagram(before: dict, after: dict | None = None, title: str = "Reliability diagram"):
    """Accuracy per confidence bin (bars) against the diagonal of perfect calibration, from one
    or two `calibration_report` dicts (before / after temperature scaling, side by side in
    each bin). Bars under the diagonal: over-confident. ECE in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], linestyle="--", color=DIAGONAL, linewidth=1, label="perfect calibration", gid="diagonal")
    if after is None:
        _bars(ax, before, BEFORE, "model", 1.0, 0.0, "bars-before")
    else:
        _bars(ax, before, BEFORE, "before", 0.5, 0.0, "bars-before")
        _bars(ax, after, AFTER, "after scaling", 0.5, 0.5, "bars-after")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def accuracy_coverage(curve: dict, marks: dict | None = None, title: str = "Accuracy vs coverage"):
    """Accuracy of the kept predictions against the fraction kept (`coverage_curve`'s dict).
    `marks` {label: threshold}: a point on the curve where confidence >= threshold, e.g.
    {"95 % target": 0.83}."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    cov = np.asarray(curve["coverage"], dtype=float)
    acc = np.asarray(curve["accuracy"], dtype=float)
    thr = np.asarray(curve["thresholds"], dtype=float)
    ax.plot(100 * cov, 100 * acc, color=AFTER, linewidth=1.6, gid="curve")
    for name, t in (marks or {}).items():
        if t is None or not len(thr):
            continue
        i = int(np.flatnonzero(thr >= t)[-1]) if (thr >= t).any() else 0
        ax.plot([100 * cov[i]], [100 * acc[i]], "o", color=BEFORE, gid=f"mark-{name}")
        left = cov[i] < 0.5  # the label goes where there is room
        ax.annotate(f"{name}: p ≥ {t:.2f}\n{100 * cov[i]:.0f} % kept, {100 * acc[i]:.1f} % right", (100 * cov[i], 100 * acc[i]),
                    textcoords="offset points", xytext=(10 if left else -10, -28), ha="left" if left else "right", fontsize=8)
    ax.set_xlim(0, 100)
    lo = float(np.nanmin(acc)) if len(acc) else 0.0
    ax.set_ylim(max(0.0, 100 * lo - 5), 100.5)
    ax.set_xlabel("coverage (% of items answered)")
    ax.set_ylabel("accuracy of answered items (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def label_suspects_grid(items, cols: int = 5, title: str | None = "Suspected label errors (most suspect first)"):
    """A grid of suspected label errors: `items` = [(PIL image or text, given, suggested, score)]
    in the order to show. Each cell's title has both labels and the label-quality score;
    texts are drawn as wrapped snippets (first ~200 characters)."""
    import numpy as np

    items = list(items)
    plt = _plt([n for _, g, s, _ in items for n in (g, s)])
    items = list(items)
    n = max(len(items), 1)
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (item, given, suggested, score) in enumerate(items):
        ax = axes.ravel()[k]
        if isinstance(item, str):
            snippet = item if len(item) <= 200 else item[:199] + "…"
            ax.text(0.02, 0.98, textwrap.fill(snippet, 28), va="top", ha="left", fontsize=6.5, family="monospace",
                    transform=ax.transAxes)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
        else:
            ax.imshow(np.asarray(item.convert("RGB") if hasattr(item, "convert") else item), interpolation="nearest")
        ax.set_title(f"given: {given}\nsuggested: {suggested}\nscore {score:.2f}", fontsize=7.5, color=BEFORE, gid=f"suspect-{k}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
