"""Several processes, one run, on PyTorch's own engine: real `torchrun` processes with the gloo
backend on this CPU machine (NCCL takes the same code path on GPUs).

- a 2-process DDP fine-tune ends with the same weights and metrics (within 1e-5) as one
  process with the same global batch;
- sharded extraction over 2 processes gives byte-identical cache entries and the same probe as 1;
- a SIGKILL of one rank ends the whole run, and `--resume` under torchrun continues it.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import write_class_folder

pytestmark = pytest.mark.slow
TORCHRUN = Path(sys.executable).with_name("torchrun")
COMMON = ["--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32", "--calibrate", "none", "--workers", "0"]
# no randomness that differs between one process and two: no augmentation, no dropout, frozen BN statistics
FINETUNE = ["--strategy", "finetune", "--epochs", "3", "--head-epochs", "2", "--augment", "none", "--dropout", "0", "--patience", "0", "--lr", "3e-3"]


def _env(cache: Path) -> dict:
    # one thread per process in both runs (torchrun's default), so each kernel sums in the same order
    return dict(os.environ, OMP_NUM_THREADS="1", TRANSFERKIT_THREADS="1", TRANSFERKIT_CACHE=str(cache), PYTHONUNBUFFERED="1")


def _run(args, cache: Path, nproc: int | None, timeout=900, wait=True):
    cmd = [str(TORCHRUN), "--standalone", f"--nproc-per-node={nproc}", "-m", "transferkit", *args] if nproc else [sys.executable, "-m", "transferkit", *args]
    if not wait:
        return subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    r = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r


def _weights(run: Path) -> dict:
    with safe_open(str(run / "model.safetensors"), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def _metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {s: {k: m[s][k] for k in ("n", "accuracy", "log_loss", "confusion_matrix")} for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not TORCHRUN.is_file():
        pytest.skip(f"no torchrun beside {sys.executable}")
    root = tmp_path_factory.mktemp("ddp")
    return write_class_folder(root / "photos", per_class=24), root


@pytest.fixture(scope="module")
def finetuned(data):
    photos, root = data
    one = root / "one"
    two = root / "two"
    _run(["train", str(photos), *COMMON, *FINETUNE, "--batch-size", "8", "--out", str(one)], root / "cache1", None)
    r = _run(["train", str(photos), *COMMON, *FINETUNE, "--batch-size", "4", "--out", str(two)], root / "cache2", 2)
    return one, two, r.stdout + r.stderr


def test_two_process_fine_tune_matches_one_process_with_the_same_global_batch(finetuned):
    one, two, log = finetuned
    cfg = json.loads((two / "config.json").read_text())["extra"]
    assert cfg["distributed"]["world_size"] == 2 and cfg["distributed"]["backend"] == "gloo" and cfg["distributed"]["effective_batch"] == 8
    w1, w2 = _weights(one), _weights(two)
    assert w1.keys() == w2.keys()
    # the head's first layer has the feature standardisation folded in (W / sd): small standard
    # deviations magnify float rounding there, so it is compared relative to its own scale
    folded = "head.0.weight"
    worst = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1 if k != folded)
    assert worst < 1e-5, worst
    assert float((w1[folded] - w2[folded]).abs().max() / w1[folded].abs().max()) < 1e-4
    m1, m2 = _metrics(one), _metrics(two)
    for s in m1:
        assert m1[s]["n"] == m2[s]["n"] and m1[s]["confusion_matrix"] == m2[s]["confusion_matrix"]
        assert abs(m1[s]["log_loss"] - m2[s]["log_loss"]) < 1e-5
    assert log.count("[transferkit] writing run folder") == 1  # rank 0 alone writes and logs
    assert sorted(p.name for p in two.parent.iterdir() if p.name.startswith(".two")) == []  # no checkpoint or partial folder left


def test_sharded_extraction_gives_the_same_cache_and_probe_as_one_process(data):
    from transferkit.features.cache import FeatureCache

    photos, root = data
    runs = {}
    for n in (1, 2):
        cache = root / f"probe-cache{n}"
        shutil.rmtree(cache, ignore_errors=True)
        _run(["train", str(photos), *COMMON[:-2], "--out", str(root / f"probe{n}")], cache, n)
        ns = [d for d in (cache / "features").iterdir() if d.is_dir()]
        assert len(ns) == 1
        c = FeatureCache(cache, ns[0].name)
        keys = sorted(k.decode() for k in c._index)
        runs[n] = (keys, c.get(keys), len(list(ns[0].glob("shard-*.keys.npy"))))
    (k1, f1, shards1), (k2, f2, shards2) = runs[1], runs[2]
    assert k1 == k2 and len(k1) == 72 and f1.tobytes() == f2.tobytes()
    assert shards2 >= 2  # both ranks wrote shards into the one cache
    w1, w2 = _weights(root / "probe1"), _weights(root / "probe2")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert _metrics(root / "probe1") == _metrics(root / "probe2")


def test_sigkill_of_one_rank_ends_the_run_and_resume_continues_it(data, finetuned):
    photos, root = data
    one, two, _ = finetuned
    out = root / "killed"
    ckpt = out.parent / ".killed.checkpoint"
    proc = _run(["train", str(photos), *COMMON, *FINETUNE, "--batch-size", "4", "--out", str(out)], root / "cache3", 2, wait=False)
    t0 = time.time()
    while not (ckpt / "last.pt").is_file():  # the first epoch through the body has been checkpointed
        assert proc.poll() is None and time.time() - t0 < 600, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    ranks = _rank_pids(proc.pid)
    assert len(ranks) == 2, ranks
    os.kill(ranks[1], signal.SIGKILL)
    try:
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code != 0, proc.stdout.read()[-3000:]
    time.sleep(1)
    assert not _alive(ranks[0]), "the other rank kept running"
    assert not out.exists() and (ckpt / "last.pt").is_file()
    r = _run(["train", "--resume", str(out)], root / "cache3", 2)
    assert "resuming killed after epoch" in r.stdout + r.stderr
    w, ref = _weights(out), _weights(two)
    assert max(float((w[k] - ref[k]).abs().max()) for k in w) < 1e-5
    assert not ckpt.exists()


def _rank_pids(agent: int) -> list[int]:
    """The worker processes torchrun started (children of its agent), by RANK."""
    pids = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().split(")")[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        rank = next((e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")), None)
        if rank is not None and ppid == agent:
            pids[int(rank)] = int(d.name)
    return [pids[k] for k in sorted(pids)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (ProcessLookupError, OSError):
        return False
