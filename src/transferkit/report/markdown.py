"""report.md: the classification report, confusion matrix, checks and timings of one run."""
from __future__ import annotations

from pathlib import Path

from .. import io as tkio
from ..metrics import classification_report_md, confusion_md


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _input_line(cfg: dict, m: dict) -> str:
    from .. import modality as modalities

    dc = cfg["extra"].get("data_config", {})
    line = modalities.get(cfg["extra"].get("kind", "image")).input_summary(cfg["extra"], m["data"])
    if line:
        return f"Input: {line}"
    sides = [m["input_size"][-1] for m in dc.get("members", [dc])]
    return "Input " + " + ".join(f"{s} px" for s in sides)


def _misclassified_texts(d: Path, n: int = 10) -> list[str]:
    """The most confidently wrong test texts, as snippets with their true and predicted labels."""
    import csv

    if not (d / "predictions.csv").is_file():
        return []
    with open(d / "predictions.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:  # file names need not be UTF-8
        reader = csv.DictReader(fh)
        if "text" not in (reader.fieldnames or []):
            return []
        wrong = [r for r in reader if r["true"] != r["predicted"]]
    if not wrong:
        return ["", "## Misclassified test texts", "", "None."]
    wrong.sort(key=lambda r: float(r["p_true"]))
    out = ["", f"## Misclassified test texts ({len(wrong)}; the {min(n, len(wrong))} most confidently wrong)", "", "| item | true | predicted (confidence) | text |", "|---|---|---|---|"]
    for r in wrong[:n]:
        text = r.get("text", "")[:200].replace("|", "\\|")
        out.append(f"| {r['path']} | {r['true']} | {r['predicted']} ({float(r['confidence']):.2f}) | {text} |")
    return out


def write_markdown_report(run_dir: str | Path, page: dict | None = None, images: list[str] = ()) -> Path:
    """report.md from the run's files; with `page` (the HTML report's context) it also lists the
    most confused pairs, the worst mistakes and links the plots under plots/."""
    d = Path(run_dir)
    cfg = tkio.read_json(d / "config.json")
    m = tkio.read_json(d / "metrics.json")
    checks = tkio.read_json(d / "checks.json")
    classes = m["data"]["classes"]
    t, mod = m.get("timing", {}), m.get("model", {})
    multi = bool(m["data"].get("multilabel"))
    lines = [
        f"# transferkit run: {cfg['strategy']} on {m['data']['name']} with {cfg['backbone']}",
        "",
        f"Data `{cfg['data']}`: {m['data']['items']} items in {len(classes)} classes; split (seed {cfg['seed']}): "
        + ", ".join(f"{k} {v}" for k, v in m["data"]["split_sizes"].items())
        + f". {_input_line(cfg, m)}, weights from {cfg['extra']['weights_source']}.",
        "",
        "## Results",
        "",
    ]
    if multi:
        from .multilabel_page import markdown_lines

        lines += markdown_lines(m, classes)
    else:
        lines += ["| split | accuracy | macro-F1 | weighted-F1 | n |", "|---|---:|---:|---:|---:|"]
    for split in ("train", "val", "test") if not multi else ():
        s = m.get(split, {})
        if s.get("n"):
            lines.append(f"| {split} | {s['accuracy']:.4f} | {s['macro_f1']:.4f} | {s['weighted_f1']:.4f} | {s['n']} |")
    if m.get("test", {}).get("n") and not multi:
        lines += ["", "## Classification report (test)", "", classification_report_md(m["test"], classes)]
        lines += ["", "## Confusion matrix (test; rows: true class, columns: predicted)", "", confusion_md(m["test"], classes)]
    lines += _misclassified_texts(d) if not multi else []  # runs whose predictions.csv carries the texts
    lines += [
        "",
        "## Model and timing",
        "",
        "| what | value |",
        "|---|---:|",
        f"| parameters (total) | {mod.get('params_total', 0):,} |",
        f"| parameters (trained) | {mod.get('params_trainable', 0):,} |",
        f"| head | {mod.get('head', '–')}" + (f" (C = {mod['C']})" if "C" in mod else "") + (" on the signed square root of the features" if mod.get("power") == "sqrt" else "") + (f"; refitted on train + validation ({mod['refit'].get('items', 0):,} items)" if isinstance(mod.get("refit"), dict) else "") + " |",
        f"| feature extraction | {_fmt(t.get('extract_s'), 1)} s ({t.get('backbone_runs', 0)} items through the backbone, {t.get('cached_items', 0)} from cache) |",
        f"| training | {_fmt(t.get('train_s'), 1)} s" + (f" (head reused from the cache; fitting it took {_fmt(t.get('head_fit_s'), 1)} s)" if t.get("head_cached") else "") + " |",
        f"| prediction per item (decode + model) | {_fmt((t.get('predict_s_per_item') or 0) * 1000, 1)} ms |",
        f"| peak memory (RSS) | {_fmt(m.get('memory', {}).get('peak_rss_mb'), 0)} MB |",
        "",
        "## Data checks",
        "",
    ]
    lines += [f"- {w}" for w in checks["warnings"]] or ["- no warnings"]
    for s in checks.get("skipped", [])[:50]:
        lines.append(f"- skipped `{s['item']}`: {s['reason']}")
    if page:
        lines += _page_sections(page, images)
    path = d / "report.md"
    tkio.write_text(path, "\n".join(lines) + "\n")
    return path


TITLES = {
    "class_counts": "Items per class and split", "samples": "Sample images per class", "confusion_counts": "Confusion matrix (counts)",
    "confusion_normalized": "Confusion matrix (row-normalised)", "learning_curves": "Learning curves", "c_selection": "Regularisation chosen on validation",
    "misclassified": "Misclassified test images (highest loss first)", "pca": "PCA of the features", "tsne": "t-SNE of the features",
}  # fmt: skip


def _page_sections(page: dict, images) -> list[str]:
    lines = []
    pairs = page.get("results", {}).get("pairs")
    if pairs:
        lines += ["", "## Most confused class pairs (test)", "", "| true | predicted as | items | % of true class |", "|---|---|---:|---:|"]
        lines += [f"| {p['true']} | {p['predicted']} | {p['count']} | {100 * p['share']:.1f}% |" for p in pairs]
    err = page.get("errors", {})
    if err.get("rows") and not err.get("texts"):  # text runs: "Misclassified test texts" above shows them
        lines += ["", f"## Misclassified examples ({err['n_wrong']} of {err['n']} test items; highest loss first)", "", "| item | true | predicted | confidence |", "|---|---|---|---:|"]
        lines += [f"| `{r['path']}` | {r['true']} | {r['predicted']} | {_fmt(r['confidence'])} |" for r in err["rows"][:10]]
    perf = page.get("performance")
    if perf:
        lines += ["", "## Model performance", "", "| what | value |", "|---|---:|"] + [f"| {r['label']} | {r['value']} |" for r in perf]
    if images:
        lines += ["", "## Plots", ""] + [f"![{TITLES.get(n, n)}](plots/{n}.png)" for n in images]
    lines += ["", "The full report with every plot: `report.html` in this folder."]
    return lines
