"""Inferences for a comparison, written from its numbers: who wins and by how much (with a
paired test on the shared test set), transfer vs the from-scratch baselines, which classes
gain most, whether class size explains the weak classes, and what each point of accuracy
costs in training time."""
from __future__ import annotations

import math

import numpy as np

from .facts import RunFacts

BASELINES = ("scratch", "mlp", "tfidf")  # strategies that learn without a pretrained backbone


def is_baseline(row: dict) -> bool:
    return (row.get("strategy") or "") in BASELINES


def pp(x: float) -> str:
    """A difference of two accuracies in percentage points."""
    return f"{x * 100:+.1f} pp"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def secs(s: float | None) -> str:
    from .run_page import fmt_seconds

    return fmt_seconds(s)


def mcnemar(a: list[dict] | None, b: list[dict] | None) -> dict | None:
    """Exact McNemar test on the test items both runs predicted (matched by path): items only
    `a` got right, only `b` got right, and the two-sided p-value."""
    if not a or not b:
        return None
    right_b = {r["path"]: r["true"] == r["predicted"] for r in b}
    only_a = only_b = n = 0
    for r in a:
        if r["path"] not in right_b:
            continue
        n += 1
        ra, rb = r["true"] == r["predicted"], right_b[r["path"]]
        only_a += ra and not rb
        only_b += rb and not ra
    if n == 0:
        return None
    k, m = min(only_a, only_b), only_a + only_b
    if m == 0:
        p = 1.0
    else:
        from scipy.stats import binomtest

        p = float(binomtest(k, m, 0.5).pvalue)
    return {"n": n, "only_a": only_a, "only_b": only_b, "p": p}


def _spearman(x, y) -> float | None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr

    r = spearmanr(x, y).statistic
    return None if r is None or not math.isfinite(r) else float(r)


def write_inferences(rows: list[dict], runs: dict[str, RunFacts]) -> list[str]:
    """Sentences (HTML-safe plain text) for the comparison page. `rows` are leaderboard rows,
    `runs` their loaded run folders by row label (absent when a folder is missing)."""
    ok = [r for r in rows if r.get("test_accuracy") is not None and not r.get("error")]
    failed = [r for r in rows if r.get("error")]
    out: list[str] = []
    if not ok:
        return ["No run finished with a test accuracy, so there is nothing to compare yet."] + [f"{r['label']} failed: {r['error']}" for r in failed]
    if any(r.get("multilabel") for r in ok):  # label sets: ranked by macro-F1, a paired test that fits them
        from .inferences_multilabel import write_inferences as multilabel_inferences

        ok.sort(key=lambda r: (-(r.get("macro_f1") or 0), -(r.get("mAP") or 0)))
        return multilabel_inferences(ok, runs, failed)
    ok.sort(key=lambda r: (-r["test_accuracy"], -(r.get("macro_f1") or 0)))
    out.append(_winner(ok, runs))
    out += _transfer_vs_baselines(ok, runs)
    out += _imbalance(ok[0], runs.get(ok[0]["label"]))
    out += _time_cost(ok)
    if failed:
        out.append("Failed runs (not ranked): " + "; ".join(f"{r['label']}: {r['error']}" for r in failed) + ".")
    return out


def _winner(ok: list[dict], runs: dict) -> str:
    w = ok[0]
    n = (runs[w["label"]].split("test").get("n") if w["label"] in runs else None) or None
    s = f"{w['label']} wins with {pct(w['test_accuracy'])} test accuracy" + (f" (macro-F1 {w['macro_f1']:.3f})" if w.get("macro_f1") is not None else "")
    if len(ok) == 1:
        return s + "; it is the only finished run."
    r2 = ok[1]
    gap = w["test_accuracy"] - r2["test_accuracy"]
    tied = [r["label"] for r in ok[1:] if r["test_accuracy"] == w["test_accuracy"]]
    if tied:
        s = f"{w['label']} and {', '.join(tied)} tie on test accuracy ({pct(w['test_accuracy'])}); {w['label']} is listed first" + (" on macro-F1" if (w.get("macro_f1") or 0) > (r2.get("macro_f1") or 0) else "")
    else:
        s += f", {pp(gap)} ahead of {r2['label']} ({pct(r2['test_accuracy'])})"
    t = mcnemar(runs[w["label"]].predictions, runs[r2["label"]].predictions) if w["label"] in runs and r2["label"] in runs else None
    if t:
        verdict = "unlikely to be chance" if t["p"] < 0.05 else "within what chance gives on a test set this size"
        s += f". On the {t['n']:,} shared test items, {w['label']} alone is right on {t['only_a']}, {r2['label']} alone on {t['only_b']} (exact McNemar p = {t['p']:.2g}): the gap is {verdict}."
    elif n:
        half = 1.96 * math.sqrt(max(w["test_accuracy"] * (1 - w["test_accuracy"]), 1e-9) / n)
        s += f"; with {n:,} test items one accuracy is known to about ±{half * 100:.1f} pp (95%)."
    else:
        s += "."
    best_f1 = max(ok, key=lambda r: r.get("macro_f1") or -1)
    if best_f1 is not w and best_f1.get("macro_f1") is not None:
        s += f" By macro-F1 (every class counted equally) {best_f1['label']} is first instead ({best_f1['macro_f1']:.3f} vs {w.get('macro_f1') or 0:.3f})."
    return s


def _per_class_f1(facts: RunFacts | None) -> dict[str, float]:
    if facts is None:
        return {}
    return {c: v["f1"] for c, v in (facts.split("test").get("per_class") or {}).items()}


def _transfer_vs_baselines(ok: list[dict], runs: dict) -> list[str]:
    transfer = [r for r in ok if not is_baseline(r)]
    base = [r for r in ok if is_baseline(r)]
    if not base:
        return [f"No from-scratch baseline ({', '.join(BASELINES[:2])}) is in this comparison, so it cannot say what transfer learning gains here; add them with --strategies."]
    if not transfer:
        return ["Only from-scratch baselines finished; no transfer strategy to compare them with."]
    t, b = transfer[0], base[0]
    gap = t["test_accuracy"] - b["test_accuracy"]
    et, eb = 1 - t["test_accuracy"], 1 - b["test_accuracy"]
    if gap > 0:
        s = f"Transfer beats the baselines: the best transfer run, {t['label']}, is {pp(gap)} above the best baseline, {b['label']} ({pct(b['test_accuracy'])}); its error rate is {pct(et)} against {pct(eb)}" + (f", {eb / et:.1f}× fewer mistakes." if et > 0 else ", no mistakes at all.")
        worse = [r["label"] for r in transfer if r["test_accuracy"] <= b["test_accuracy"]]
        if worse:
            s += f" Not every transfer run does: {', '.join(worse)} do no better than {b['label']}."
    else:
        s = f"Transfer does not beat the baselines here: the best baseline, {b['label']} ({pct(b['test_accuracy'])}), is {pp(-gap)} ahead of the best transfer run, {t['label']} ({pct(t['test_accuracy'])})."
    out = [s]
    ft, fb = _per_class_f1(runs.get(t["label"])), _per_class_f1(runs.get(b["label"]))
    common = [c for c in ft if c in fb]
    if common:
        gains = sorted(((ft[c] - fb[c], c) for c in common), reverse=True)
        top = [f"{c} ({fb[c]:.2f} → {ft[c]:.2f})" for g, c in gains[:3] if g > 0]
        low = gains[-1]
        s = f"Classes that gain most from transfer (test F1, {b['label']} → {t['label']}): " + (", ".join(top) if top else "none gains") + "."
        if low[0] < 0.02 and len(gains) > 1:
            s += f" {low[1]} gains least ({low[0]:+.2f})."
        out.append(s)
    return out


def _imbalance(w: dict, facts: RunFacts | None) -> list[str]:
    if facts is None:
        return []
    classes = facts.classes
    counts = (facts.metrics.get("data", {}).get("class_counts") or {}).get("train")
    f1 = _per_class_f1(facts)
    if not counts or not f1 or len(classes) < 2:
        return []
    n = np.asarray(counts, dtype=float)
    f = np.asarray([f1.get(c, np.nan) for c in classes])
    present = n > 0
    ratio = n[present].max() / n[present].min()
    small, large = int(np.argmin(np.where(present, n, np.inf))), int(np.argmax(n))
    weakest = int(np.nanargmin(f))
    s = f"Class size, for the winner: training classes range from {int(n[small]):,} ({classes[small]}) to {int(n[large]):,} ({classes[large]}) items, {ratio:.1f}:1. "
    rho = _spearman(n[present], f[present])
    if np.nanmin(f) >= 0.99:
        s += "Every class scores F1 ≥ 0.99, so class size costs nothing here"
    elif ratio < 1.5:
        s += f"That is close to balanced, so imbalance does not explain the weakest class, {classes[weakest]} (F1 {f[weakest]:.2f})"
    elif rho is not None and rho >= 0.5:
        s += f"Smaller classes score lower (Spearman ρ = {rho:.2f} between class size and F1): {classes[small]} has F1 {f[small]:.2f} against {np.nanmean(f):.2f} on average; imbalance hurts here; class weights (--class-weight balanced) or more {classes[small]} data are the fix to try"
    else:
        s += f"F1 does not follow class size (Spearman ρ = {rho:.2f})" if rho is not None else "F1 does not follow class size"
        s += f": the weakest class, {classes[weakest]} (F1 {f[weakest]:.2f}, {int(n[weakest]):,} training items), is weak for another reason than its size"
    cm = facts.split("test").get("confusion_matrix")
    if cm:
        cm = np.asarray(cm)
        off = cm - np.diag(np.diag(cm))
        i, j = np.unravel_index(int(off.argmax()), off.shape)
        if off[i, j] > 0:
            s += f"; its most common confusion is {classes[i]} taken for {classes[j]} ({int(off[i, j])} test items)"
    return [s + "."]


def _time_cost(ok: list[dict]) -> list[str]:
    timed = sorted((r for r in ok if r.get("train_s")), key=lambda r: r["train_s"])
    if len(timed) < 2:
        return []
    frontier, best = [], -1.0
    for r in timed:
        if r["test_accuracy"] > best:
            frontier.append(r)
            best = r["test_accuracy"]
    fastest = timed[0]
    parts = [f"Cheapest to train: {fastest['label']}, {secs(fastest['train_s'])} for {pct(fastest['test_accuracy'])}."]
    for a, b in zip(frontier, frontier[1:]):
        extra = b["train_s"] - a["train_s"]
        gain = b["test_accuracy"] - a["test_accuracy"]
        parts.append(f"{b['label']} buys {pp(gain)} over {a['label']} for {b['train_s'] / a['train_s']:.1f}× the training time (+{secs(extra)}, {gain * 100 / max(extra / 60, 1e-9):.2f} pp per extra minute).")
    dominated = [r for r in timed if r not in frontier]
    if dominated:
        said = []
        for r in dominated:
            by = next((q for q in timed if q["train_s"] <= r["train_s"] and q is not r and q["test_accuracy"] >= r["test_accuracy"]), frontier[0])
            how = "matched" if by["test_accuracy"] == r["test_accuracy"] else "beaten"
            said.append(f"{r['label']} ({pct(r['test_accuracy'])} in {secs(r['train_s'])}) is {how} by {by['label']} ({pct(by['test_accuracy'])} in {secs(by['train_s'])})")
        parts.append("Not worth their time: " + "; ".join(said) + ".")
    pred = [r for r in ok if r.get("predict_ms")]
    if len(pred) >= 2:
        q = min(pred, key=lambda r: r["predict_ms"])
        w = ok[0]
        if w.get("predict_ms") and w is not q:
            parts.append(f"At prediction time the winner takes {w['predict_ms']:.1f} ms per item, {q['label']} {q['predict_ms']:.1f} ms.")
    return [" ".join(parts)]
