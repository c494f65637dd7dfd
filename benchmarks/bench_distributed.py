"""Throughput of 1 vs 2 processes on this machine, same work, same global batch: a fine-tune
(`transferkit train DATA --strategy finetune`) and a sharded extraction (`--strategy probe`,
a cold cache each time), one process vs `torchrun --nproc-per-node 2` (DDP over gloo on CPUs).

    python benchmarks/bench_distributed.py [--data ../shared/datasets/flowers5] [--classes 3]
        [--images 200] [--image-size 128] [--epochs 2] [--batch-size 16] [--repeats 1]
        [--no-one-thread] [--out benchmarks/results/distributed.json]
    BENCH_QUICK=1 python benchmarks/bench_distributed.py      (a smoke run: 60 images, 1 epoch)

What runs (each a subprocess, the order alternated round by round so load on a shared machine
hits both alike):
- finetune, 1 process:  python -m transferkit train SUBSET --strategy finetune --backbone
  efficientnet_lite0 --image-size 128 --epochs E --head-epochs 0 --batch-size 16
- finetune, 2 processes: torchrun --standalone --nproc-per-node 2 -m transferkit train ...
  --batch-size 8 (per process: the same global batch of 16)
- probe (extraction), 1 vs 2 processes: the same with --strategy probe --engine torch and a
  fresh --cache-dir (every item through the backbone; under torchrun each rank embeds its
  share into the one cache, the probe fits on rank 0). --engine torch: no ONNX export or
  engine measurement inside the timed extraction.

SUBSET: the first --images images (spread over the first --classes class folders of --data),
copied to a temporary folder. Read from each run folder: metrics.json timing.train_items_per_s
(training items of every rank / rank 0's training seconds), extract_s and backbone_runs
(extraction images/s), memory.train_peak_mb (rank 0), and the command's wall time. torchrun
sets OMP_NUM_THREADS=1 per process when it is not set: 2 processes x 1 thread vs 1 process
with torch's default threads (the cores); a third case, 1 process with OMP_NUM_THREADS=1
(--no-one-thread skips it), tells what the thread count alone does on a loaded machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, SHARED, copy_subset, machine, median, quick, table


def run(cmd: list[str], run_dir: Path, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {}))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stderr[-4000:]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    t, mem = m.get("timing", {}), m.get("memory", {}) or {}
    return {"wall_s": wall, "timing": t, "train_peak_mb": mem.get("train_peak_mb"), "test_accuracy": m["test"]["accuracy"],
            "world_size": (cfg.get("extra") or {}).get("world_size", cfg.get("world_size")), "log_tail": r.stderr[-600:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--images", type=int, default=60 if quick() else 200)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1 if quick() else 2)
    ap.add_argument("--batch-size", type=int, default=16, help="global batch (per process: this / 2 under torchrun)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", default="finetune,probe", help="finetune, probe or both")
    ap.add_argument("--no-one-thread", action="store_true", help="skip the 1 process x 1 thread case (OMP_NUM_THREADS=1, as torchrun gives each process)")
    ap.add_argument("--out", default=str(RESULTS / "distributed.json"))
    a = ap.parse_args()
    if not Path(a.data).is_dir():
        raise SystemExit(f"{a.data}: not found; pass --data FOLDER (one sub-folder per class)")
    py = [sys.executable, "-m", "transferkit", "train"]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "transferkit", "train"]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as td:
        data = Path(td) / "data"
        n = copy_subset(Path(a.data), data, a.classes, a.images)
        common = [str(data), "--backbone", a.backbone, "--image-size", str(a.image_size), "--seed", "0"]
        cases = {}
        if "finetune" in a.only:
            ft = common + ["--strategy", "finetune", "--epochs", str(a.epochs), "--head-epochs", "0"]
            cases["finetune, 1 process"] = (py, ft + ["--batch-size", str(a.batch_size)], {})
            cases["finetune, 2 processes (torchrun)"] = (ddp, ft + ["--batch-size", str(a.batch_size // 2)], {})
            if not a.no_one_thread:
                cases["finetune, 1 process x 1 thread"] = (py, ft + ["--batch-size", str(a.batch_size)], {"OMP_NUM_THREADS": "1"})
        if "probe" in a.only:
            pr = common + ["--strategy", "probe", "--engine", "torch", "--no-audit"]
            cases["probe extraction, 1 process"] = (py, pr + ["--batch-size", str(a.batch_size)], {})
            cases["probe extraction, 2 processes (torchrun)"] = (ddp, pr + ["--batch-size", str(a.batch_size // 2)], {})
            if not a.no_one_thread:
                cases["probe extraction, 1 process x 1 thread"] = (py, pr + ["--batch-size", str(a.batch_size)], {"OMP_NUM_THREADS": "1"})
        studies = [[n for n in cases if n.startswith(s)] for s in ("finetune", "probe")]
        k = 0
        for r in range(a.repeats):
            # one study's cases side by side, the order reversed every round
            for group in (g for g in studies if g):
                for name in (group if r % 2 == 0 else group[::-1]):
                    launcher, args, env_extra = cases[name]
                    run_dir = Path(td) / f"run{k}"
                    extra = ["--cache-dir", str(Path(td) / f"cache{k}")] if "probe" in name else []  # cold cache
                    k += 1
                    res = run(launcher + args + extra + ["--out", str(run_dir)], run_dir, env_extra)
                    t = res["timing"]
                    res["images_per_s"] = (t.get("backbone_runs", 0) / t["extract_s"]) if "probe" in name and t.get("extract_s") else t.get("train_items_per_s")
                    results.setdefault(name, []).append(res)
                    print(f"  round {r + 1}: {name}: {res['images_per_s']:.1f} img/s, wall {res['wall_s']:.1f} s", file=sys.stderr, flush=True)
                    shutil.rmtree(run_dir, ignore_errors=True)
    med = {name: median([x["images_per_s"] for x in v]) for name, v in results.items()}
    rows, summary = [], {}
    for name, v in results.items():
        one = name.split(",")[0] + ", 1 process"
        ratio = med[name] / med[one] if one in med and med[one] else 1.0
        summary[name] = {"median_images_per_s": med[name], "vs_1_process": ratio, "median_wall_s": median([x["wall_s"] for x in v]),
                         "train_peak_mb_rank0": median([x["train_peak_mb"] for x in v if x["train_peak_mb"] is not None] or [0.0])}
        rows.append([name, med[name], f"{ratio:.2f}x", summary[name]["median_wall_s"], summary[name]["train_peak_mb_rank0"], v[0]["test_accuracy"],
                     " ".join(f"{x['images_per_s']:.1f}" for x in v)])
    mach = machine()
    text = table(
        f"1 vs 2 processes: {a.backbone} at {a.image_size}px, {n} images of {Path(a.data).name} ({a.classes} classes), global batch {a.batch_size}, "
        f"finetune {a.epochs} epoch(s) all trainable; {mach['cores']} cores, load avg {mach['load_avg_1m']:.1f}, median of {a.repeats} round(s)",
        ["case", "images/s (median)", "vs 1 process", "wall s", "rank-0 peak RSS MB", "test acc", "all rounds"], rows)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    strip = {name: [{k2: v2 for k2, v2 in x.items() if k2 != "log_tail"} for x in v] for name, v in results.items()}
    out.write_text(json.dumps({"benchmark": "distributed", "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": mach,
                               "data": a.data, "classes": a.classes, "images": n, "image_size": a.image_size, "epochs": a.epochs, "global_batch": a.batch_size,
                               "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"), "summary": summary, "runs": strip}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
