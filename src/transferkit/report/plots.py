"""Figures for the reports. Each function takes plain numbers and returns a matplotlib Figure
(matplotlib is imported on first use, with the Agg backend); `png()` turns one into bytes.
Tests read the plotted data back from the figures' artists.

Class and run names may be in any script: `_plt(names)` draws with fonts.py's fallback list
and says once which characters no installed font has (drawn without a glyph, no warning per
glyph)."""
from __future__ import annotations

import io
import math

import numpy as np

from . import fonts

SPLIT_COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}
WRONG = "#C0392B"


def _plt(names=None):
    """pyplot on Agg with the report's style; `names`: the labels this figure will show (the
    fonts are chosen for them; None: every fallback font, for a figure whose texts are not known)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100})
    fonts.configure(plt.rcParams, names)
    fonts.note_missing(names or ())
    return plt


def png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    with fonts.quiet_missing_glyphs():  # drawing happens here; note_missing has spoken
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    import matplotlib.pyplot as plt  # (not _plt(): that would choose fonts again, for no figure)

    plt.close(fig)
    return buf.getvalue()


def class_colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


# ------------------------------------------------------------------------------- dataset
def class_counts(classes: list[str], counts: dict[str, list[int]]):
    """Horizontal stacked bars: items per class in each split, totals at the bar ends."""
    plt = _plt(classes)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * n))
    y = np.arange(n)[::-1]
    left = np.zeros(n)
    for split in ("train", "val", "test"):
        v = np.asarray(counts.get(split) or [0] * n, dtype=float)
        if not v.any():
            continue
        ax.barh(y, v, left=left, color=SPLIT_COLORS[split], label=split, height=0.7, gid=f"counts-{split}")
        left += v
    for yi, total in zip(y, left):
        ax.text(total, yi, f" {int(total):,}", va="center", fontsize=8)
    ax.set_yticks(y, [_short(c, 28) for c in classes])
    ax.set_xlabel("items")
    ax.set_xlim(0, max(left.max(), 1) * 1.12)
    ax.legend(ncol=3, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("Items per class and split", loc="left")
    return fig


def image_grid(rows: list[tuple[str, list]], title: str = ""):
    """Thumbnails: one row per class, the class name at its left."""
    plt = _plt([name for name, _ in rows])
    k = max([len(ims) for _, ims in rows] + [1])
    n = len(rows)
    fig, axes = plt.subplots(n, k, figsize=(1.15 * k + 1.4, 1.15 * n + (0.3 if title else 0)), squeeze=False)
    for r, (name, ims) in enumerate(rows):
        for c in range(k):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(ims):
                ax.imshow(np.asarray(ims[c]))
        axes[r][0].set_ylabel(_short(name, 16), rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.06)
    return fig


def labelled_grid(items: list[tuple], cols: int = 6):
    """Misclassified examples: (image, true, predicted, confidence) each, titled in red."""
    plt = _plt([t for it in items for t in it[1:3]])
    rows = max(1, math.ceil(len(items) / cols))
    cols = min(cols, max(1, len(items)))
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols, 2.05 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (im, true, pred, conf) in zip(axes.flat, items):
        ax.imshow(np.asarray(im))
        ax.set_title(f"true: {_short(true, 14)}\npred: {_short(pred, 14)} ({conf:.2f})", fontsize=8, color=WRONG, pad=3)
    fig.subplots_adjust(wspace=0.08, hspace=0.42)
    return fig


# ------------------------------------------------------------------------------- results
def confusion(cm: np.ndarray, classes: list[str], normalized: bool):
    """Confusion matrix heatmap, rows true, columns predicted; counts or row-normalised %."""
    plt = _plt(classes)
    cm = np.asarray(cm, dtype=float)
    n = len(classes)
    if normalized:
        sums = cm.sum(1, keepdims=True)
        vals = np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0) * 100
    else:
        vals = cm
    side = min(11.0, 2.2 + 0.5 * n)
    fig, ax = plt.subplots(figsize=(side + 0.8, side))
    im = ax.imshow(vals, cmap="Blues", vmin=0, vmax=100 if normalized else max(vals.max(), 1), gid="confusion")
    labels = [_short(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.spines[:].set_visible(False)
    if n <= 25:
        hi = vals.max() or 1
        for i in range(n):
            for j in range(n):
                txt = f"{vals[i, j]:.0f}%" if normalized else f"{int(vals[i, j])}"
                if normalized and 0 < vals[i, j] < 0.5:
                    txt = "<1%"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8 if n <= 12 else 6, color="white" if vals[i, j] > 0.6 * (100 if normalized else hi) else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="% of the true class" if normalized else "items")
    ax.set_title("Row-normalised (% of each true class)" if normalized else "Counts", loc="left")
    return fig


def learning_curves(history: list[dict]):
    """Loss and accuracy per epoch, train vs val; the epoch with the lowest val loss marked."""
    plt = _plt([])  # only transferkit's own words and numbers
    from matplotlib.ticker import MaxNLocator

    ep = [h.get("epoch") for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, what in zip(axes, ("loss", "accuracy")):
        for split in ("train", "val"):
            v = [h.get(f"{split}_{what}") for h in history]
            if any(x is not None for x in v):
                ax.plot(ep, [np.nan if x is None else x for x in v], marker="o", ms=3, color=SPLIT_COLORS[split], label=split, gid=f"{split}_{what}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_title(what.capitalize(), loc="left")
        ax.grid(alpha=0.3)
    vl = [h.get("val_loss") for h in history]
    if any(x is not None for x in vl):
        best = int(np.nanargmin([np.nan if x is None else x for x in vl]))
        for ax in axes:
            ax.axvline(ep[best], color="#888", ls="--", lw=1)
        right = ep[best] > (ep[0] + ep[-1]) / 2  # keep the label inside the axes
        axes[0].annotate(f"best val loss, epoch {ep[best]:g}", (ep[best], vl[best]), textcoords="offset points", xytext=(-4 if right else 4, 10), ha="right" if right else "left", fontsize=8, color="#555")
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig


def c_selection(scores: dict, by_power: dict | None = None, chosen_power: str | None = None):
    """The linear probe's model selection: validation log-loss for each regularisation C (one
    line per feature transform tried when `by_power` has more than one), the chosen point starred."""
    plt = _plt([])
    chosen_power = chosen_power or "none"
    paths = by_power if by_power and len(by_power) > 1 else {chosen_power: scores}
    labels = {"none": "features as they are", "sqrt": "signed square root of the features"}
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    for name, path in paths.items():
        cs = sorted(path, key=float)
        style = dict(color=SPLIT_COLORS["val"]) if name == chosen_power else dict(color="#888888", ls="--")
        ax.plot([float(c) for c in cs], [path[c] for c in cs], marker="o", gid=f"val_log_loss_{name}", label=labels.get(name, name) if len(paths) > 1 else None, **style)
    cs = sorted(scores, key=float)
    best = min(cs, key=lambda c: scores[c])
    ax.plot([float(best)], [scores[best]], marker="*", ms=14, color=WRONG, ls="none", label=f"chosen C = {float(best):g}")
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse L2 strength)")
    ax.set_ylabel("validation log-loss")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Linear probe: regularisation chosen on validation", loc="left")
    return fig


def embedding(P: np.ndarray, y: np.ndarray, classes: list[str], title: str, xlabel: str = "", ylabel: str = ""):
    """2-D scatter of items coloured by class."""
    plt = _plt(classes)
    colors = class_colors(len(classes))
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    s = 14 if len(P) < 2000 else 6
    for c, name in enumerate(classes):
        sel = y == c
        if sel.any():
            ax.scatter(P[sel, 0], P[sel, 1], s=s, color=colors[c], alpha=0.75, linewidths=0, label=_short(name), gid=f"class-{c}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=1.6, fontsize=8)
    return fig


# --------------------------------------------------------------------------- comparisons
MARKERS = "osD^vP*Xph"


def accuracy_vs(rows: list[dict], key: str, xlabel: str, title: str):
    """Test accuracy against a cost (training seconds, parameters), log x; one coloured marker
    per run, named in the legend (labels beside close dots would overlap)."""
    plt = _plt([str(r.get("label", "")) for r in rows])
    pts = [r for r in rows if r.get("test_accuracy") is not None and (r.get(key) or 0) > 0]
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    colors = class_colors(len(pts))
    for i, r in enumerate(pts):
        ax.scatter([r[key]], [r["test_accuracy"]], s=60, color=colors[i], marker=MARKERS[i % len(MARKERS)], zorder=3, clip_on=False, label=r["label"], edgecolors="white", linewidths=0.6, gid=f"run-{i}")
    ax.set_xscale("log")
    _log_ticks(ax, _seconds_label if key == "train_s" else _count_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    if pts:
        accs = [r["test_accuracy"] for r in pts]
        pad = max(0.02, 0.1 * (max(accs) - min(accs)))
        ax.set_ylim(max(0.0, min(accs) - pad), min(1.0, max(accs) + pad))
        xs = [r[key] for r in pts]
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    ax.set_title(title, loc="left")
    return fig


def _seconds_label(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _count_label(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


def _log_ticks(ax, label) -> None:
    """Readable log-axis ticks (1, 2, 5 per decade, as '30 s' or '1.2M'), no 10^x notation."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def per_class_f1(run_labels: list[str], classes: list[str], f1: np.ndarray):
    """Heatmap runs × classes of test F1, values written in the cells."""
    plt = _plt([*run_labels, *classes])
    f1 = np.asarray(f1, dtype=float)
    fig, ax = plt.subplots(figsize=(min(12, 2.5 + 0.75 * len(classes)), 0.9 + 0.42 * len(run_labels)))
    ax.imshow(f1, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto", gid="per_class_f1")
    ax.set_xticks(range(len(classes)), [_short(c, 14) for c in classes], rotation=45 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
    ax.set_yticks(range(len(run_labels)), run_labels)
    ax.spines[:].set_visible(False)
    if len(classes) <= 25:
        for i in range(f1.shape[0]):
            for j in range(f1.shape[1]):
                if not np.isnan(f1[i, j]):
                    ax.text(j, i, f"{f1[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("Test F1 per class and run", loc="left")
    return fig


def f1_vs_support(series: list[tuple[str, list[float], list[int]]], classes: list[str]):
    """Per-class test F1 against the class's training items, one series per run."""
    plt = _plt([*(name for name, _, _ in series), *classes])
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    colors = class_colors(len(series))
    for i, ((name, f1, support), col) in enumerate(zip(series, colors)):
        # hollow, different markers: runs with equal scores stay visible on top of each other
        ax.plot(support, f1, MARKERS[i % len(MARKERS)], mfc="none", mec=col, mew=1.5, ms=7, label=name, gid=f"f1-{i}")
    if series and len(classes) <= 12:
        _, f1, support = series[0]
        for c, x, yv in zip(classes, support, f1):
            ax.annotate(_short(c, 12), (x, yv), textcoords="offset points", xytext=(4, -10), fontsize=7, color="#555")
    lo = min([v for _, f1, _ in series for v in f1 if v == v] + [1.0])
    ax.set_ylim(max(0.0, lo - 0.08), 1.02)
    ax.set_xlabel("training items of the class")
    ax.set_ylabel("test F1 of the class")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    ax.set_title("Per-class F1 vs class size", loc="left")
    return fig
