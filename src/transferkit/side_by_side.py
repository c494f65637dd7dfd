"""Predictors timed side by side (the int8 export against its fp32 file): one ONNX Runtime CPU
session per file with the same settings, every variant run once per round in alternating order,
medians — so load from other processes hits them alike. Sessions take transferkit's
ONNX Runtime options (features/engines.session_options)."""
from __future__ import annotations

import time


def cpu_session(path):
    """The CPU session both variants are timed with: transferkit's session options (every graph
    optimisation, one thread per core)."""
    import onnxruntime as ort

    from .features.engines import session_options

    return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])


def speeds(preds: dict, items: Items, n: int = 64, repeats: int = 5) -> dict:
    """Model time only (prepared inputs in memory), the predictors side by side: each round
    runs every variant once, in alternating order, so load from other processes hits them
    alike; medians of `repeats` rounds. Per variant: ms per item at batch 1 (16 single items
    per round), items/s at batch 1 and at batch 32."""
    from .features.engines import compute_threads

    threads = compute_threads()
    import statistics

    first = next(iter(preds.values()))
    pre = first.preprocessor
    k = min(n, len(items))
    raws = [items.load(i) for i in range(k)]
    singles = [pre.batch([r]) for r in raws[:16]]
    batches = [pre.batch(raws[s : s + 32]) for s in range(0, k, 32)]
    names = list(preds)
    for p in preds.values():  # warm-up: first runs allocate
        p.predict_proba(singles[0])
        p.predict_proba(batches[0])
    t1: dict = {m: [] for m in names}
    t32: dict = {m: [] for m in names}
    for r in range(repeats):
        for m in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            for b in singles:
                preds[m].predict_proba(b)
            t1[m].append((time.perf_counter() - t0) / len(singles))
            t0 = time.perf_counter()
            for b in batches:
                preds[m].predict_proba(b)
            t32[m].append(k / (time.perf_counter() - t0))
    out = {}
    for m in names:
        b1 = statistics.median(t1[m])
        out[m] = {"ms_per_image_batch1": b1 * 1000, "images_per_s_batch1": 1 / b1, "images_per_s_batch32": statistics.median(t32[m]), "threads": threads, "repeats": repeats}
    return out
