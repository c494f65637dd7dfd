"""Seeded, stratified, stable train/val/test splits.

Each item draws a number u in [0, 1) from a hash of (seed, its content key) and goes to test if
u < test_size, to val if u < test_size + val_size, else to train. So:
- the same data and seed give the same split on any machine (no RNG state, no ordering);
- adding items never moves the items already assigned;
- identical items (file bytes, or texts) get the same u and always land in the same split (no duplicate leakage);
- each class is split in the given proportions in expectation (stratified); a class too small
  to get a val/test item by chance gets one moved in, deterministically.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import TransferkitError
from .dataset import ItemDataset


@dataclass
class Splits:
    train: np.ndarray  # item indices into the dataset
    val: np.ndarray
    test: np.ndarray

    def as_dict(self) -> dict[str, list[int]]:
        return {"train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}

    def assignment(self, n: int) -> np.ndarray:
        """Split name per item index."""
        out = np.empty(n, dtype=object)
        for name in ("train", "val", "test"):
            out[getattr(self, name)] = name
        return out


def _u(seed: int, key: str) -> float:
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def make_splits(ds: ItemDataset, val_size: float = 0.15, test_size: float = 0.15, seed: int = 0) -> Splits:
    """Split `ds`, keeping a split the source came with (train/test folders, official splits)."""
    for name, v in (("val_size", val_size), ("test_size", test_size)):
        if not 0.0 <= v < 1.0:
            raise TransferkitError(f"--{name.replace('_', '-')} {v}: must be a fraction between 0 and 1 (e.g. 0.15)")
    if val_size + test_size >= 1.0:
        raise TransferkitError(f"--val-size {val_size} + --test-size {test_size} leave nothing to train on; keep their sum below 1")
    n = len(ds)
    u = np.array([_u(seed, k) for k in ds.keys])
    split = np.full(n, "train", dtype=object)
    if ds.given_split is not None:
        given = np.asarray(ds.given_split, dtype=object)
        split[:] = given
        if not (given == "val").any():
            # carve val out of the given train part, val_size of the whole as a fraction of train
            frac = val_size / max(1e-9, 1.0 - (given == "test").mean())
            split[(given == "train") & (u < frac)] = "val"
    else:
        split[u < test_size + val_size] = "val"
        split[u < test_size] = "test"
    _ensure_each_split_has_each_class(ds.labels, u, split, want_test=ds.given_split is None and test_size > 0, want_val=val_size > 0)
    idx = np.arange(n)
    return Splits(idx[split == "train"], idx[split == "val"], idx[split == "test"])


def _ensure_each_split_has_each_class(labels, u, split, want_test: bool, want_val: bool) -> None:
    """Move the train items nearest the boundary so classes with ≥ 3 items appear in val/test."""
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for name, wanted in (("test", want_test), ("val", want_val)):
            if not wanted or len(members) < 3 or (split[members] == name).any():
                continue
            train = members[split[members] == "train"]
            if len(train) <= 1:
                continue
            split[train[np.argmin(u[train])]] = name


def load_splits(d: dict) -> Splits:
    return Splits(*(np.asarray(d[k], dtype=np.int64) for k in ("train", "val", "test")))
