"""Seeded, stratified, stable train/val/test splits.

Each item draws a number u in [0, 1) from a hash of (seed, its content key) and goes to test if
u < test_size, to val if u < test_size + val_size, else to train. So:
- the same data and seed give the same split on any machine (no RNG state, no ordering);
- adding items never moves the items already assigned;
- identical items (file bytes, or texts) get the same u and always land in the same split (no duplicate leakage);
- each class is split in the given proportions in expectation (stratified); a class the hash
  left without a train, test or val item gets one moved in, deterministically: every class
  with an item trains on at least one; with 2 items, one trains and one tests; with 3 or more,
  each split gets one.
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
    """Split `ds`, keeping a split the source came with (train/val/test folders, official splits).

    A given split missing val or test gets it carved out of its train part (`val_size` and
    `test_size` stay fractions of the whole). Every class with an item gets at least one
    training item; a class with two or more gets a test (then a val) item where one is wanted.
    """
    for name, v in (("val_size", val_size), ("test_size", test_size)):
        if not 0.0 <= v < 1.0:
            raise TransferkitError(f"--{name.replace('_', '-')} {v}: must be a fraction between 0 and 1 (e.g. 0.15)")
    if val_size + test_size >= 1.0:
        raise TransferkitError(f"--val-size {val_size} + --test-size {test_size} leave nothing to train on; keep their sum below 1")
    n = len(ds)
    if getattr(ds, "Y", None) is not None and ds.given_split is None:  # label sets: stratified per label, as stable (data/multilabel.py)
        from .multilabel import multilabel_split

        return Splits(*(np.sort(p).astype(np.int64) for p in multilabel_split(ds.Y, ds.keys, val_size, test_size, seed)))
    u = np.array([_u(seed, k) for k in ds.keys])
    if ds.given_split is not None:
        given = np.asarray(ds.given_split, dtype=object)
        split = given.copy()
        movable = given == "train"
        carve = [(name, size) for name, size in (("test", test_size), ("val", val_size)) if size > 0 and not (given == name).any()]
        train_frac = max(float(movable.mean()), 1e-9)
        # the same u thresholds as an unsplit source, rescaled to the train part; a train part
        # too small for that gives at most half of itself (the checks warn about its size)
        scale = min(1.0 / train_frac, 0.5 / max(sum(size for _, size in carve), 1e-9))
        lo = 0.0
        for name, size in carve:
            hi = lo + size * scale
            split[movable & (u >= lo) & (u < hi)] = name
            lo = hi
        wanted = [name for name, _ in carve]
    else:
        split = np.full(n, "train", dtype=object)
        split[u < test_size + val_size] = "val"
        split[u < test_size] = "test"
        movable = np.ones(n, dtype=bool)
        wanted = [name for name, size in (("test", test_size), ("val", val_size)) if size > 0]
    if getattr(ds, "Y", None) is None:  # a given split of label sets: carved by the hash alone
        _balance_small_classes(ds.labels, ds.keys, u, split, movable, wanted)
    idx = np.arange(n)
    return Splits(idx[split == "train"], idx[split == "val"], idx[split == "test"])


def _balance_small_classes(labels, keys, u, split, movable, wanted: list[str]) -> None:
    """Deterministic fixes for classes the hash split left without train, test or val items.

    Only `movable` items (those whose split we chose, not a given one) move, and byte-identical
    copies move together (they share a key and u), so a fix never leaks a copy across splits.
    Priority is train > test > val: a class with no train item gets its largest-u item moved
    to train; a class missing a `wanted` split gets the smallest-u item of a split that can
    spare one (train first), or else of a lower-priority split. So 2 items end as train +
    test, and 3 as one in each.
    """
    keys = np.asarray(keys)

    def move(i: int, name: str) -> None:
        split[movable & (keys == keys[i])] = name

    classes_of: dict[str, set] = {}
    for k, c in zip(keys.tolist(), labels.tolist()):
        classes_of.setdefault(k, set()).add(c)
    for c in np.unique(labels):  # first: every class trains on something
        mine = np.flatnonzero((labels == c) & movable)
        if len(mine) and not (split[labels == c] == "train").any():
            move(mine[np.argmax(u[mine])], "train")
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        # donors: one item per distinct content, not shared with another class (moving a copy
        # filed under two classes could take the other class's only training item)
        mine = np.asarray([i for i in members[movable[members]] if len(classes_of[keys[i]]) == 1], dtype=np.int64)
        if not len(mine):
            continue
        units = np.sort(mine[np.unique(keys[mine], return_index=True)[1]])
        for rank, name in enumerate(wanted):
            if (split[members] == name).any():
                continue
            groups = [units[split[units] == other] for other in ["train"] + [w for w in wanted if w != name]]
            donors = next((g for g in groups if len(g) >= 2), None)  # a split that can spare one
            if donors is None:  # else one from a lower-priority split
                donors = units[np.isin(split[units], wanted[rank + 1 :])]
            if len(donors):
                move(donors[np.argmin(u[donors])], name)


def load_splits(d: dict) -> Splits:
    return Splits(*(np.asarray(d[k], dtype=np.int64) for k in ("train", "val", "test")))
