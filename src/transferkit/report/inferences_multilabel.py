"""What a comparison of multi-label runs says: the ranking by test macro-F1 (then mAP), and
whether the best run's lead over each other run is more than chance, by a paired test that fits
label sets: a sign-flip permutation test on the per-item sample-F1 differences of the shared test
items (McNemar's test needs one right-or-wrong answer per item; a label set is partly right)."""
from __future__ import annotations

import numpy as np

PERMUTATIONS = 10_000  # random sign flips; the p-value's resolution is about 1e-4
OTHERS_TESTED = 4  # the best run is tested against this many runs below it


def item_f1(true: str, predicted: str) -> float:
    """F1 of one item's predicted label set ('a|b') against its true one; both empty: 1 (a right 'none')."""
    t = {x for x in (true or "").split("|") if x}
    p = {x for x in (predicted or "").split("|") if x}
    if not t and not p:
        return 1.0
    return 2 * len(t & p) / (len(t) + len(p))


def paired_permutation(a, b, n_perm: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) = 0 under random sign flips of the paired differences."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not len(d) or not np.any(d):
        return 1.0
    obs = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for s in range(0, n_perm, 1000):  # in blocks: (1000, n) at a time
        k = min(1000, n_perm - s)
        signs = rng.choice((-1.0, 1.0), size=(k, len(d)))
        hits += int((np.abs((signs * d).mean(1)) >= obs - 1e-12).sum())
    return (hits + 1) / (n_perm + 1)


def paired_sample_f1(a: list[dict] | None, b: list[dict] | None) -> dict | None:
    """Per-item sample-F1 of two runs on the test items both predicted (matched by path), and the test."""
    if not a or not b:
        return None
    fb = {r["path"]: item_f1(r.get("true", ""), r.get("predicted", "")) for r in b}
    pairs = [(item_f1(r.get("true", ""), r.get("predicted", "")), fb[r["path"]]) for r in a if r["path"] in fb]
    if not pairs:
        return None
    x, y = np.array(pairs).T
    return {"n": len(pairs), "mean_a": float(x.mean()), "mean_b": float(y.mean()), "better_a": int((x > y).sum()), "better_b": int((y > x).sum()), "p": paired_permutation(x, y)}


def write_inferences(ok: list[dict], runs: dict, failed: list[dict]) -> list[str]:
    """Sentences for a comparison of label-set runs; `ok` already ranked (report/compare_page.rank_key)."""
    w = ok[0]
    s = f"{w['label']} ranks first by test macro-F1 ({w['macro_f1']:.3f}" + (f", mAP {w['mAP']:.3f}" if w.get("mAP") is not None else "") + ")"
    out = [s + ("; it is the only finished run." if len(ok) == 1 else f", ahead of {ok[1]['label']} ({ok[1]['macro_f1']:.3f}).")]
    for r in ok[1 : 1 + OTHERS_TESTED]:
        t = paired_sample_f1(runs[w["label"]].predictions, runs[r["label"]].predictions) if w["label"] in runs and r["label"] in runs else None
        if t is None:
            continue
        verdict = "unlikely to be chance" if t["p"] < 0.05 else "within what chance gives on a test set this size"
        out.append(f"Against {r['label']}: on the {t['n']:,} shared test items the mean per-item sample-F1 is {t['mean_a']:.3f} vs {t['mean_b']:.3f} "
                   f"({w['label']} better on {t['better_a']}, worse on {t['better_b']}); paired permutation test p = {t['p']:.2g}: the difference is {verdict}.")
    best_map = max(ok, key=lambda r: r.get("mAP") or -1)
    if best_map is not w and best_map.get("mAP") is not None:
        out.append(f"By mAP (threshold-free ranking quality) {best_map['label']} is first instead ({best_map['mAP']:.3f} vs {w.get('mAP') or 0:.3f}): "
                   "its scores order the labels better, its thresholds are what cost it macro-F1.")
    if failed:
        out.append("Failed runs (not ranked): " + "; ".join(f"{r['label']}: {r['error']}" for r in failed) + ".")
    return out
