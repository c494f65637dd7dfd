"""How long `transferkit report` takes for a 10-class, 10,000-image run.

Trains a cached-feature probe once on DATA (default: CIFAR-10's official test folder, 10 classes
x 1,000 PNGs, from ../shared/datasets/cifar10/test) with the real EfficientNet-Lite0 backbone
unless --tiny, then renders the run's report.html several times and prints the time of each
part (loading the run, reloading the dataset, plots, PCA/t-SNE, PNG encoding, whole render).

    python benchmarks/report_render.py [--data DIR] [--run RUN_DIR] [--tiny] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import transferkit as tk


def main() -> int:
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(here.parent / "shared" / "datasets" / "cifar10" / "test"))
    p.add_argument("--run", default="runs/bench-report-cifar10-test", help="run folder (trained first when absent)")
    p.add_argument("--tiny", action="store_true", help="random-init test_efficientnet at 32 px: fast to train, same report work")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    run = Path(a.run)
    if not (run / "metrics.json").is_file():
        if not Path(a.data).exists():
            print(f"{a.data}: not found; pass --data", file=sys.stderr)
            return 2
        opts = dict(backbone="test_efficientnet", pretrained=False, image_size=32) if a.tiny else {}
        tk.train(a.data, out=str(run), cache_dir=a.cache_dir, **opts)

    from transferkit.report import plots
    from transferkit.report.facts import load_run_facts
    from transferkit.report.items import reload_dataset
    from transferkit.report.run_page import build_run_page

    facts = load_run_facts(run)
    print(f"run {run}: {facts.metrics['data']['items']:,} items, {len(facts.classes)} classes, test {facts.metrics['test']['n']:,}")
    parts: dict[str, list[float]] = {}
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        f = load_run_facts(run)
        t1 = time.perf_counter()
        view = reload_dataset(f)
        t2 = time.perf_counter()
        ctx, figs = build_run_page(f, view)
        t3 = time.perf_counter()
        for fig in figs.values():
            plots.png(fig)
        t4 = time.perf_counter()
        tk.write_run_report(run)
        t5 = time.perf_counter()
        for k, v in {"load run files": t1 - t0, "reload dataset (hash files)": t2 - t1, "build page (plots, PCA, t-SNE)": t3 - t2, "encode PNGs": t4 - t3, **{f"  of which {k}": v for k, v in ctx["timings"].items()}, "write_run_report (all of it)": t5 - t4}.items():
            parts.setdefault(k, []).append(v)
    for k, v in parts.items():
        print(f"{k:34s} median {statistics.median(v):6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
