"""Backbone throughput, model only (pre-decoded tensors in memory), same model, same tensors:

- plain timm: `model.eval()`, NCHW, `torch.no_grad()` (the textbook way);
- transferkit torch engine: channels-last weights and inputs, `inference_mode`;
- transferkit onnx engine: the backbone exported by transferkit, ONNX Runtime with its settings;
- plain ONNX Runtime: the same .onnx file, CPU execution provider, ORT_ENABLE_ALL, default threads;
- transferkit auto: what `--engine auto` picks for this backbone and size (and its images/s).

Variants alternate round by round in one process; medians of `--repeats` rounds; ratios
against plain timm and plain ONNX Runtime. Then a batch-size sweep of the auto engine.

    python benchmarks/bench_backbone.py [--backbone efficientnet_lite0] [--image-size 224]
        [--batch-size 32] [--images 64] [--repeats 5] [--batch-sizes 8,16,32,64]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

from _common import SHARED, interleaved, median, quick, sample_images, save, table, throughput

import transferkit  # noqa: F401  (torchvision compat before timm)
import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=32 if quick() else 64)
    ap.add_argument("--repeats", type=int, default=3 if quick() else 5)
    ap.add_argument("--batch-sizes", default="16,32" if quick() else "8,16,32,64")
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--threads", type=int, help="threads for every variant (torch and ONNX Runtime); default: the cores")
    ap.add_argument("--name", default="backbone", help="results file name (benchmarks/results/NAME.json)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    import onnxruntime as ort
    from transferkit.backbones import create_backbone
    from transferkit.features.engines import OnnxEngine, TorchEngine, select_engine
    from transferkit.modality.image_transforms import eval_transform, resize_hint
    from transferkit.data.images import open_rgb

    bb = create_backbone(a.backbone).with_input_size(a.image_size)
    tf = eval_transform(bb.data_config)
    hint = resize_hint(bb.data_config)
    files = sample_images(Path(a.data), a.images) if Path(a.data).is_dir() else []
    if files:
        x = torch.stack([tf(open_rgb(f, hint)) for f in files])
        source = f"{len(files)} images of {a.data}"
    else:
        x = torch.randn(a.images, 3, a.image_size, a.image_size)
        source = f"{a.images} random tensors ({a.data} not found)"
    batches = list(torch.split(x, a.batch_size))

    plain = copy.deepcopy(bb.model).eval()

    def plain_timm(b):
        with torch.no_grad():
            return plain.forward_head(plain.forward_features(b), pre_logits=True).numpy()

    with tempfile.TemporaryDirectory() as td:
        tk_torch = TorchEngine(bb)
        tk_onnx = OnnxEngine(bb, Path(td) / "backbone.onnx", threads=a.threads)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if a.threads:
            so.intra_op_num_threads = a.threads
        sess = ort.InferenceSession(str(Path(td) / "backbone.onnx"), so, providers=["CPUExecutionProvider"])

        def plain_ort(b):
            return sess.run(None, {"image": b.numpy()})[0]

        auto, choice = select_engine(bb, "auto", 10**6, Path(td), a.batch_size)
        if a.threads and choice["engine"] == "onnx":
            auto = OnnxEngine(bb, Path(td) / "backbone.onnx", threads=a.threads)
        variants = {"plain timm NCHW no_grad": plain_timm, "transferkit torch engine": tk_torch, "transferkit onnx engine": tk_onnx, "plain ONNX Runtime": plain_ort, f"transferkit auto ({choice['engine']})": auto}
        ref = plain_timm(batches[0])
        diffs = {n: float(np.abs(f(batches[0]) - ref).max()) for n, f in variants.items()}
        for f in variants.values():  # warm-up
            f(batches[0])
        runs = interleaved({n: (lambda f=f: throughput(lambda: [f(b) for b in batches], len(x))) for n, f in variants.items()}, a.repeats)
        sweep_sizes = [int(s) for s in a.batch_sizes.split(",") if s]
        sweep = interleaved({bs: (lambda bs=bs: throughput(lambda: [auto(b) for b in torch.split(x, bs)], len(x))) for bs in sweep_sizes}, a.repeats)

    med = {n: median(v) for n, v in runs.items()}
    base, ort_base = med["plain timm NCHW no_grad"], med["plain ONNX Runtime"]
    rows = [[n, med[n], f"{med[n] / base:.2f}x", f"{med[n] / ort_base:.2f}x", f"{diffs[n]:.1e}", " ".join(f"{v:.1f}" for v in runs[n])] for n in runs]
    text = table(
        f"Backbone throughput, model only: {a.backbone} at {a.image_size}px, batch {a.batch_size}, {torch.get_num_threads()} thread(s), {source}, median of {a.repeats} interleaved rounds",
        ["variant", "images/s (median)", "vs plain timm", "vs plain ORT", "max |feature diff|", "all rounds"],
        rows,
    )
    smed = {bs: median(v) for bs, v in sweep.items()}
    best = max(smed.values())
    text += "\n\n" + table(f"Batch size sweep of the auto engine ({choice['engine']}), same tensors", ["batch", "images/s (median)", "vs best"], [[bs, smed[bs], f"{smed[bs] / best:.2f}"] for bs in smed])
    text += f"\n\nauto choice: {choice}"
    save(
        a.name,
        {"backbone": a.backbone, "threads": torch.get_num_threads(), "image_size": a.image_size, "batch_size": a.batch_size, "images": len(x), "repeats": a.repeats, "source": source,
         "images_per_s": runs, "median": med, "ratio_vs_plain_timm": {n: med[n] / base for n in med}, "ratio_vs_plain_ort": {n: med[n] / ort_base for n in med},
         "max_feature_diff": diffs, "auto_choice": choice, "batch_sweep": {str(k): v for k, v in sweep.items()}},
        text,
    )


if __name__ == "__main__":
    main()
