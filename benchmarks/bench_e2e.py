"""End to end from image files (read + hash check + decode + resize + crop + normalise + model,
through `extract_features` with a fresh cache each time) vs the model alone on the same images
already decoded, with the same engine and batch size.

Variants, alternated round by round in one process (medians of `--repeats`):
- model only: pre-decoded tensors through the engine;
- files, default workers: `extract_features` as `transferkit train` runs it (decoding in
  DataLoader worker processes, overlapped with the backbone);
- files, no workers: decoding in the main process, between backbone calls (what the overlap buys).

    python benchmarks/bench_e2e.py [--data ../shared/datasets/flowers5] [--images 256]
        [--image-size 224] [--batch-size 32] [--repeats 3] [--engine auto]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import SHARED, interleaved, median, quick, sample_images, save, table, throughput

import transferkit  # noqa: F401
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--images", type=int, default=96 if quick() else 256)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2 if quick() else 3)
    ap.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx"])
    a = ap.parse_args()

    from transferkit.backbones import create_backbone
    from transferkit import load_dataset
    from transferkit.data.images import open_rgb
    from transferkit.features import extract_features
    from transferkit.features.engines import engine_dir, select_engine
    from transferkit.loop import data as loop_data
    from transferkit.loop.data import default_workers
    from transferkit.modality.image_transforms import eval_transform, resize_hint

    files = sample_images(Path(a.data), a.images)
    if not files:
        raise SystemExit(f"{a.data}: no images (give --data FOLDER with one sub-folder per class)")
    bb = create_backbone(a.backbone).with_input_size(a.image_size)
    with tempfile.TemporaryDirectory() as td:
        folder = Path(td) / "data"
        for f in files:
            (folder / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, folder / f.parent.name / f.name)
        ds = load_dataset(str(folder))
        root = Path(td) / "cache"  # engines/ (the ONNX export) is kept; features/ cleared after each run
        engine, choice = select_engine(bb, a.engine, 10**6, engine_dir(bb), a.batch_size)
        name = choice["engine"]
        tf, hint = eval_transform(bb.data_config), resize_hint(bb.data_config)
        x = torch.stack([tf(ds.load(i, hint)) for i in range(len(ds))])
        batches = list(torch.split(x, a.batch_size))

        def files_run(workers):
            stats: dict = {}
            extract_features(bb, ds, cache_dir=root, batch_size=a.batch_size, num_workers=workers, progress=False, stats=stats, engine=name)
            assert stats["computed"] == len(ds), stats
            shutil.rmtree(root / "features")

        def inline():
            # the image modality's extraction batches come from loop.data.loader; thread=False
            # makes them in line, between backbone calls
            threaded = loop_data.loader
            loop_data.loader = lambda *args, **kw: threaded(*args, **kw, thread=False)
            try:
                files_run(0)
            finally:
                loop_data.loader = threaded

        workers = default_workers(len(ds), torch.device("cpu"))
        default = f"files, {workers} worker processes" if workers else "files, decoding thread"
        variants = {
            "model only (decoded tensors)": lambda: throughput(lambda: [engine(b) for b in batches], len(x)),
            f"{default} (default)": lambda: throughput(lambda: files_run(None), len(ds)),
            "files, decoding in line (no overlap)": lambda: throughput(inline, len(ds)),
        }
        if workers != 1:
            variants["files, 1 worker process"] = lambda: throughput(lambda: files_run(1), len(ds))
        if workers:
            variants["files, decoding thread"] = lambda: throughput(lambda: files_run(0), len(ds))
        engine(batches[0])
        runs = interleaved(variants, a.repeats)
    med = {n: median(v) for n, v in runs.items()}
    base = med["model only (decoded tensors)"]
    text = table(
        f"End to end from files vs model only: {a.backbone} at {a.image_size}px, engine {name}, batch {a.batch_size}, {len(ds)} files of {a.data}, median of {a.repeats} interleaved rounds",
        ["variant", "images/s (median)", "vs model only", "all rounds"],
        [[n, med[n], f"{med[n] / base:.2f}", " ".join(f"{v:.1f}" for v in runs[n])] for n in runs],
    )
    save("e2e", {"data": a.data, "images": len(ds), "image_size": a.image_size, "engine": choice, "batch_size": a.batch_size, "repeats": a.repeats, "images_per_s": runs, "median": med, "ratio_vs_model_only": {n: med[n] / base for n in med}}, text)


if __name__ == "__main__":
    main()
