"""Interruptions: SIGKILL at random moments, Ctrl-C, SIGTERM, and two writers on one cache.

The kill harness runs `transferkit train` on tiny data, kills it 20 times in each stage
(feature extraction, training, writing the run folder), and after every kill checks that no
cache entry and no run folder is corrupt or half-written, then re-runs to completion and
checks that the metrics equal those of an uninterrupted run. Half the kills come from the
harness at a random time inside the stage; the other half are crash points: the child
SIGKILLs itself just before a random one of the file-system writes that stage makes (so the
commit renames, which take microseconds, are hit too). Stages that write nothing (a probe's
head fit) get timed kills only.

To cover another strategy, add it to STRATEGIES; it must log its stage lines (see
killkit.STAGES) and accept the same data.
"""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import killkit
from conftest import write_class_folder

KILLS_PER_STAGE = int(os.environ.get("TK_KILLS_PER_STAGE", 20))
COMMON = ["--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32", "--batch-size", "8"]
STRATEGIES = {"probe": ["--strategy", "probe"]}  # e.g. "finetune": ["--strategy", "finetune", "--epochs", "2"]
RUN_FILES = ["config.json", "splits.json", "labels.json", "model.safetensors", "metrics.json", "predictions.csv", "checks.json", "report.md"]
FLUSH_EVERY = 8  # items per cache shard in the children: several shards to tear
METRIC_KEYS = ("n", "accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class")

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- the children


@pytest.fixture(scope="module")
def forkserver():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(killkit.PRELOAD)
    return ctx


class Child:
    def __init__(self, ctx, argv, log: Path, kill_stage=None, kill_op=0):
        self.log = log
        self.proc = ctx.Process(target=killkit.run_child, args=([str(a) for a in argv], str(log), FLUSH_EVERY, kill_stage, kill_op))
        self.proc.start()

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stage(self) -> str:
        return killkit.stage_of(self.text(), "load")

    def wait(self, timeout=300) -> int:
        self.proc.join(timeout)
        assert self.proc.exitcode is not None, f"child hung: {self.text()[-2000:]}"
        return self.proc.exitcode


def run_to_end(ctx, argv, log) -> tuple[int, str]:
    c = Child(ctx, argv, log)
    code = c.wait()
    return code, c.text()


# --------------------------------------------------------------------------- what "intact" is


def metrics_of(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {s: {k: m[s].get(k) for k in METRIC_KEYS} for s in ("train", "val", "test")}


def same_metrics(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def assert_run_complete(run: Path, expect_metrics: dict, expect_splits: dict) -> None:
    import transferkit as tk

    assert (run / ".transferkit-run").is_file(), f"{run}: no marker"
    for f in RUN_FILES:
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f"{run}: {f} missing or empty"
    for f in RUN_FILES:
        if f.endswith(".json"):
            json.loads((run / f).read_text())
    with open(run / "predictions.csv") as fh:
        assert len(list(csv.DictReader(fh))) == expect_metrics["test"]["n"]
    assert same_metrics(metrics_of(run), expect_metrics)
    assert json.loads((run / "splits.json").read_text()) == expect_splits
    tk.load_run(run).model  # the weights load into the model


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_cache_intact(cache_root: Path, reference: dict[bytes, np.ndarray]) -> int:
    """Every committed shard loads, and every cached feature equals the uninterrupted run's."""
    from transferkit.features.cache import FeatureCache

    n = 0
    for ns in (cache_root / "features").glob("*"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a damaged shard is reported as a warning: fail on it
            cache = FeatureCache(cache_root, ns.name)
        for key, (s, row) in cache._index.items():
            np.testing.assert_allclose(cache._shards[s][row], reference[key], atol=1e-4, err_msg=f"cache entry {key!r}")
            n += 1
    return n


# ------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_class_folder(tmp_path_factory.mktemp("kill") / "photos", per_class=24)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory, forkserver):
    """An uninterrupted run per strategy, by a real `python -m transferkit train` subprocess;
    the forkserver child must give the same metrics (the harness's children are equivalent)."""
    base = tmp_path_factory.mktemp("baseline")
    out = {}
    for name, opts in STRATEGIES.items():
        argv = ["train", str(data), *COMMON, *opts, "--cache-dir", str(base / f"cache-{name}")]
        r = subprocess.run([sys.executable, "-m", "transferkit", *argv, "--out", str(base / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        code, text = run_to_end(forkserver, argv + ["--out", str(base / f"{name}-child")], base / f"{name}-child.log")
        assert code == 0, text
        ops = json.loads(text.rsplit("[killkit] ops ", 1)[1].splitlines()[0])
        assert same_metrics(metrics_of(base / name), metrics_of(base / f"{name}-child"))
        from transferkit.features.cache import FeatureCache

        ns = next((base / f"cache-{name}" / "features").glob("*")).name
        cache = FeatureCache(base / f"cache-{name}", ns)
        reference = {k: np.array(cache._shards[s][r]) for k, (s, r) in cache._index.items()}
        # the template: a complete earlier run (another seed) that a kill must never damage
        code, text = run_to_end(forkserver, argv + ["--seed", "1", "--out", str(base / f"{name}-template")], base / f"{name}-template.log")
        assert code == 0, text
        out[name] = dict(argv=argv, metrics=metrics_of(base / name), splits=json.loads((base / name / "splits.json").read_text()), ops=ops, reference=reference, cache=base / f"cache-{name}", template=base / f"{name}-template")
    return out


def _stage_durations(ctx, argv, work: Path) -> dict[str, float]:
    """Seconds spent in each stage by an uninterrupted child (polled from its stage lines)."""
    c = Child(ctx, argv, work / "calibrate.log")
    seen, t_prev, stage = {}, time.monotonic(), "load"
    while c.proc.is_alive():
        s = c.stage()
        if s != stage:
            now = time.monotonic()
            seen[stage], stage, t_prev = now - t_prev, s, now
        time.sleep(0.002)
    assert c.wait() == 0, c.text()
    seen[stage] = time.monotonic() - t_prev
    return seen


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_sigkill_at_random_moments_never_corrupts_and_reruns_match(strategy, baseline, data, forkserver, tmp_path):
    b = baseline[strategy]
    rng = random.Random(f"kill-{strategy}")
    work = tmp_path
    out = work / "runs" / "r"
    durations = {}
    log = []
    for stage in ("extract", "train", "write"):
        kills, attempts = 0, 0
        while kills < KILLS_PER_STAGE:
            attempts += 1
            assert attempts <= 4 * KILLS_PER_STAGE, f"could not land {KILLS_PER_STAGE} kills in {stage}: {log[-5:]}"
            # the state a kill finds: a fresh cache for extraction (warm otherwise); the run
            # folder absent, or holding a complete earlier run (every other attempt)
            cache = work / f"cache-{stage}"
            if stage == "extract":
                shutil.rmtree(cache, ignore_errors=True)
            elif not cache.exists():
                shutil.copytree(b["cache"], cache)
            shutil.rmtree(out, ignore_errors=True)
            had_template = attempts % 2 == 0
            if had_template:
                shutil.copytree(b["template"], out)
            before = snapshot(out) if had_template else None
            argv = b["argv"][:-2] + ["--cache-dir", str(cache), "--out", str(out)]
            if stage not in durations:
                calib = work / f"calib-{stage}"
                calib.mkdir()
                durations[stage] = _stage_durations(forkserver, argv[:-1] + [str(calib / "r")], calib).get(stage, 0.0)
                if stage == "extract":
                    shutil.rmtree(cache)
            n_ops = b["ops"].get(stage, 0)
            by_op = n_ops > 0 and attempts % 4 in (1, 2)  # half the kills at a write, half timed
            child = Child(forkserver, argv, work / f"{stage}-{attempts}.log", kill_stage=stage if by_op else None, kill_op=rng.randint(1, n_ops) if by_op else 0)
            if not by_op:
                while child.proc.is_alive() and child.stage() not in (stage, "done") and not _past(child.stage(), stage):
                    time.sleep(0.001)
                time.sleep(rng.uniform(0, durations[stage]))
                child.proc.kill()
            code = child.wait()
            landed = killkit.stage_of(child.text(), "load")
            log.append((stage, attempts, "op" if by_op else "timed", landed, code))
            if code != -signal.SIGKILL or landed != stage:
                continue  # finished first, or died elsewhere: not a kill in this stage; try again
            kills += 1
            # nothing half-written: the cache holds only correct entries; the run folder is
            # absent, the earlier run untouched, or the new run complete
            assert_cache_intact(cache, b["reference"])
            if out.exists():
                if before is not None and snapshot(out) == before:
                    pass
                else:
                    assert_run_complete(out, b["metrics"], b["splits"])
            # the re-run completes with the uninterrupted run's metrics, and tidies up
            code, text = run_to_end(forkserver, argv, work / f"{stage}-{attempts}-rerun.log")
            assert code == 0, text[-3000:]
            assert_run_complete(out, b["metrics"], b["splits"])
            assert sorted(p.name for p in out.parent.iterdir()) == ["r"], "a partial folder was left beside the run"
            assert_cache_intact(cache, b["reference"])
    kinds = [(s, k) for s, _, k, landed, code in log if code == -signal.SIGKILL and landed == s]
    assert len(kinds) == 3 * KILLS_PER_STAGE
    print(f"\n{strategy}: {len(kinds)} kills ({sum(k == 'op' for _, k in kinds)} at a write, {sum(k == 'timed' for _, k in kinds)} timed) in {len(log)} attempts; stage seconds {durations}; writes per stage {b['ops']}")


def _past(current: str, target: str) -> bool:
    order = ["load", "extract", "train", "write", "done"]
    return order.index(current) > order.index(target)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(data, tmp_path, forkserver, baseline):
    """A real `transferkit train` process group gets SIGINT (what a terminal's Ctrl-C sends)
    during feature extraction."""
    b = baseline["probe"]
    big = write_class_folder(tmp_path / "photos", per_class=80, seed=3)
    argv = ["train", str(big), "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "96", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "r")]
    proc = subprocess.Popen([sys.executable, "-m", "transferkit", *argv], stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "[transferkit] extracting" in line:
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)
            break
    err = "".join(lines) + proc.stderr.read()
    assert proc.wait(60) == 130, err
    assert "interrupted; features computed so far are cached" in err and "run the same command again to resume" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")], "partial run folder left behind"
    code, text = run_to_end(forkserver, argv, tmp_path / "rerun.log")
    assert code == 0, text
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert 0 < m["timing"]["backbone_runs"] < 240  # resumed: the features cached before Ctrl-C were reused


def test_sigterm_is_handled_like_ctrl_c(data, tmp_path, forkserver, baseline):
    b = baseline["probe"]
    argv = b["argv"][:-2] + ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "r")]
    child = Child(forkserver, argv, tmp_path / "term.log")
    while child.proc.is_alive() and child.stage() != "extract":
        time.sleep(0.001)
    time.sleep(0.05)
    os.kill(child.proc.pid, signal.SIGTERM)
    code = child.wait()
    if code == 0:
        pytest.skip("the run finished before SIGTERM arrived (machine too fast for this data)")
    assert code == 130 and "interrupted; features computed so far are cached" in child.text()
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]


def test_two_processes_extracting_into_one_cache(data, tmp_path, forkserver, baseline):
    b = baseline["probe"]
    cache = tmp_path / "cache"
    children = [Child(forkserver, b["argv"][:-2] + ["--cache-dir", str(cache), "--out", str(tmp_path / f"r{i}")], tmp_path / f"{i}.log") for i in range(2)]
    for c in children:
        assert c.wait() == 0, c.text()
    for i in range(2):
        assert_run_complete(tmp_path / f"r{i}", b["metrics"], b["splits"])
    assert assert_cache_intact(cache, b["reference"]) == len(b["reference"])
    code, text = run_to_end(forkserver, b["argv"][:-2] + ["--cache-dir", str(cache), "--out", str(tmp_path / "r2")], tmp_path / "2.log")
    assert code == 0 and json.loads((tmp_path / "r2" / "metrics.json").read_text())["timing"]["backbone_runs"] == 0
