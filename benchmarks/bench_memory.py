"""Peak memory (RSS of the process and its children, sampled every 0.1 s) of extracting the
features of many image files with a cold cache, for growing numbers of images: the peak should
be flat in the number of images except the feature matrix itself (N x D float32).

Each size runs in a fresh child process (its own peak), with a fresh feature cache; the data
is `--data` (default ../shared/datasets/cifar10: train/ + test/, 60,000 PNGs), loaded whole
(content hashes of every file) and then cut to the first N items.

    python benchmarks/bench_memory.py [--images 2000,60000] [--image-size 96] [--engine auto]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import SHARED, quick, save, table


def tree_rss_mb(pid: int | None = None) -> float:
    """RSS of `pid` (default: this process) plus all its descendants, MB."""
    pid = pid or os.getpid()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def child(a) -> None:
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb())
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    import numpy as np

    import transferkit  # noqa: F401
    from transferkit.backbones import create_backbone
    from transferkit import load_dataset
    from transferkit.features import extract_features

    base = tree_rss_mb()
    t0 = time.perf_counter()
    ds = load_dataset(a.data)
    load_s = time.perf_counter() - t0
    n = min(a.child, len(ds))
    ds = ds.subset(np.arange(n))
    bb = create_backbone(a.backbone).with_input_size(a.image_size)
    after_setup = tree_rss_mb()
    stats: dict = {}
    with tempfile.TemporaryDirectory() as td:
        t0 = time.perf_counter()
        feats = extract_features(bb, ds, cache_dir=td, batch_size=a.batch_size, progress=False, stats=stats, engine=a.engine)
        extract_s = time.perf_counter() - t0
    stop.set()
    peak[0] = max(peak[0], tree_rss_mb())
    print(json.dumps({"images": n, "peak_rss_mb": peak[0], "rss_before_import_mb": base, "rss_after_setup_mb": after_setup, "features_mb": feats.nbytes / 2**20,
                      "load_s": load_s, "extract_s": extract_s, "engine": stats["engine"], "computed": stats["computed"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "cifar10"))
    ap.add_argument("--images", default="500,2000" if quick() else "2000,60000", help="comma-separated numbers of images")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    rows, results = [], []
    for n in [int(v) for v in a.images.split(",")]:
        cmd = [sys.executable, __file__, "--child", str(n), "--data", a.data, "--backbone", a.backbone, "--image-size", str(a.image_size), "--batch-size", str(a.batch_size), "--engine", a.engine]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"child for {n} images failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(res)
        rows.append([res["images"], res["peak_rss_mb"], res["features_mb"], res["peak_rss_mb"] - res["features_mb"], res["engine"], res["load_s"], res["extract_s"]])
    text = table(
        f"Peak RSS extracting {a.backbone} features at {a.image_size}px from {a.data} (cold cache, batch {a.batch_size}; process + children)",
        ["images", "peak RSS MB", "feature matrix MB", "peak minus features MB", "engine", "load+hash s", "extract s"],
        rows,
    )
    save("memory", {"data": a.data, "image_size": a.image_size, "runs": results}, text)


if __name__ == "__main__":
    main()
