"""The feature cache: a second `train` (probe) over unchanged data vs the first, same options.

Each round: a fresh feature cache (the backbone's ONNX export and engine choice are kept, as a
user has them after their first run ever), a first `transferkit.train`, then a second one into
another run folder. Reported per round: wall time of the whole `train` (load + hash, split,
checks, extraction, probe fit, run folder, reports), the probe strategy alone (extraction +
head fit) and the backbone passes of each. Medians of `--repeats` rounds.

    python benchmarks/bench_cache.py [--data ../shared/datasets/flowers5] [--images 600]
        [--image-size 224] [--repeats 2]
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

from _common import SHARED, median, quick, sample_images, save, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--images", type=int, default=200 if quick() else 600)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=1 if quick() else 2)
    a = ap.parse_args()

    import transferkit as tk

    files = sample_images(Path(a.data), a.images)
    rounds = []
    with tempfile.TemporaryDirectory() as td:
        folder = Path(td) / "data"
        for f in files:
            (folder / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, folder / f.parent.name / f.name)
        warm = Path(td) / "warm"
        for r in range(a.repeats + 1):  # round 0 only warms the engine folder (export, choice)
            root = Path(td) / f"cache{r}"
            if r:
                shutil.copytree(warm / "engines", root / "engines")
            out = []
            for k in (1, 2) if r else (1,):
                t0 = time.perf_counter()
                with redirect_stderr(io.StringIO()):
                    run = tk.train(str(folder), backbone=a.backbone, image_size=a.image_size, cache_dir=str(root if r else warm), out=str(Path(td) / f"run{r}-{k}"))
                wall = time.perf_counter() - t0
                m = json.loads((Path(run.dir) / "metrics.json").read_text())
                cfg = json.loads((Path(run.dir) / "config.json").read_text())
                t = m["timing"]
                out.append({"wall_s": wall, "probe_s": t["extract_s"] + t["train_s"], "extract_s": t["extract_s"], "backbone_runs": t["backbone_runs"], "engine": cfg["extra"]["engine"], "accuracy": m["test"]["accuracy"]})
            if r:
                rounds.append({"first": out[0], "second": out[1]})
    med = {f"{w}_{k}": median([rd[w][k] for rd in rounds]) for w in ("first", "second") for k in ("wall_s", "probe_s", "extract_s")}
    rows = [
        ["whole train() wall time, s", med["first_wall_s"], med["second_wall_s"], f"{med['second_wall_s'] / med['first_wall_s']:.1%}"],
        ["probe strategy (extraction + head fit), s", med["first_probe_s"], med["second_probe_s"], f"{med['second_probe_s'] / med['first_probe_s']:.1%}"],
        ["extraction, s", med["first_extract_s"], med["second_extract_s"], f"{med['second_extract_s'] / med['first_extract_s']:.1%}"],
        ["backbone passes (items)", rounds[0]["first"]["backbone_runs"], rounds[0]["second"]["backbone_runs"], ""],
        ["engine recorded", rounds[0]["first"]["engine"], rounds[0]["second"]["engine"], ""],
    ]
    text = table(f"Second train over unchanged data vs the first: {len(files)} images of {a.data}, {a.backbone} at {a.image_size}px, probe, median of {a.repeats} rounds",
                 ["", "first run", "second run", "second / first"], rows)
    save("cache", {"data": a.data, "images": len(files), "image_size": a.image_size, "rounds": rounds, "median": med}, text)


if __name__ == "__main__":
    main()
