"""The probe's head fit against the extraction it follows (issue 22: ≤ 0.25× at 50,000 items,
the same accuracy within 0.1 point), and what the L-BFGS stopping tolerances cost.

    python benchmarks/bench_head_fit.py [--data fashion-mnist] [--image-size 112]
        [--cache-dir DIR] [--run DIR]

Trains the default probe once (`tk.train(DATA, strategy="probe", audit=False)`, reused when
--run already holds it): its metrics give the extraction time and the head fit as the run did
it. Then, on that run's cached features and split, the head is fitted again as the probe does
(`heads.fit_linear_head` with `--feature-power auto` along the C path, then the refit on train +
validation at the chosen C and power) twice: with `heads.TIGHT` tolerances at every size (as
before issue 22) and with the default (`heads.tolerances`: LOOSE from LOOSE_FROM training
items). Each is one deterministic fit; the function evaluations are the load-independent
measure, the seconds the wall clock. Test accuracy of each
refitted head on the test split.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import save, table

import transferkit as tk  # noqa: E402  (before torch-based imports)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--run", default="runs/bench-head-fit")
    a = ap.parse_args()
    import numpy as np
    import torch

    from transferkit import heads
    from transferkit.backbones import create_backbone
    from transferkit.features import extract_features

    run_dir = Path(a.run)
    if not (run_dir / "metrics.json").is_file():
        tk.train(a.data, strategy="probe", image_size=a.image_size, cache_dir=a.cache_dir, out=str(run_dir), audit=False)
    run = tk.load_run(run_dir)
    timing = run.metrics["timing"]
    ds = tk.load_dataset(run.config.data)
    dc = run.data_config
    bb = create_backbone(run.config.backbone).with_input_size(int(dc["input_size"][-1])).with_crop(dc["crop_pct"])
    stats: dict = {}
    X = extract_features(bb, ds, cache_dir=run.config.cache_dir, progress=False, stats=stats)
    if stats["computed"]:
        raise SystemExit(f"{stats['computed']} items were not in the cache: pass the --cache-dir the run used")
    splits = json.loads((run_dir / "splits.json").read_text())
    pos = {ds.item_id(k): k for k in range(len(ds))}
    tr, va, te = (np.array([pos[i] for i in splits[s]]) for s in ("train", "val", "test"))
    y = np.asarray(ds.labels)
    rows, results = [], {}
    default_from = heads.LOOSE_FROM
    for pair, loose_from in ((f"tight {heads.TIGHT} at every size", float("inf")), (f"default (loose {heads.LOOSE} from {default_from:,} items)", default_from)):
        heads.LOOSE_FROM = loose_from
        t0 = time.perf_counter()
        _, info = heads.fit_linear_head(X[tr], y[tr], X[va], y[va], len(run.classes), power="auto")
        t1 = time.perf_counter()
        both = np.concatenate([tr, va])
        head, refit = heads.fit_linear_head(X[both], y[both], X[:0], y[:0], len(run.classes), C=info["C"], power=info["power"])
        t2 = time.perf_counter()
        with torch.no_grad():
            acc = float((head(torch.from_numpy(X[te])).argmax(1).numpy() == y[te]).mean())
        fit_s = t2 - t0
        results[pair] = {"path_s": t1 - t0, "refit_s": t2 - t1, "evals": info["function_evals"] + refit["function_evals"], "C": info["C"], "power": info["power"], "test_accuracy": acc}
        rows.append([pair, results[pair]["evals"], f"{fit_s:.1f}", f"{fit_s / timing['extract_s']:.2f}×", info["C"], info["power"], f"{acc:.4f}"])
        print(rows[-1], flush=True)
    text = table(f"Head fit vs extraction ({timing['extract_s']:.0f} s, {timing['backbone_runs']:,} items) on {a.data}, {len(tr):,} training items; the run's own fit: {timing['head_fit_s']:.0f} s",
                 ["tolerances (gradient, loss change)", "function evals", "fit s (path + refit)", "fit / extraction", "C", "power", "test acc"], rows)
    save("head_fit", {"data": a.data, "run": str(run_dir), "extract_s": timing["extract_s"], "run_head_fit_s": timing["head_fit_s"], "fits": results}, text)


if __name__ == "__main__":
    main()
