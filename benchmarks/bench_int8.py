"""`export --int8` against fp32, side by side: test accuracy (the whole test split) and model
throughput (ONNX Runtime, CPU, every graph optimisation, one thread per core) at batch 1 and 32.

    python benchmarks/bench_int8.py [--runs DIR] [--sets flowers5,cifar-sample,r8] [--repeats 7]

Each image set gets an efficientnet_lite0 probe run, each text set (`r8`: the built-in Reuters R8,
its standard split) a minilm-l6 probe (`transferkit train DATA --backbone
efficientnet_lite0`, split seed 0), reused when DIR/<set>-probe already holds one, then one
`tk.export(RUN, int8=True)`: the int8 file is calibrated on training items only and compared
with the fp32 file on every test item. Speed: the two files alternate round by round
(`side_by_side.speeds`), medians of --repeats rounds over 64 test items, so load from other
processes hits both alike. `cifar-sample` is 200 training and 100 test images per class of
the shared CIFAR-10 (random, seed 0), copied to DIR/cifar-sample.
"""
from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

from _common import SHARED, save, table

import transferkit as tk  # noqa: E402  (before torch-based imports)

DEFAULT_SETS = "flowers5,cifar-sample"
TEXT_SETS = ("r8", "r52")  # built-in text sets: a minilm-l6 probe, its encoder quantised dynamically


def cifar_sample(dest: Path, train: int = 200, test: int = 100) -> Path:
    if (dest / "test").is_dir():
        return dest
    src, rng = SHARED / "cifar10", random.Random(0)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, n in (("train", train), ("test", test)):
        for c in sorted(p.name for p in (src / split).iterdir() if p.is_dir()):
            (tmp / split / c).mkdir(parents=True)
            for f in rng.sample(sorted((src / split / c).iterdir()), n):
                shutil.copyfile(f, tmp / split / c / f.name)
    tmp.rename(dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/int8-bench", help="where the probe runs (and the CIFAR sample) are kept and reused")
    ap.add_argument("--sets", default=DEFAULT_SETS)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cache-dir", help="feature cache for the training runs")
    a = ap.parse_args()
    from transferkit import exporter, side_by_side

    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    for name in a.sets.split(","):
        text = name in TEXT_SETS
        data = name if text else cifar_sample(runs / "cifar-sample") if name == "cifar-sample" else SHARED / name
        run_dir = runs / f"{name}-probe"
        if not (run_dir / "metrics.json").is_file():
            tk.train(str(data), out=str(run_dir), backbone="minilm-l6" if text else "efficientnet_lite0", cache_dir=a.cache_dir, audit=False)
        t0 = time.perf_counter()
        r = tk.export(run_dir, "onnx", run_dir / "export-int8" / "model.onnx", int8=True)
        q = r.int8
        export_s = time.perf_counter() - t0
        # the speed again with more rounds than the export's own check
        fp32 = exporter.OnnxPredictor(r.path, session=side_by_side.cpu_session(r.path))
        i8 = exporter.OnnxPredictor(q["path"], session=side_by_side.cpu_session(Path(q["path"])))
        sp = side_by_side.speeds({"fp32": fp32, "int8": i8}, exporter.split_items(tk.load_run(run_dir), "test"), repeats=a.repeats)
        f, i = sp["fp32"], sp["int8"]
        rows.append([name, q["n"], q["accuracy_fp32"], q["accuracy_int8"], round(100 * (q["accuracy_fp32"] - q["accuracy_int8"]), 2), f"{q['agree_with_fp32']}/{q['n']}",
                     round(f["images_per_s_batch32"], 1), round(i["images_per_s_batch32"], 1), f"{i['images_per_s_batch32'] / f['images_per_s_batch32']:.2f}x",
                     round(f["ms_per_image_batch1"], 1), round(i["ms_per_image_batch1"], 1), f"{f['ms_per_image_batch1'] / i['ms_per_image_batch1']:.2f}x"])
        results[name] = {"run": str(run_dir), "int8": {k: v for k, v in q.items() if k != "speed"}, "speed_in_export": q["speed"], "speed": sp, "export_s": export_s}
        print(rows[-1], flush=True)
    header = ["set", "test n", "fp32 acc", "int8 acc", "cost (points)", "labels agree", "fp32 img/s b32", "int8 img/s b32", "int8/fp32 b32", "fp32 ms b1", "int8 ms b1", "int8 speed-up b1"]
    text = table("int8 vs fp32 (probes: efficientnet_lite0 for images, minilm-l6 for texts; side by side, medians)", header, rows)
    name = "int8" if a.sets == DEFAULT_SETS else "int8_" + a.sets.replace(",", "_").replace("-", "_")  # a partial run keeps the full one's results
    save(name, {"sets": results}, text + f"\n\nmethod: {next(iter(results.values()))['int8']['method'] if results else ''}")


if __name__ == "__main__":
    main()
