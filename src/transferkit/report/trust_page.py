"""The run page's "Trust" section: calibration before and after temperature scaling (a
reliability diagram, ECE / Brier / log-loss), accuracy against coverage with the confidence
that reaches the target accuracy on validation, the suspected label errors with both labels,
and the near-duplicate pairs — each explained in a sentence or two."""
from __future__ import annotations

from . import plots_trust
from .facts import RunFacts

SUSPECTS_SHOWN = 30


def build_trust(facts: RunFacts, view, figs: dict) -> dict:
    m = facts.metrics
    cal = m.get("calibration") or {}
    out: dict = {"calibration": None, "selective": None, "audit": None, "near": None}
    test = (cal.get("test") or {})
    if test.get("after"):
        after, before = test["after"], test.get("before")
        figs["reliability"] = plots_trust.reliability_diagram(before, after if before else None) if before else plots_trust.reliability_diagram(after)
        rows = []
        for split in ("val", "test"):
            s = cal.get(split) or {}
            for when in ("before", "after"):
                if s.get(when):
                    rows.append({"split": split, "when": when, **{k: s[when].get(k) for k in ("ece", "brier", "log_loss", "accuracy", "mean_confidence")}})
        out["calibration"] = {"temperature": cal.get("temperature"), "method": cal.get("method"), "bins": cal.get("bins", 15), "rows": rows}
    sel = m.get("selective") or {}
    if sel.get("curve_test"):
        marks = {f"{100 * sel['target']:.0f}% on validation": sel["threshold"]} if sel.get("threshold") is not None else None
        figs["coverage"] = plots_trust.accuracy_coverage(sel["curve_test"], marks)
        out["selective"] = sel
    audit = m.get("audit") or {}
    if audit.get("available"):
        shown = audit.get("issues", [])[:SUSPECTS_SHOWN]
        if view.ds is not None and shown:
            items = [(view.preview(view.find(r["path"]), 128), r["given"], r["suggested"], r["score"]) for r in shown if view.find(r["path"]) is not None]
            if items:
                figs["label_suspects"] = plots_trust.label_suspects_grid(items)
        out["audit"] = {**audit, "shown": shown}
    elif audit:
        out["audit"] = audit
    near = (facts.checks or {}).get("near_duplicates")
    if near:
        out["near"] = near
    return out
