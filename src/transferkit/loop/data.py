"""Loaders the loop and extraction eat from: seeded per epoch, with one worker policy, and a
one-ahead decoding thread when no worker processes are used."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch


def cpu_cores() -> int:
    """Cores this process may use (affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_workers(n_items: int, device: torch.device | None = None, workers: int | None = None, random_transforms: bool = False) -> int:
    """Decoding processes beside the model (`workers` when the user gave it). 0 means one
    decoding thread in this process, a batch ahead of the model: measured faster on 2 cores
    (benchmarks/bench_e2e.py), where a worker process only adds start-up and copying. With more
    cores on a CPU run, a quarter of them (at most 4) decode, the rest compute; when a GPU
    computes, every core but one decodes (at most 8). For a few items, the thread.

    `random_transforms` (training augmentation): at least one worker process for 256 items or
    more, because a thread would draw from the same global random state as dropout in the main
    thread, in an order that changes from run to run (and `--resume` must reproduce the run);
    worker processes are seeded from the epoch's generator."""
    if workers is not None:
        return int(workers)
    cores = cpu_cores()
    if n_items < 256:
        return 0
    if cores <= 2:
        return 1 if random_transforms else 0
    if device is not None and device.type != "cpu":
        return max(1, min(8, cores - 1))
    return max(1, min(4, cores // 4))


def prefetched(batches):
    """The items of iterable `batches`, each made one ahead by a background thread, so making
    the next batch (decoding, tokenising) overlaps the model's work on this one (Pillow, numpy,
    tokenizers and torch kernels release the GIL)."""
    it = iter(batches)
    sentinel = object()
    with ThreadPoolExecutor(1, thread_name_prefix="transferkit-prefetch") as pool:
        nxt = pool.submit(next, it, sentinel)
        while True:
            cur = nxt.result()
            if cur is sentinel:
                return
            nxt = pool.submit(next, it, sentinel)
            yield cur


def loader(dataset, batch_size: int = 1, *, shuffle: bool = False, generator: torch.Generator | None = None, workers: int = 0, drop_last: bool = False,
           collate_fn=None, pin_memory: bool = False, batch_sampler=None, thread: bool = True):
    """Batches of a map-style `dataset` (or of `batch_sampler`'s lists of positions): a
    DataLoader with worker processes, whose shuffling and worker seeds come from `generator`
    (seeded per epoch); with no workers, the same batches made one ahead in a thread (`thread`
    False: in line, for transforms that draw random numbers)."""
    if batch_sampler is not None:
        kw = dict(batch_sampler=batch_sampler)
    else:
        kw = dict(batch_size=batch_size, shuffle=shuffle, drop_last=drop_last)
    dl = torch.utils.data.DataLoader(
        dataset,
        generator=generator,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        **kw,
    )
    return prefetched(dl) if (thread and not workers) else dl
