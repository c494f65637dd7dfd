"""Batched feature extraction through the content-keyed cache: each item runs through the
backbone at most once per (backbone, weights, preprocessing), images and texts alike.

The modality makes the batches (decoded and transformed images, or tokenised texts, see
`modality.extraction_batches`); the engine (`engines.py`) runs the backbone on them; results
are flushed to the cache every FLUSH_EVERY items or FLUSH_SECONDS, so an interrupted run loses
at most that and resumes where it stopped. Under torchrun every rank embeds its share of the
missing items into the one cache (it takes several writers), then all read it."""
from __future__ import annotations

import time

import numpy as np

from ..errors import TransferkitError
from ..paths import safe_name
from .cache import FeatureCache, cache_namespace
from .engines import engine_dir, select_engine

FLUSH_EVERY = 1024  # items per cache shard at most ...
FLUSH_SECONDS = 30.0  # ... or this much backbone time: the most work a kill can lose


def feature_cache_for(backbone, cache_dir=None) -> FeatureCache:
    """The cache of `backbone`'s features (an image or a text backbone: both declare their
    weights id and preprocessing, which with the name key the cache folder)."""
    ns = cache_namespace(safe_name(backbone.name), backbone.weights_id, backbone.preprocessing_id())
    meta = {"backbone": backbone.name, "weights_id": backbone.weights_id, "data_config": backbone.data_config, "dim": backbone.num_features}
    return FeatureCache(cache_dir, ns, meta)


def extract_features(backbone, dataset, indices=None, *, modality=None, cache_dir=None, batch_size: int = 32, num_workers: int | None = None, progress: bool = True,
                     stats: dict | None = None, engine: str = "auto", placement=None, dist=None) -> np.ndarray:
    """Features (N, D) float32 for `dataset` items (all, or `indices`), via the on-disk cache.

    Only items whose content key is not cached run through the backbone (duplicates once).
    `engine`: auto | torch | onnx (what the backbone supports, `backbone.engines`). `modality`:
    the dataset's by default; `placement` (loop.devices): the CPU in fp32 by default.
    `stats`, if given, receives ``{"computed": n, "cached": n, "extract_s": seconds, "engine":
    name or None, "engine_choice": {...}, "cache_dir": path, "engine_dir": path}``."""
    from .. import modality as modalities
    from ..loop.devices import choose
    from ..loop.distributed import SINGLE

    modality = modality or modalities.of(dataset)
    placement = placement or choose("cpu", "fp32")
    dist = dist or SINGLE
    t0 = time.perf_counter()
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    keys = [dataset.keys[i] for i in idx]
    cache = feature_cache_for(backbone, cache_dir)
    todo_keys = set(cache.missing(keys))
    todo, seen = [], set()
    for i in idx:  # first item of each missing key: duplicates run once
        k = dataset.keys[i]
        if k in todo_keys and k not in seen:
            seen.add(k)
            todo.append(i)
    choice = None
    edir = engine_dir(backbone, cache.dir.parent.parent)
    if todo:
        if not dist.is_main:  # rank 0 measures and records the engine choice first
            dist.barrier()
        runner, choice = select_engine(backbone, engine, len(todo), edir, batch_size, placement)
        if dist.is_main:
            dist.barrier()
        # batch by batch (the same batches as one process makes), every world-th batch to this rank
        todo = modality.extraction_order(dataset, todo)
        spans = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
        mine = [i for sp in spans[dist.rank :: dist.world] for i in sp]
        if mine:
            batches = modality.extraction_batches(backbone, dataset, mine, batch_size, num_workers, placement)
            _run(backbone, runner, batches, dataset, mine, cache, progress and dist.is_main, modality.unit, len(todo), dist.world)
        dist.barrier()
        cache.refresh()
    feats = cache.get(keys)
    if stats is not None:
        stats.update(computed=len(todo), cached=len(idx) - len(todo), extract_s=time.perf_counter() - t0, cache_dir=str(cache.dir), engine_dir=str(edir), engine=choice["engine"] if todo and choice else None, engine_choice=choice)
    return feats


def _run(backbone, engine, batches, dataset, todo, cache, progress, unit, total, world) -> None:
    from ..progress import bar as progress_bar

    buf_keys: list[str] = []
    buf_feats: list[np.ndarray] = []
    verb = "embedding texts with" if unit == "text" else "extracting"
    noun = "" if unit == "text" else " features"
    pbar = progress_bar(total, f"{verb} {backbone.name}{noun}", unit, disable=not progress)
    last_flush = time.monotonic()
    try:
        for x, j, errors in batches:
            if errors:
                raise TransferkitError(f"{errors[0]}; it was readable when the data was loaded; run again to re-read the data (features computed so far are kept)")
            buf_feats.append(engine(x))
            buf_keys.extend(dataset.keys[todo[int(t)]] for t in j)
            pbar.update(len(j) * world)
            if len(buf_keys) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS:
                cache.put(buf_keys, np.concatenate(buf_feats))
                buf_keys, buf_feats = [], []
                last_flush = time.monotonic()
    finally:
        # keep what was computed, also on Ctrl-C: the next run resumes from here
        if buf_keys:
            cache.put(buf_keys, np.concatenate(buf_feats))
        pbar.close()
