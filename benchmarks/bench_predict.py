"""Throughput of `transferkit predict` (files/s, decoding included) from a run folder and from
its exported ONNX file on the same inputs, and whether both give the same labels.

    python benchmarks/bench_predict.py RUN_DIR MODEL.onnx INPUT... [--limit N] [--batch-size 32] [--workers W]

Each form runs `predict_files` once over the same list of files (streamed, batched, decoding
in worker processes) writing a CSV to a temporary folder; the wall time covers everything a user
waits for: loading the model, decoding, preprocessing, the model and writing rows. The
labels of every row are then compared between the two outputs.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import transferkit as tk  # noqa: E402  (before torch-based imports, see DEVELOPERS.md)
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("onnx")
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--limit", type=int, help="only the first N files (default: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: transferkit's choice)")
    a = ap.parse_args()
    from transferkit.modality.image import image_paths

    files = [str(p) for p in image_paths(a.inputs)]
    files = files[: a.limit] if a.limit else files
    rows = {}
    with tempfile.TemporaryDirectory() as td:
        for name, model in (("run folder (torch)", a.run), ("ONNX (onnxruntime)", a.onnx)):
            out = Path(td) / f"{len(rows)}.csv"
            t0 = time.perf_counter()
            res = tk.predict_files(model, files, out, batch_size=a.batch_size, workers=a.workers, progress=False)
            wall = time.perf_counter() - t0
            with open(out, newline="") as fh:
                labels = {r["path"]: r["label1"] for r in csv.DictReader(fh)}
            rows[name] = (wall, res, labels)
    (_, _, la), (_, _, lb) = [v for v in rows.values()]
    same = sum(la[p] == lb.get(p) for p in la)
    print(f"{len(files)} files; batch {a.batch_size}; torch threads {torch.get_num_threads()}; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print("| form | files | wall s | files/s | decode workers |")
    print("|---|---:|---:|---:|---:|")
    for name, (wall, res, _) in rows.items():
        print(f"| {name} | {res['rows']} | {wall:.1f} | {res['rows'] / wall:.1f} | {res['workers']} |")
    print(f"labels identical on {same}/{len(la)} files")


if __name__ == "__main__":
    main()
