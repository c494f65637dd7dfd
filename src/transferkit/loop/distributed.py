"""Several processes, one run: PyTorch's own distributed engine, started by `torchrun`.

`torchrun --nproc-per-node N -m transferkit train ...` starts N copies of the command with
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR set; `init()` joins them into one process group
(NCCL on GPUs, gloo on CPUs) and returns a `Dist` that the loop, the extraction and the run
writer are handed (nothing here is global state of ours). Rank 0 alone writes files and logs.
Multi-node is the same command with torchrun's rendezvous (--nnodes, --rdzv-endpoint).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items):
        """This rank's share of `items`: every world-th one from its rank on. With a shared
        per-epoch permutation, rank r's j-th batch of b items holds items of the one-process
        run's j-th batch of world*b items, so gradients averaged over ranks are that batch's."""
        return items[self.rank :: self.world] if self.active else items

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order (a list of one without torchrun)."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (loss totals, counts)."""
        if not self.active:
            return list(values)
        return [float(v) for v in np.sum(np.asarray(self.gather([float(v) for v in values])), axis=0)]  # plain floats: checkpoints load with weights_only


SINGLE = Dist()


def from_env() -> Dist:
    """The process group torchrun described in the environment (joined on first call), or a
    single process. NCCL when this process has a CUDA device, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    import torch
    import torch.distributed as td

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not td.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local % torch.cuda.device_count())
        td.init_process_group(backend=backend)
    return Dist(rank, world, local, td.get_backend())


def gather_rows(dist: Dist, positions: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Rows computed by each rank for its `positions` (of n), put back in order on every rank."""
    if not dist.active:
        return rows
    parts = dist.gather((np.asarray(positions), np.asarray(rows)))
    width = next((r.shape[1] for _, r in parts if r.ndim == 2 and len(r)), rows.shape[1] if rows.ndim == 2 else 0)
    out = np.zeros((n, width), dtype=rows.dtype)
    for pos, r in parts:
        if len(pos):
            out[pos] = r
    return out
