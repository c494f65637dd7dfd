"""Batched feature extraction through the content-keyed cache: each item runs through the
backbone at most once per (backbone, weights, preprocessing)."""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbones import Backbone
from ..data.dataset import ImageDataset, ItemDataset
from ..data.images import ImageDecodeError
from ..errors import TransferkitError
from .cache import FeatureCache, cache_namespace
from .engines import compute_threads, engine_dir, select_engine

FLUSH_EVERY = 1024  # items per cache shard at most ...
FLUSH_SECONDS = 30.0  # ... or this much backbone time: the most work a kill can lose


def build_eval_transform(backbone: Backbone):
    """The backbone's own inference preprocessing (resize, center crop, normalise)."""
    import timm.data

    return timm.data.create_transform(**backbone.data_config, is_training=False)


class _NormalizedArray:
    """PIL RGB image -> normalised float32 CHW tensor, in numpy: the same numbers as
    torchvision's ToTensor + Normalize (to float rounding), without torch's intra-op thread
    pool, which on a few cores fights the backbone's threads over tiny per-image ops."""

    def __init__(self, mean, std):
        self.scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).astype(np.float32)
        self.shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).astype(np.float32)

    def __call__(self, img) -> torch.Tensor:
        a = np.asarray(img, dtype=np.float32)  # H, W, 3
        a = a * self.scale - self.shift
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return "NormalizedArray()"


def build_extract_transform(backbone: Backbone):
    """The eval transform with its last two steps (to tensor, normalise) done in numpy; the
    geometric steps (resize, crop) are timm's own, on the PIL image. Any other pipeline is
    used as timm builds it."""
    import torchvision.transforms as T

    tf = build_eval_transform(backbone)
    steps = list(getattr(tf, "transforms", []))
    if len(steps) >= 2 and type(steps[-2]).__name__ in ("ToTensor", "MaybeToTensor") and isinstance(steps[-1], T.Normalize):
        norm = steps[-1]
        mean, std = (v.tolist() if hasattr(v, "tolist") else list(v) for v in (norm.mean, norm.std))
        if len(mean) == 3 and len(std) == 3:
            return T.Compose(steps[:-2] + [_NormalizedArray(mean, std)])
    return tf


def resize_hint_for(data_config: dict) -> int:
    """Shorter side the eval transform resizes to: lets JPEG decode at reduced scale."""
    return int(data_config["input_size"][-1] / data_config.get("crop_pct", 1.0)) + 1


class _ItemImages(torch.utils.data.Dataset):
    """Decoded, transformed images for a list of item indices; runs in DataLoader workers."""

    def __init__(self, ds: ImageDataset, indices: list[int], transform, size_hint: int):
        self.ds, self.indices, self.transform, self.size_hint = ds, indices, transform, size_hint

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        try:
            return self.transform(self.ds.load(i, self.size_hint, verify=True)), j, ""
        except TransferkitError as exc:  # changed on disk since loading; names the file
            return None, j, str(exc)
        except ImageDecodeError as exc:
            return None, j, f"{self.ds.item_id(i)}: {exc}"


def _collate(batch):
    """Stack the images of a batch; errors travel as text (a worker's exception would arrive
    as a traceback inside a message)."""
    errors = [e for _, _, e in batch if e]
    if errors:
        return None, [j for _, j, _ in batch], errors
    return torch.from_numpy(np.stack([x.numpy() for x, _, _ in batch])), [j for _, j, _ in batch], []


def feature_cache_for(backbone: Backbone, cache_dir=None) -> FeatureCache:
    """The cache of `backbone`'s features (an image or a text backbone: both declare their
    weights id and preprocessing, which with the name key the cache folder)."""
    from ..backbones.text import cache_safe_name

    ns = cache_namespace(cache_safe_name(backbone.name), backbone.weights_id, backbone.preprocessing_id())
    meta = {"backbone": backbone.name, "weights_id": backbone.weights_id, "data_config": backbone.data_config, "dim": backbone.num_features}
    return FeatureCache(cache_dir, ns, meta)


def default_workers(n_items: int) -> int:
    """Decoding processes beside the model. 0 means one decoding thread in this process,
    a batch ahead of the backbone: measured faster on 2 cores (benchmarks/bench_e2e.py), where
    a worker process only adds start-up and copying. With more cores, a quarter of them (at
    most 4) decode in worker processes; for a few items, the thread."""
    cores = compute_threads()
    if n_items < 256 or cores <= 2:
        return 0
    return max(1, min(4, cores // 4))


def _worker_init(_id: int) -> None:
    torch.set_num_threads(1)  # a decoding worker's tensor ops must not compete with the backbone's threads


def extract_features(
    backbone: Backbone,
    dataset: ItemDataset,
    indices=None,
    *,
    cache_dir=None,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
    stats: dict | None = None,
    engine: str = "auto",
) -> np.ndarray:
    """Features (N, D) float32 for `dataset` items (all, or `indices`), via the on-disk cache.
    Images and texts alike: the cache is keyed by the item's content key either way.

    Only items whose content key is not cached run through the backbone (on the chosen
    engine, decoding a batch ahead in a thread or worker processes); results are flushed to the cache every FLUSH_EVERY items, so an
    interrupted run resumes where it stopped. `engine` (images): auto | torch | onnx, see
    `features.engines`. `stats`, if given, receives ``{"computed": n, "cached": n,
    "extract_s": seconds, "engine": name or None, "engine_choice": {...}}``.
    """
    t0 = time.perf_counter()
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    keys = [dataset.keys[i] for i in idx]
    cache = feature_cache_for(backbone, cache_dir)
    todo_keys = set(cache.missing(keys))
    choice = None
    todo, seen = [], set()
    for i in idx:  # first item of each missing key: duplicates run once
        k = dataset.keys[i]
        if k in todo_keys and k not in seen:
            seen.add(k)
            todo.append(i)
    if todo and getattr(backbone, "kind", "image") == "text":
        from .text import run_text_backbone

        run_text_backbone(backbone, dataset, todo, cache, batch_size, progress, FLUSH_EVERY)
        choice = {"engine": "torch", "reason": "text encoders run in PyTorch"}
    elif todo:
        runner, choice = select_engine(backbone, engine, len(todo), engine_dir(cache), batch_size)
        _run_backbone(backbone, runner, dataset, todo, cache, batch_size, default_workers(len(todo)) if num_workers is None else num_workers, progress)
    feats = cache.get(keys)
    if stats is not None:
        stats.update(computed=len(todo), cached=len(idx) - len(todo), extract_s=time.perf_counter() - t0, cache_dir=str(cache.dir), engine=choice["engine"] if todo and choice else None, engine_choice=choice)
    return feats


PREFETCH_THREAD = True  # without worker processes: decode the next batch in a thread (False: in line; benchmarks)


def _thread_prefetched(items: _ItemImages, batch_size: int):
    """Batches of `items` made one ahead by a background thread, so decoding overlaps the
    backbone call (Pillow's decode/resize, numpy and ONNX Runtime / torch kernels release the
    GIL). No worker processes: no start-up, no copying batches between processes."""
    from concurrent.futures import ThreadPoolExecutor

    spans = [range(s, min(s + batch_size, len(items))) for s in range(0, len(items), batch_size)]

    def make(span):
        return _collate([items[j] for j in span])

    if not PREFETCH_THREAD:
        yield from (make(sp) for sp in spans)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="transferkit-decode") as pool:
        nxt = pool.submit(make, spans[0]) if spans else None
        for k in range(len(spans)):
            cur, nxt = nxt, (pool.submit(make, spans[k + 1]) if k + 1 < len(spans) else None)
            yield cur.result()


def _run_backbone(backbone, engine, dataset, todo, cache, batch_size, num_workers, progress) -> None:
    items = _ItemImages(dataset, todo, build_extract_transform(backbone), resize_hint_for(backbone.data_config))
    if num_workers:
        loader = torch.utils.data.DataLoader(
            items,
            batch_size=batch_size,
            num_workers=num_workers,
            persistent_workers=False,
            prefetch_factor=4,
            worker_init_fn=_worker_init,
            collate_fn=_collate,
        )
    else:
        loader = _thread_prefetched(items, batch_size)
    buf_keys: list[str] = []
    buf_feats: list[np.ndarray] = []
    bar = tqdm(total=len(todo), desc=f"extracting {backbone.name} features", unit="img", disable=not progress, smoothing=0.1)
    last_flush = time.monotonic()
    try:
        for x, j, errors in loader:
            if errors:
                raise TransferkitError(f"{errors[0]}; it was readable when the data was loaded; run again to re-read the data (features computed so far are kept)")
            buf_feats.append(engine(x))
            buf_keys.extend(dataset.keys[todo[int(t)]] for t in j)
            bar.update(len(j))
            if len(buf_keys) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS:
                cache.put(buf_keys, np.concatenate(buf_feats))
                buf_keys, buf_feats = [], []
                last_flush = time.monotonic()
    finally:
        # keep what was computed, also on Ctrl-C: the next run resumes from here
        if buf_keys:
            cache.put(buf_keys, np.concatenate(buf_feats))
        bar.close()
