"""On-disk feature cache keyed by content: one folder per (backbone, weights, preprocessing).

Layout: ``ROOT/<backbone>-<id>/shard-<uuid>.feats.npy`` (float32, rows) and a matching
``shard-<uuid>.keys.npy`` (the items' content keys, same order). The feats file is written
first and the keys file last, each by atomic rename, so a shard exists only when complete; a
killed writer leaves at most a temp file, which readers ignore. Writers use unique shard
names, so several processes can fill one cache at once. Reads are memory-mapped.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path

import numpy as np

from .. import io as tkio
from ..paths import cache_dir as default_cache_dir

KEY_DTYPE = "S32"  # content keys are 32 hex characters


def cache_namespace(backbone_name: str, weights_id: str, preprocessing: str, view: str = "center") -> str:
    ident = hashlib.blake2b(f"{weights_id}|{preprocessing}|{view}".encode(), digest_size=8).hexdigest()
    return f"{backbone_name}-{ident}"


class FeatureCache:
    """Features for one backbone+preprocessing, looked up by item content key."""

    def __init__(self, root: str | os.PathLike | None, namespace: str, meta: dict | None = None):
        self.dir = Path(root or default_cache_dir()) / "features" / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        if meta and not (self.dir / "meta.json").exists():
            tkio.write_json(self.dir / "meta.json", meta)
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._seen: set[str] = set()
        _remove_stale_temp_files(self.dir)
        self.refresh()

    def refresh(self) -> None:
        """Pick up shards written since the last look (by us or another process)."""
        for keys_file in sorted(self.dir.glob("shard-*.keys.npy")):
            name = keys_file.name
            if name in self._seen:
                continue
            feats_file = keys_file.with_name(name.replace(".keys.npy", ".feats.npy"))
            try:
                keys = np.load(keys_file)  # allow_pickle=False: a planted object array is refused
                feats = np.load(feats_file, mmap_mode="r")
                if keys.ndim != 1 or keys.dtype.kind != "S":
                    raise ValueError(f"keys of dtype {keys.dtype} and shape {keys.shape}")
                if feats.ndim != 2 or len(feats) != len(keys) or feats.dtype != np.float32:
                    raise ValueError(f"{len(keys)} keys but features of shape {feats.shape} and dtype {feats.dtype}")
                if self._shards and feats.shape[1] != self._shards[0].shape[1]:
                    raise ValueError(f"{feats.shape[1]} features per item, other shards have {self._shards[0].shape[1]}")
            except (OSError, ValueError, EOFError) as exc:
                warnings.warn(f"feature cache: ignoring damaged shard {keys_file} ({exc}); its items will be re-extracted", stacklevel=2)
                continue
            self._seen.add(name)
            s = len(self._shards)
            self._shards.append(feats)
            for row, k in enumerate(keys.tolist()):
                self._index.setdefault(k, (s, row))

    def __contains__(self, key: str) -> bool:
        return key.encode() in self._index

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k.encode() not in self._index]

    def get(self, keys: list[str]) -> np.ndarray:
        """Features for `keys` (all must be present), as an in-memory (N, D) float32 array."""
        if not keys:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        locs = [self._index[k.encode()] for k in keys]
        out = np.empty((len(keys), self._shards[locs[0][0]].shape[1]), dtype=np.float32)
        locs_arr = np.asarray(locs)
        for s in np.unique(locs_arr[:, 0]):
            sel = np.flatnonzero(locs_arr[:, 0] == s)
            out[sel] = self._shards[s][locs_arr[sel, 1]]
        return out

    @property
    def dim(self) -> int | None:
        return self._shards[0].shape[1] if self._shards else None

    def put(self, keys: list[str], feats: np.ndarray) -> None:
        """Write one shard atomically (features first, keys last as the commit marker)."""
        if not keys:
            return
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        stem = f"shard-{uuid.uuid4().hex}"
        with tkio.atomic_path(self.dir / f"{stem}.feats.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, feats)
        with tkio.atomic_path(self.dir / f"{stem}.keys.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(keys, dtype=KEY_DTYPE))
        self.refresh()

    def describe(self) -> dict:
        meta = self.dir / "meta.json"
        return {"dir": str(self.dir), "items": len(self), "meta": json.loads(meta.read_text()) if meta.exists() else {}}


STALE_TEMP_S = 6 * 3600  # a temp file this old belongs to a writer that was killed


def _remove_stale_temp_files(d: Path) -> None:
    """Writers killed mid-shard leave `.shard-*.tmp` files (never read); clear old ones."""
    import time

    now = time.time()
    for tmp in d.glob(".shard-*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()
        except OSError:
            pass
