"""Write a seeded, stratified subset of a built-in text dataset as a CSV (text,label,split),
keeping its official train/test split: the same fraction of every (split, class) cell.

    python benchmarks/text_subset.py r8 --fraction 0.2 --seed 0 --out r8-20pct.csv
    transferkit train r8-20pct.csv --strategy probe --max-length 128

For quick, repeatable accuracy numbers on a laptop CPU when the whole dataset takes too long.
"""
from __future__ import annotations

import argparse
import csv

import numpy as np

import transferkit as tk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="a built-in text dataset (r8, r52, 20newsgroups, rotten-tomatoes)")
    ap.add_argument("--fraction", type=float, default=0.2, help="share of each (split, class) cell kept (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the CSV to write")
    a = ap.parse_args()
    ds = tk.load_dataset(a.dataset)
    given = np.asarray(ds.given_split if ds.given_split is not None else ["train"] * len(ds))
    rng = np.random.default_rng(a.seed)
    keep = []
    for split in ("train", "val", "test"):
        for c in range(len(ds.classes)):
            cell = np.flatnonzero((given == split) & (ds.labels == c))
            if len(cell):
                keep += rng.choice(cell, size=max(1, round(a.fraction * len(cell))), replace=False).tolist()
    keep.sort()
    with open(a.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "split"] if ds.given_split is not None else ["text", "label"])
        for i in keep:
            w.writerow([ds.texts[i], ds.classes[ds.labels[i]]] + ([given[i]] if ds.given_split is not None else []))
    print(f"wrote {len(keep)} of {len(ds)} texts to {a.out} ({', '.join(f'{s} {int((given[keep] == s).sum())}' for s in ('train', 'val', 'test') if (given[keep] == s).any())})")


if __name__ == "__main__":
    main()
