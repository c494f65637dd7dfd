"""Shared helpers of the benchmark scripts: interleaved repeats, medians, tables, JSON results.

Every script measures its variants in ONE process, alternating them round by round, so that
load from other processes on a shared machine hits all variants alike; it reports medians and
ratios (absolute images/s only as context).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
# the shared datasets beside the repository (../shared/datasets), also from a worktree one level deeper
SHARED = next((p for p in (Path(os.environ.get("TRANSFERKIT_DATASETS", "/nonexistent")), ROOT.parent / "shared" / "datasets", ROOT.parent.parent / "shared" / "datasets") if p.is_dir()), ROOT.parent / "shared" / "datasets")
sys.path.insert(0, str(ROOT / "src"))


def quick() -> bool:
    """`BENCH_QUICK=1` (or --quick): small sizes for a smoke run."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def machine() -> dict:
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu or platform.processor(), "cores": cores, "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "load_avg_1m": load}


def interleaved(variants: dict, repeats: int) -> dict[str, list[float]]:
    """Call each variant (a function returning a number, e.g. images/s) once per round, in
    rotating order, for `repeats` rounds; the values per variant."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            out[n].append(float(variants[n]()))
    return out


def median(v) -> float:
    return float(statistics.median(v))


def throughput(fn, n_items: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n_items / (time.perf_counter() - t0)


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", "", "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |", "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def save(name: str, result: dict, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(text + "\n")
    print(text)
    print(f"\n(wrote {path.relative_to(ROOT)})")
    return path


def sample_images(folder: Path, n: int) -> list[Path]:
    """`n` image files from a class folder, spread over the classes (sorted, deterministic)."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    per = [sorted(c.iterdir()) for c in classes]
    out, i = [], 0
    while len(out) < n and any(i < len(p) for p in per):
        out += [p[i] for p in per if i < len(p)]
        i += 1
    return out[:n]


def copy_subset(src: Path, dst: Path, classes: int, n: int) -> int:
    """The first `n` images spread over the first `classes` class folders (sorted), copied."""
    import shutil

    folders = sorted(p for p in src.iterdir() if p.is_dir())[:classes]
    per = [sorted(f.iterdir()) for f in folders]
    files, i = [], 0
    while len(files) < n and any(i < len(p) for p in per):
        files += [p[i] for p in per if i < len(p)]
        i += 1
    for f in files[:n]:
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst / f.parent.name / f.name)
    return len(files[:n])
