"""Small, fast multi-label data for tests, from benchmarks/multilabel_sets.py (the one place the
builders live: that script is what the README tells users to run, so tests load it by path
rather than keeping a second copy here)."""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "multilabel_sets.py"


@lru_cache(maxsize=1)
def sets():
    """benchmarks/multilabel_sets.py as a module (it imports nothing of tests/ or of transferkit)."""
    spec = importlib.util.spec_from_file_location("multilabel_sets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def key_of(data: bytes | str) -> str:
    """A content key, as the data loaders make them (sha256 of the bytes)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@lru_cache(maxsize=8)
def text_set(n: int, seed: int = 0) -> tuple[list[str], list[list[str]], list[str]]:
    """(texts, label sets, keys) of n Reuters R52 texts with 1-3 topics each; cached per (n, seed)."""
    rows = sets().build_texts(n, seed=seed)
    return [t for t, _ in rows], [ls for _, ls in rows], [key_of(t) for t, _ in rows]


def mosaic_label_sets(n: int, seed: int = 0) -> tuple[list[list[str]], list[str]]:
    """(label sets, keys) of n CIFAR-10 mosaic layouts without drawing the images: 10 labels,
    1-4 per item. Keys stand for the (distinct) images: one per mosaic."""
    layouts = sets().mosaic_layouts(n, sets().CIFAR10, seed)
    return [sorted(set(t)) for t in layouts], [key_of(f"mosaic {seed} {i}") for i in range(n)]


def indicator(label_sets) -> np.ndarray:
    """An independent, obvious (N, L) 0/1 matrix over the sorted labels, to check label_matrix."""
    classes = sorted({x for s in label_sets for x in s})
    return np.array([[int(c in s) for c in classes] for s in label_sets], dtype=np.uint8).reshape(len(label_sets), len(classes))
