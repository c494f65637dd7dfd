"""Prediction from files against the run's own extraction on the same files (issue 22):
`predict RUN`, `predict MODEL.onnx` and `serve MODEL.onnx` at concurrency 16, in files/s, and
single-file latency (read + decode + preprocess + model) against the model alone at batch 1.

    python benchmarks/bench_predict_paths.py [--data ../shared/datasets/flowers5] [--images 480]
        [--repeats 3] [--latency-files 24] [--serve-requests 192]

A probe is trained on a small copy of the data (the model's speed does not depend on how well
it was trained) and exported to ONNX with transferkit's parity check; then, in one process,
alternating round by round (medians of `--repeats`):
- extraction: `extract_features` on the same files with a fresh feature cache, on the engine
  the run chose (the work `transferkit train` does per file);
- predict RUN / predict ONNX: `tk.predict_files` writing a CSV, model loading included (what
  `transferkit predict` costs a user, less the interpreter start);
- every variant creates its ONNX Runtime session afresh (the per-process session cache is
  cleared first), so none gets another's warmed-up session;
- serve c16: `transferkit serve MODEL.onnx` in a subprocess on loopback, 16 client threads each
  posting one real photo per request (the files in turn), files/s over the level.
Single-file latency: `predict_files` on one file with the ONNX predictor loaded once, against
`predict_proba` on that file already preprocessed (batch 1), medians over `--latency-files`.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, SHARED, copy_subset, interleaved, median, quick, sample_images, save, table

import transferkit as tk  # noqa: E402  (before torch-based imports, see DEVELOPERS.md)
import torch  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from serving import LOOPBACK, free_port, wait_healthy  # noqa: E402


def serve_files_per_s(base: str, files: list[Path], n: int, conc: int) -> float:
    import requests

    blobs = [(f.name, f.read_bytes()) for f in files]
    left, lock, bad = [n], threading.Lock(), []

    def worker(k: int):
        s = requests.Session()
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
                i = left[0]
            name, data = blobs[(i + k) % len(blobs)]
            r = s.post(base + "/predict", files={"files": (name, data, "image/jpeg")}, timeout=120)
            if r.status_code != 200:
                bad.append(r.status_code)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if bad:
        raise SystemExit(f"serve answered {len(bad)} requests with {sorted(set(bad))}")
    return n / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--images", type=int, default=96 if quick() else 480)
    ap.add_argument("--train-images", type=int, default=100 if quick() else 200, help="images the probe is trained on")
    ap.add_argument("--repeats", type=int, default=2 if quick() else 3)
    ap.add_argument("--latency-files", type=int, default=8 if quick() else 24)
    ap.add_argument("--serve-requests", type=int, default=64 if quick() else 192)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    a = ap.parse_args()
    data = Path(a.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: not a folder (give --data FOLDER with one sub-folder per class)")

    from transferkit.backbones import create_backbone
    from transferkit.features import extract_features
    from transferkit.features import engines
    from transferkit.features.engines import engine_dir, select_engine

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        os.environ["TRANSFERKIT_ENGINES"] = str(td / "engines")  # a machine whose engine folder is empty at the start
        n_cls = len([p for p in data.iterdir() if p.is_dir()])
        copy_subset(data, td / "train", n_cls, a.train_images)
        cache = td / "cache"
        run = tk.train(str(td / "train"), strategy="probe", backbone=a.backbone, out=str(td / "run"), cache_dir=str(cache))
        onnx = tk.export(run.dir).path
        files = sample_images(data, a.images)
        folder = td / "files"
        for f in files:
            (folder / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, folder / f.parent.name / f.name)
        files = sorted(folder.rglob("*.*"))
        ds = tk.load_dataset(str(folder))
        bb = create_backbone(a.backbone).with_input_size(int(run.data_config["input_size"][-1])).with_crop(run.data_config["crop_pct"])  # the run's preprocessing
        # the machine's engine for this backbone (measured here if the run's 200 items did not: 10**6 items)
        engine, choice = select_engine(bb, "auto", 10**6, engine_dir(bb), 32)
        feats = td / "fresh"

        def extraction():
            engines._SESSIONS.clear()  # every variant starts its ONNX Runtime session afresh, as a new process does
            t0 = time.perf_counter()
            stats: dict = {}
            extract_features(bb, ds, cache_dir=feats, batch_size=32, progress=False, stats=stats, engine=choice["engine"])
            dt = time.perf_counter() - t0
            assert stats["computed"] == len(ds), stats
            shutil.rmtree(feats / "features")
            return len(ds) / dt

        def predict(model):
            def go():
                engines._SESSIONS.clear()
                t0 = time.perf_counter()
                res = tk.predict_files(model, [str(folder)], td / "out.csv", progress=False, restart=True)
                dt = time.perf_counter() - t0
                assert res["rows"] == len(files) and not res["errors_in_new_rows"], res
                return len(files) / dt
            return go

        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen([sys.executable, "-m", "transferkit", "serve", str(onnx), "--host", LOOPBACK, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://{LOOPBACK}:{port}"
        try:
            wait_healthy(base, proc)
            serve_files_per_s(base, files, 16, 4)  # warm-up
            variants = {
                f"extraction ({choice['engine']} engine, fresh cache)": extraction,
                "predict RUN (run folder)": predict(str(run.dir)),
                "predict MODEL.onnx": predict(str(onnx)),
                f"serve MODEL.onnx, concurrency {a.concurrency}": lambda: serve_files_per_s(base, files, a.serve_requests, a.concurrency),
            }
            extraction()
            runs = interleaved(variants, a.repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        # single-file latency: the predictor loaded once, one file per call
        pred = tk.load_predictor(str(onnx))
        one, model_only = [], []
        for f in files[: a.latency_files]:
            t0 = time.perf_counter()
            tk.predict_files(pred, [str(f)], None, progress=False, workers=0, stdout=io.StringIO())
            one.append(time.perf_counter() - t0)
            pre = pred.preprocessor
            batch = pre.collate([pre.item(pre.load(f))])
            pred.predict_proba(batch)  # warm
            t0 = time.perf_counter()
            pred.predict_proba(batch)
            model_only.append(time.perf_counter() - t0)

    med = {n: median(v) for n, v in runs.items()}
    names = list(runs)
    ext = med[names[0]]
    pr = med["predict MODEL.onnx"]
    targets = {names[1]: (ext, 0.85, "extraction"), names[2]: (ext, 0.85, "extraction"), names[3]: (pr, 0.8, "predict MODEL.onnx")}
    rows = []
    for n in names:
        if n in targets:
            ref, want, what = targets[n]
            r = med[n] / ref
            rows.append([n, f"{med[n]:.1f}", f"{r:.2f}× {what}", f"≥ {want}: {'met' if r >= want else 'missed'}", " ".join(f"{v:.1f}" for v in runs[n])])
        else:
            rows.append([n, f"{med[n]:.1f}", "1.00", "", " ".join(f"{v:.1f}" for v in runs[n])])
    lat, mo = median(one) * 1000, median(model_only) * 1000
    rows.append(["single file, decode + model (ms, median)", f"{lat:.1f}", f"{lat / mo:.2f}× model only at batch 1 ({mo:.1f} ms)", f"≤ 2: {'met' if lat / mo <= 2 else 'missed'}", f"{len(one)} files"])
    text = table(
        f"Prediction paths vs extraction: {a.backbone}, {len(files)} files of {data}, torch threads {torch.get_num_threads()}, median of {a.repeats} interleaved rounds",
        ["path", "files/s", "ratio", "target", "all rounds"], rows)
    save("predict_paths", {"data": str(data), "files": len(files), "engine": choice, "repeats": a.repeats, "files_per_s": runs, "median": med,
                           "latency_ms": {"decode_and_model": [v * 1000 for v in one], "model_only_batch1": [v * 1000 for v in model_only]}}, text)


if __name__ == "__main__":
    main()
