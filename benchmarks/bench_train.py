"""Training speed: transferkit's `finetune` loop against a plain PyTorch loop, same run.

Same model (EfficientNet-Lite0, ImageNet weights from the offline package, new dense head),
same images, same augmentation and DataLoader, same batch size and AdamW; each measurement is
one pass over the same N training images, repeated alternately so that load on a shared machine
hits both sides alike. Reported: images per second (median of the repeats, and best).

- transferkit finetune, stage 2: `Loop.fit` as the finetune strategy runs it (everything
  trainable, discriminative learning-rate groups, channels-last, BN statistics kept);
- transferkit finetune, stage 1: the head warm-up (body frozen: no backward through it);
- plain PyTorch: `model.train()`, NCHW, AdamW on all parameters, the textbook loop;
- plain PyTorch + channels-last: the same with channels-last tensors (what the difference is).

    python benchmarks/bench_train.py [--data ../shared/datasets/flowers5] [--images 256]
        [--image-size 128] [--batch-size 32] [--repeats 3] [--threads N] [--out benchmarks/results/bench_train.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from _common import quick  # noqa: E402  (BENCH_QUICK=1: small sizes, a smoke run)
import transferkit  # noqa: E402,F401  (torchvision compat before timm)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from transferkit.backbones import create_backbone  # noqa: E402
from transferkit import load_dataset  # noqa: E402
from transferkit.heads import DenseHead  # noqa: E402
from transferkit.models import TransferModel  # noqa: E402
from transferkit.loop import Group, Loop, Schedule, Unfreeze, adamw, block_groups, freeze  # noqa: E402
from transferkit.loop.data import loader  # noqa: E402
from transferkit.modality.image import ImageItems  # noqa: E402
from transferkit.modality.image_transforms import resize_hint, train_transform as build_transform  # noqa: E402


def make_model(n_classes: int, side: int):
    bb = create_backbone("efficientnet_lite0")
    bb.model.reset_classifier(0)
    model = TransferModel(bb.model, DenseHead(bb.num_features, n_classes, 1024))
    # the body's blocks, bottom first, from the model's own structure (as the finetune strategy groups them)
    return model, dict(bb.with_input_size(side).data_config), bb.blocks(bb.model)


def tk_loop(made, items, bs, workers, stage: int) -> float:
    """images/s of one epoch of the finetune strategy's loop (stage 1: body frozen; 2: all)."""
    model, _, blocks = made
    body = model.backbone
    groups = [Group("head", list(model.head.parameters()), 1e-3)] + block_groups(blocks, 1e-4, 0.8, 0)
    freeze(body)
    callbacks = [Unfreeze([body], after_epoch=0)] if stage == 2 else []
    model.to(memory_format=torch.channels_last)
    opt = adamw(groups, 0.01)
    steps = len(items) // bs
    loop = Loop(model, opt, Schedule(opt, [steps], 1), nn.CrossEntropyLoss(label_smoothing=0.1), epochs=1, callbacks=callbacks)
    loop.fit(lambda e, g: loader(items, bs, shuffle=True, generator=g, workers=workers, drop_last=True), None)
    return loop.train_items / loop.train_seconds


def plain_loop(model, items, bs, workers, channels_last: bool) -> float:
    """images/s of the textbook PyTorch training loop over the same batches."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n, t0 = 0, time.perf_counter()
    for x, y in loader(items, bs, shuffle=True, generator=torch.Generator().manual_seed(0), workers=workers, drop_last=True):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "datasets" / "flowers5"))
    ap.add_argument("--images", type=int, default=64 if quick() else 256)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1 if quick() else 3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_train.json"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if not Path(a.data).is_dir():
        sys.exit(f"{a.data}: not found; pass --data FOLDER (one sub-folder per class)")
    ds = load_dataset(a.data)
    idx = np.random.default_rng(0).permutation(len(ds))[: a.images]
    _, dc, _ = make_model(len(ds.classes), a.image_size)
    items = ImageItems(ds, idx, build_transform(dc, "light"), resize_hint(dc))

    cases = {
        "transferkit finetune, stage 2 (all trainable)": lambda: tk_loop(make_model(len(ds.classes), a.image_size), items, a.batch_size, a.workers, 2),
        "plain PyTorch loop (NCHW)": lambda: plain_loop(make_model(len(ds.classes), a.image_size)[0], items, a.batch_size, a.workers, False),
        "plain PyTorch loop + channels-last": lambda: plain_loop(make_model(len(ds.classes), a.image_size)[0], items, a.batch_size, a.workers, True),
        "transferkit finetune, stage 1 (body frozen)": lambda: tk_loop(make_model(len(ds.classes), a.image_size), items, a.batch_size, a.workers, 1),
    }
    results = {k: [] for k in cases}
    for r in range(a.repeats):
        for name, fn in cases.items():
            results[name].append(fn())
            print(f"  repeat {r + 1}: {name}: {results[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
    rows = [{"case": k, "median_img_s": statistics.median(v), "best_img_s": max(v), "runs": v} for k, v in results.items()]
    base = rows[1]["median_img_s"]
    print(f"\ntraining throughput, EfficientNet-Lite0 at {a.image_size} px, batch {a.batch_size}, {len(items)} images of {Path(a.data).name}, "
          f"{torch.get_num_threads()} threads, {a.workers} loader worker(s), {a.repeats} repeats, load avg {os.getloadavg()[0]:.1f}")
    print(f"{'case':48} {'img/s (median)':>15} {'best':>8} {'vs plain':>9}")
    for r in rows:
        print(f"{r['case']:48} {r['median_img_s']:15.1f} {r['best_img_s']:8.1f} {r['median_img_s'] / base:8.2f}x")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": "efficientnet_lite0", "image_size": a.image_size, "batch_size": a.batch_size, "images": len(items), "data": str(a.data),
            "threads": torch.get_num_threads(), "workers": a.workers, "repeats": a.repeats, "torch": torch.__version__, "cpus": os.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
