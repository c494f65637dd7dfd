"""Pick a backbone and input size for CIFAR-10 without touching the full test set's answer:
a linear probe on a sample (400 training images per class, a fifth of them for validation;
150 test images per class), per BACKBONE:SIZE, with its extraction rate.

    python benchmarks/cifar_sample_probe.py efficientnet_lite0:160 efficientnet_lite1:192 [--cache-dir DIR]
        [--train-per-class 400] [--test-per-class 150]      (smaller numbers: a smoke run)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from _common import SHARED


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="BACKBONE:SIZE, e.g. efficientnet_lite1:192")
    ap.add_argument("--data", default=str(SHARED / "cifar10"))
    ap.add_argument("--cache-dir", help="feature cache (default: a temporary folder)")
    ap.add_argument("--train-per-class", type=int, default=400)
    ap.add_argument("--test-per-class", type=int, default=150)
    a = ap.parse_args()
    import torch

    import transferkit  # noqa: F401
    from transferkit.backbones import create_backbone
    from transferkit import load_dataset
    from transferkit.features import extract_features
    from transferkit.heads import fit_linear_head

    ds = load_dataset(a.data)
    split = np.array(ds.given_split)
    rng = np.random.default_rng(0)
    tr, te = [], []
    for c in range(len(ds.classes)):
        tr += list(rng.choice(np.where((ds.labels == c) & (split == "train"))[0], a.train_per_class, replace=False))
        te += list(rng.choice(np.where((ds.labels == c) & (split == "test"))[0], a.test_per_class, replace=False))
    tr, te = np.array(tr), np.array(te)
    va = np.arange(len(tr))[::5]  # positions in tr: a fifth for validation, the rest to fit
    fit = np.setdiff1d(np.arange(len(tr)), va)
    with tempfile.TemporaryDirectory() as td:
        for spec in a.configs:
            name, size = spec.split(":")
            bb = create_backbone(name).with_input_size(int(size)).with_crop(1.0)
            stats: dict = {}
            t0 = time.perf_counter()
            X = extract_features(bb, ds, np.concatenate([tr, te]), cache_dir=a.cache_dir or td, progress=False, stats=stats)
            dt = time.perf_counter() - t0
            Xtr, ytr = X[: len(tr)], ds.labels[tr]
            head, info = fit_linear_head(Xtr[fit], ytr[fit], Xtr[va], ytr[va], len(ds.classes))
            with torch.no_grad():
                acc = float((head(torch.from_numpy(X[len(tr) :])).argmax(1).numpy() == ds.labels[te]).mean())
            print(json.dumps({"backbone": name, "size": int(size), "sample_test_accuracy": round(acc, 4), "images_per_s": round(stats["computed"] / dt, 1) if stats["computed"] else None, "C": info["C"]}), flush=True)


if __name__ == "__main__":
    main()
