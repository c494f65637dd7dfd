"""The parts of a run's page and report.md that differ for label sets: the per-split numbers
(macro/micro/sample F1, mAP, subset accuracy, Hamming loss), the per-label table (support,
precision, recall, F1, AP, threshold), the most frequent label pairs, and the worst test items
with their missing and extra labels (thumbnails or snippets). Everything comes from metrics.json."""
from __future__ import annotations

from . import plots
from .facts import SPLITS

WORST_SHOWN = 24
PAIRS_SHOWN = 10


def is_multilabel(facts) -> bool:
    return bool(facts.split("test").get("multilabel") or (facts.metrics.get("data") or {}).get("multilabel"))


def cards(facts, fmt, fmt_seconds) -> list[tuple[str, str]]:
    """The page's headline cards; `fmt` / `fmt_seconds`: the run page's number formats."""
    t, te = facts.metrics.get("timing", {}), facts.split("test")
    return [("test macro-F1", fmt(te.get("f1_macro"))), ("test mAP", fmt(te.get("mean_average_precision"))),
            ("subset accuracy", fmt(te.get("subset_accuracy"))), ("training time", fmt_seconds(t.get("train_s")))]


def split_rows(facts) -> list[dict]:
    keys = ("f1_macro", "f1_micro", "f1_samples", "mean_average_precision", "subset_accuracy", "hamming_loss")
    return [{"name": s, "n": facts.split(s)["n"], **{k: facts.split(s).get(k) for k in keys}} for s in SPLITS if facts.split(s).get("n")]


def label_rows(test: dict, classes: list[str]) -> list[dict]:
    pl = test.get("per_label") or {}
    return [{"name": c, **pl[c]} for c in classes if c in pl]


def cooccurring_pairs(test: dict, k: int = PAIRS_SHOWN) -> list[dict]:
    co = test.get("cooccurrence") or {}
    names, counts = co.get("classes") or [], co.get("counts") or []
    pairs = [{"a": names[i], "b": names[j], "count": int(counts[i][j])} for i in range(len(names)) for j in range(i + 1, len(names)) if counts[i][j]]
    return sorted(pairs, key=lambda p: (-p["count"], p["a"], p["b"]))[:k]


def results(facts, figs: dict) -> dict:
    te = facts.split("test")
    m = facts.metrics.get("multilabel") or {}
    return {"available": bool(te.get("n")), "splits": split_rows(facts), "labels": label_rows(te, facts.classes), "pairs": cooccurring_pairs(te),
            "thresholds": m.get("thresholds") or {}, "cardinality": te.get("label_cardinality") or {}}


def worst(facts, view, figs: dict, snippet) -> dict:
    """The worst test items (highest mean binary cross-entropy), their missing and extra labels;
    `snippet(text, n)` shortens a text as the run page does."""
    rows = list((facts.split("test").get("worst_items") or [])[:WORST_SHOWN])
    out = {"available": bool(rows), "rows": rows, "texts": None, "note": ""}
    if not rows or view.ds is None:
        if rows and view.ds is None:
            out["note"] = f"Items are not shown: {view.error}."
        return out
    found = [(r, view.find(r["path"])) for r in rows]
    found = [(r, i) for r, i in found if i is not None]
    if view.is_text:
        out["texts"] = [{**r, "text": snippet(view.preview(i), 400)} for r, i in found]
    elif found:
        figs["worst_label_sets"] = plots.labelled_grid([(view.preview(i, 160), "missing " + ("|".join(r["missing"]) or "none"), "extra " + ("|".join(r["extra"]) or "none"), r["loss"])
                                                       for r, i in found])
    return out


def markdown_lines(m: dict, classes: list[str]) -> list[str]:
    """report.md's results for label sets."""
    def f(v, d=4):
        return "–" if v is None else f"{v:.{d}f}"

    lines = ["| split | macro-F1 | micro-F1 | sample-F1 | mAP | subset accuracy | Hamming loss | n |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in SPLITS:
        x = m.get(s) or {}
        if x.get("n"):
            lines.append(f"| {s} | {f(x['f1_macro'])} | {f(x['f1_micro'])} | {f(x['f1_samples'])} | {f(x.get('mean_average_precision'))} | {f(x['subset_accuracy'])} | {f(x['hamming_loss'])} | {x['n']} |")
    te = m.get("test") or {}
    if te.get("n"):
        th = (m.get("multilabel") or {}).get("thresholds") or {}
        lines += ["", f"## Per-label results (test; thresholds {th.get('how', 'chosen on validation')})", "",
                  "| label | support | precision | recall | F1 | AP | threshold |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['support']} | {f(r['precision'], 3)} | {f(r['recall'], 3)} | {f(r['f1'], 3)} | {f(r['ap'], 3)} | {f(r['threshold'], 3)} |" for r in label_rows(te, classes)]
        rows = te.get("worst_items") or []
        if rows:
            lines += ["", "## Worst test items (highest loss first)", "", "| item | true | missing | extra | loss |", "|---|---|---|---|---:|"]
            lines += [f"| `{r['path']}` | {', '.join(r['true']) or '–'} | {', '.join(r['missing']) or '–'} | {', '.join(r['extra']) or '–'} | {r['loss']:.3f} |" for r in rows[:10]]
    return lines
