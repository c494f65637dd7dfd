"""The feature cache: a second `compare` (probe runs) over unchanged data vs the first, same options.

Each round: a fresh feature cache (the backbone's ONNX export and engine choice are kept, as a
user has them after their first run ever), a first `transferkit.compare`, then a second one
into another comparison folder. Reported per round: the probe run's own time (`total_s` in its
metrics.json: extraction, head fit, run folder, prediction timing), the probe strategy alone
(extraction + head fit), the whole compare() call (load + hash, split, checks, the run, the
comparison page) and the backbone passes of each. Medians of `--repeats` rounds.

    python benchmarks/bench_cache.py [--data ../shared/datasets/flowers5] [--images 0 (all)]
        [--image-size 224] [--repeats 2]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

from _common import SHARED, median, quick, sample_images, save, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "flowers5"))
    ap.add_argument("--images", type=int, default=200 if quick() else 0, help="0: every image of --data")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=1 if quick() else 2)
    a = ap.parse_args()

    import transferkit as tk

    rounds = []
    with tempfile.TemporaryDirectory() as td:
        data = Path(a.data)
        if a.images:  # a stratified sample, copied: the second compare must see the same files
            data = Path(td) / "data"
            for f in sample_images(Path(a.data), a.images):
                (data / f.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, data / f.parent.name / f.name)
        warm = Path(td) / "warm"
        os.environ["TRANSFERKIT_ENGINES"] = str(warm / "engines")  # the machine's engine folder, prepared by round 0 and shared, as a user's is
        for r in range(a.repeats + 1):  # round 0 only warms the engine folder (export, choice)
            root = Path(td) / f"cache{r}"
            out = []
            for k in (1, 2) if r else (1,):
                t0 = time.perf_counter()
                with redirect_stderr(io.StringIO()):
                    board = tk.compare(str(data), strategies="probe", backbones=a.backbone, image_size=a.image_size, cache_dir=str(root if r else warm), out=str(Path(td) / f"cmp{r}-{k}"))
                wall = time.perf_counter() - t0
                run_dir = Path(td) / f"cmp{r}-{k}" / board[0]["run_dir"]
                m = json.loads((run_dir / "metrics.json").read_text())
                cfg = json.loads((run_dir / "config.json").read_text())
                t = m["timing"]
                out.append({"compare_s": wall, "run_s": t["total_s"], "probe_s": t["extract_s"] + t["train_s"], "extract_s": t["extract_s"], "fit_s": t["train_s"], "backbone_runs": t["backbone_runs"], "engine": cfg["extra"]["engine"], "accuracy": m["test"]["accuracy"], "items": m["data"]["items"]})
            if r:
                rounds.append({"first": out[0], "second": out[1]})
    keys = ("compare_s", "run_s", "probe_s", "extract_s", "fit_s")
    med = {f"{w}_{k}": median([rd[w][k] for rd in rounds]) for w in ("first", "second") for k in keys}
    ratio = lambda k: f"{med['second_' + k] / med['first_' + k]:.1%}"  # noqa: E731
    rows = [
        ["probe run (its metrics.json total_s), s", med["first_run_s"], med["second_run_s"], ratio("run_s")],
        ["probe strategy (extraction + head fit), s", med["first_probe_s"], med["second_probe_s"], ratio("probe_s")],
        ["extraction, s", med["first_extract_s"], med["second_extract_s"], ratio("extract_s")],
        ["head fit, s", med["first_fit_s"], med["second_fit_s"], ratio("fit_s")],
        ["whole compare() call (load, hash, run, page), s", med["first_compare_s"], med["second_compare_s"], ratio("compare_s")],
        ["backbone passes (items)", rounds[0]["first"]["backbone_runs"], rounds[0]["second"]["backbone_runs"], ""],
        ["engine recorded", rounds[0]["first"]["engine"], rounds[0]["second"]["engine"], ""],
    ]
    n = rounds[0]["first"]["items"]
    text = table(f"Second compare (probe) over unchanged data vs the first: {n} images of {a.data}, {a.backbone} at {a.image_size}px, median of {a.repeats} rounds",
                 ["", "first compare", "second compare", "second / first"], rows)
    save("cache", {"data": a.data, "images": n, "image_size": a.image_size, "rounds": rounds, "median": med}, text)


if __name__ == "__main__":
    main()
