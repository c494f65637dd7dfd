"""Interruptions: SIGKILL at random moments, Ctrl-C, SIGTERM, two writers on one cache, and
kills during export and `predict --out`.

The kill harness runs `transferkit train` on tiny data in real processes (killkit.py: forked
from a forkserver that has done the imports) and kills it TK_KILLS_PER_STAGE times in each
stage (feature extraction, training, writing the run folder and its report): 20 by default,
the full 60-kill run that `make test` and CI do (≈ 3 min on 2 cores; `TK_KILLS_PER_STAGE=3`
for a quick local pass). Kills come in chains of TK_KILL_CHAIN
(default 4): each run starts from what the killed one before it left, and the chain ends
with a run that completes. After every kill: every cache entry equals the uninterrupted
run's, and the run folder is absent, untouched, or complete. Every completed re-run has the
uninterrupted run's metrics and split, and leaves nothing beside the run folder. Half the
kills are timed (a timer in the child, a random time into the stage); the other half are
crash points: the child SIGKILLs itself just before a random one of the file-system writes
the stage makes (so the commit renames, which take microseconds, are hit too). Stages that
write nothing (a probe's head fit) get timed kills only. Fine-tuning gets its own
TK_FINETUNE_KILLS (default 6) kills in training, where the writes are its per-epoch checkpoints: each
re-run resumes from the checkpoint the kill left (`train --resume`), which must load whole.

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
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import killkit
from conftest import write_class_folder

KILLS_PER_STAGE = int(os.environ.get("TK_KILLS_PER_STAGE", 20))  # 3 stages x 20: the 60 kills
FINETUNE_KILLS = int(os.environ.get("TK_FINETUNE_KILLS", 6))  # kills while fine-tuning, each resumed from its checkpoint
COMMON = ["--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32", "--batch-size", "8"]
STRATEGIES = {"probe": ["--strategy", "probe"]}  # e.g. "finetune": ["--strategy", "finetune", "--epochs", "2"]
RUN_FILES = ["config.json", "splits.json", "labels.json", "model.safetensors", "metrics.json", "predictions.csv", "checks.json"]
REPORT_FILES = ["report.md", "report.html"]
CHAIN = int(os.environ.get("TK_KILL_CHAIN", 4))  # kills in a row before a re-run must complete
FLUSH_EVERY = 8  # items per cache shard in the children: several shards to tear
METRIC_KEYS = ("n", "accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class")

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- the children


_CHILDREN: list = []


@pytest.fixture(scope="module")
def forkserver():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(killkit.PRELOAD)
    yield ctx
    for p in _CHILDREN:  # a child left by a failed assertion, and the workers of killed ones
        if p.is_alive():
            p.kill()
            p.join(5)


class Child:
    def __init__(self, ctx, argv, log: Path, kill_stage=None, kill_op=0, kill_delay=None, kill_signal=signal.SIGKILL):
        self.log = log
        self.proc = ctx.Process(target=killkit.run_child, args=([str(a) for a in argv], str(log), FLUSH_EVERY, kill_stage, kill_op, kill_delay, kill_signal))
        self.proc.start()
        _CHILDREN.append(self.proc)

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

    def ops(self) -> dict:
        return json.loads(self.text().rsplit("[killkit] ops ", 1)[1].splitlines()[0])


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
        if f.endswith(".json"):
            json.loads((run / f).read_text())
    # the report is written after the run is committed: absent (a kill landed there; `transferkit
    # report` renders it) or whole, never a torn file
    for f in REPORT_FILES:
        if (run / f).exists():
            text = (run / f).read_text()
            assert text.strip() and (not f.endswith(".html") or text.rstrip().endswith("</html>")), f"{run}: torn {f}"
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
    # 60 images: extraction runs in the main process (no DataLoader workers below 64 items)
    return write_class_folder(tmp_path_factory.mktemp("kill") / "photos", per_class=20)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory, forkserver):
    """An uninterrupted run per strategy: its metrics, split and cache are what every re-run
    must reproduce; it also gives the writes and the seconds per stage that place the kills.
    (The children run the real `transferkit.cli.main`; test_ctrl_c_... runs a real
    `python -m transferkit` process and checks its resumed metrics against this run too.)"""
    base = tmp_path_factory.mktemp("baseline")
    out = {}
    for name, opts in STRATEGIES.items():
        argv = ["train", str(data), *COMMON, *opts, "--cache-dir", str(base / f"cache-{name}")]
        child = Child(forkserver, argv + ["--out", str(base / name)], base / f"{name}.log")
        durations = _stage_seconds(child)
        from transferkit.features.cache import FeatureCache

        ns = next((base / f"cache-{name}" / "features").glob("*")).name
        cache = FeatureCache(base / f"cache-{name}", ns)
        reference = {k: np.array(cache._shards[s][r]) for k, (s, r) in cache._index.items()}
        out[name] = dict(
            argv=argv, metrics=metrics_of(base / name), splits=json.loads((base / name / "splits.json").read_text()), ops=child.ops(),
            seconds=durations, reference=reference, cache=base / f"cache-{name}", template=base / name,
        )
    return out


def _stage_seconds(c: Child) -> dict[str, float]:
    """Seconds an uninterrupted child spends in each stage (polled from its stage lines)."""
    seen, t_prev, stage = {}, time.monotonic(), "load"
    while c.proc.is_alive():
        s = c.stage()
        if s != stage:
            now = time.monotonic()
            seen[stage], stage, t_prev = now - t_prev, s, now
        time.sleep(0.005)
    assert c.wait() == 0, c.text()
    seen[stage] = time.monotonic() - t_prev
    return seen


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_sigkill_at_random_moments_never_corrupts_and_reruns_match(strategy, baseline, data, forkserver, tmp_path):
    """Kills come in chains: each run of a chain starts from what the killed one before it left
    (damage accumulates), and the chain ends with a run that completes; after every kill the
    cache holds only correct entries and the run folder is absent, untouched or complete."""
    b = baseline[strategy]
    rng = random.Random(f"kill-{strategy}")
    work = tmp_path
    out = work / "runs" / "r"
    log = []
    for stage in ("extract", "train", "write"):
        kills, attempts, chains = 0, 0, 0
        cache = work / f"cache-{stage}"
        while kills < KILLS_PER_STAGE:
            # a chain starts from: a cold cache for extraction (warm otherwise); the run folder
            # absent, or holding a complete earlier run (every other chain; the same settings, so
            # a kill must leave it byte for byte as it was, or replaced by a complete new run)
            chains += 1
            if stage == "extract":
                shutil.rmtree(cache, ignore_errors=True)
            elif not cache.exists():
                shutil.copytree(b["cache"], cache)
            if stage != "extract":  # the probe's fitted head is cached too: each chain fits it again, so training has a moment to kill
                shutil.rmtree(cache / "heads", ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            before = None
            if chains % 2 == 0:
                shutil.copytree(b["template"], out)
                before = snapshot(out)
            argv = b["argv"][:-2] + ["--cache-dir", str(cache), "--out", str(out)]
            completed = False
            for _ in range(CHAIN):
                if kills >= KILLS_PER_STAGE:
                    break
                attempts += 1
                assert attempts <= 4 * KILLS_PER_STAGE, f"could not land {KILLS_PER_STAGE} kills in {stage}: {log[-5:]}"
                n_ops = b["ops"].get(stage, 0)
                by_op = n_ops > 0 and attempts % 2 == 1  # half the kills at a write, half timed
                kw = dict(kill_op=rng.randint(1, n_ops)) if by_op else dict(kill_delay=rng.uniform(0, b["seconds"].get(stage, 0.0)))
                child = Child(forkserver, argv, work / f"{stage}-{attempts}.log", kill_stage=stage, **kw)
                code = child.wait()
                landed = child.stage()
                log.append((stage, attempts, "op" if by_op else "timed", landed, code))
                if code == 0:  # finished before the kill (less left to do after the last one): a completed re-run
                    completed = True
                    break
                assert code == -signal.SIGKILL, child.text()[-3000:]
                kills += landed == stage  # a timed kill that fell into the next stage checks the same, but does not count
                assert_cache_intact(cache, b["reference"])
                if out.exists() and not (before is not None and snapshot(out) == before):
                    assert_run_complete(out, b["metrics"], b["splits"])
            if not completed:  # the chain ended in a kill: the re-run completes with the uninterrupted run's metrics
                code, text = run_to_end(forkserver, argv, work / f"{stage}-{attempts}-rerun.log")
                assert code == 0, text[-3000:]
            assert_run_complete(out, b["metrics"], b["splits"])
            assert sorted(p.name for p in out.parent.iterdir()) == ["r"], "a partial folder was left beside the run"
            assert assert_cache_intact(cache, b["reference"]) == len(b["reference"])
    kinds = [(s, k) for s, _, k, landed, code in log if code == -signal.SIGKILL and landed == s]
    assert len(kinds) == 3 * KILLS_PER_STAGE
    print(f"\n{strategy}: {len(kinds)} kills ({sum(k == 'op' for _, k in kinds)} at a write, {sum(k == 'timed' for _, k in kinds)} timed) in {len(log)} attempts; stage seconds {b['seconds']}; writes per stage {b['ops']}")


FINETUNE = ["--strategy", "finetune", "--epochs", "3", "--head-epochs", "1", "--patience", "0"]
# texts: the head warm-up on cached embeddings (its own checkpoint, head.pt), then the encoder
TEXT_FINETUNE = ["--strategy", "finetune", "--epochs", "3", "--head-epochs", "4", "--patience", "0", "--max-length", "12", "--batch-size", "8"]


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    from textdata import make_texts, make_tiny_bert, write_csv

    root = tmp_path_factory.mktemp("kill-text")
    return write_csv(root / "texts.csv", make_texts(24, length=(6, 16))), make_tiny_bert(root / "bert")


@pytest.fixture(scope="module", params=["image", "text"])
def finetune_baseline(request, data, tmp_path_factory, forkserver):
    """An uninterrupted fine-tuning run (3 epochs, a checkpoint after each; texts also after each
    warm-up epoch) of images or texts: its metrics and split, and the seconds and writes of its
    training stage, which place the kills."""
    base = tmp_path_factory.mktemp(f"ft-baseline-{request.param}")
    if request.param == "image":
        args = [str(data), *COMMON, *FINETUNE]
    else:
        texts, bert = request.getfixturevalue("text_data")
        args = [str(texts), "--backbone", str(bert), *TEXT_FINETUNE]
    argv = ["train", *args, "--out", str(base / "r")]
    child = Child(forkserver, argv, base / "ft.log")
    seconds = _stage_seconds(child)
    return dict(kind=request.param, argv=argv[:-2], metrics=metrics_of(base / "r"), splits=json.loads((base / "r" / "splits.json").read_text()), seconds=seconds, ops=child.ops())


def assert_checkpoint_intact(ckpt: Path, epochs: int) -> int:
    """The hidden checkpoint folder of an unfinished run: absent, or each state it holds
    (last.pt; texts' head warm-up: head.pt) loads whole (weights_only) and names a finished
    epoch. Returns the epochs finished (0: nothing to resume)."""
    from transferkit.loop import load_checkpoint

    done = 0
    for name in ("head.pt", "last.pt"):
        if not (ckpt / name).exists():
            continue
        state = load_checkpoint(ckpt / name)
        assert 1 <= state["epoch"] and len(state["history"]) == state["epoch"], f"{name} at epoch {state['epoch']}"
        assert name == "head.pt" or state["epoch"] <= epochs
        assert json.loads((ckpt / "config.json").read_text())["strategy"] == "finetune"
        done += int(state["epoch"])
    return done


def test_sigkill_while_fine_tuning_resumes_from_intact_checkpoints(finetune_baseline, forkserver, tmp_path):
    """SIGKILL during fine-tuning (half timed, half just before one of the stage's writes: the
    per-epoch checkpoints' temp files and renames). After every kill the checkpoint is absent
    or loads whole; the next run resumes from it (`train --resume RUN`, or starts afresh when
    no epoch had finished), kills accumulate in chains of TK_KILL_CHAIN, and the run that
    finally completes has the uninterrupted run's metrics and split and leaves no checkpoint."""
    b = finetune_baseline
    rng = random.Random("kill-finetune")
    out = tmp_path / "runs" / "r"
    ckpt = out.parent / ".r.checkpoint"
    fresh = b["argv"] + ["--out", str(out)]
    n_ops, seconds = b["ops"].get("train", 0), b["seconds"].get("train", 0.0)
    assert n_ops > 0 and seconds > 0, b
    kills, attempts, resumed, log = 0, 0, 0, []
    while kills < FINETUNE_KILLS:
        shutil.rmtree(out.parent, ignore_errors=True)
        chain = []  # this chain's attempts: (kind, epochs done before, stage landed, exit code, run folder there before)
        for _ in range(CHAIN):
            if kills >= FINETUNE_KILLS:
                break
            attempts += 1
            assert attempts <= 4 * FINETUNE_KILLS, f"could not land {FINETUNE_KILLS} kills in training: {log[-5:]}"
            done = assert_checkpoint_intact(ckpt, 3)
            argv = ["train", "--resume", str(out)] if done else fresh
            resumed += bool(done)
            by_op = attempts % 2 == 1
            kw = dict(kill_op=rng.randint(1, n_ops)) if by_op else dict(kill_delay=rng.uniform(0, seconds))
            before = (out / "metrics.json").read_bytes() if out.exists() else None
            child = Child(forkserver, argv, tmp_path / f"ft-{attempts}.log", kill_stage="train", **kw)
            code = child.wait()
            landed = child.stage()
            chain.append(("op" if by_op else "timed", done, landed, code, before is not None))
            log.append(chain[-1])
            if code == 0:  # less was left to do than the kill's delay: a completed run
                break
            assert code == -signal.SIGKILL, child.text()[-3000:]
            kills += landed == "train"
            assert_checkpoint_intact(ckpt, 3)
            assert not out.exists() or (out / "metrics.json").is_file(), "a run folder without its metrics"
            if landed == "train":  # a kill in training commits nothing: no run folder appears, one there stays as it was
                after = (out / "metrics.json").read_bytes() if out.exists() else None
                assert after == before, ("a kill in training changed the run folder", chain)
        # A run folder next to a checkpoint: some attempt of this chain was killed between committing
        # the run folder and removing the checkpoint (which rmtree empties .pt files first, so
        # config.json alone may stay: the next attempt then starts afresh and may be killed in
        # training, beside the run folder committed before it).
        if out.exists() and ckpt.exists():
            assert any(a[2] in ("write", "done") for a in chain), chain
        if not out.exists() or ckpt.exists():  # what a user does next: the same command, or --resume
            argv = ["train", "--resume", str(out)] if assert_checkpoint_intact(ckpt, 3) else fresh
            code, text = run_to_end(forkserver, argv, tmp_path / f"ft-{attempts}-rerun.log")
            assert code == 0, text[-3000:]
        assert_run_complete(out, b["metrics"], b["splits"])
        assert sorted(p.name for p in out.parent.iterdir()) == ["r"], "a checkpoint or partial folder was left beside the run"
    assert resumed >= 1, log  # some re-runs continued from a checkpoint rather than starting over
    print(f"\nfinetune ({b['kind']}): {kills} kills in training in {attempts} attempts, {resumed} resumed from a checkpoint; stage seconds {b['seconds']}; writes {b['ops']}")


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, forkserver):
    """SIGINT to the process group (a terminal's Ctrl-C: DataLoader workers get it too) in the
    middle of extraction, at a cache write: exit 130 with the resume hint and no traceback, no
    run folder, and the same command then resumes from the features cached so far."""
    big = write_class_folder(tmp_path / "photos", per_class=22, seed=3)  # 66 images: decoded by DataLoader workers (64 or more)
    argv = ["train", str(big), *COMMON, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "r")]
    child = Child(forkserver, argv, tmp_path / "ctrl-c.log", kill_stage="extract", kill_op=20, kill_signal=signal.SIGINT)
    code = child.wait()
    err = child.text()
    assert code == 130, err
    assert "interrupted; features computed so far are cached" in err and "run the same command again" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")], "partial run folder left behind"
    code, text = run_to_end(forkserver, argv, tmp_path / "rerun.log")
    assert code == 0, text
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert 0 < m["timing"]["backbone_runs"] < 66  # resumed: the features cached before Ctrl-C were reused


def test_sigterm_is_handled_like_ctrl_c(data, tmp_path, forkserver, baseline):
    """SIGTERM (`kill`, a scheduler's pre-emption) in the middle of extraction, at a cache write:
    exit 130 with the resume hint, nothing torn, and the re-run reuses what was cached."""
    b = baseline["probe"]
    cache = tmp_path / "cache"
    argv = b["argv"][:-2] + ["--cache-dir", str(cache), "--out", str(tmp_path / "r")]
    child = Child(forkserver, argv, tmp_path / "term.log", kill_stage="extract", kill_op=b["ops"]["extract"] // 2, kill_signal=signal.SIGTERM)
    assert child.wait() == 130, child.text()
    assert "interrupted; features computed so far are cached" in child.text() and "Traceback" not in child.text()
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]
    kept = assert_cache_intact(cache, b["reference"])
    assert 0 < kept < len(b["reference"])
    code, text = run_to_end(forkserver, argv, tmp_path / "rerun.log")
    assert code == 0, text
    assert_run_complete(tmp_path / "r", b["metrics"], b["splits"])
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["timing"]["backbone_runs"] == len(b["reference"]) - kept


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


EXPORT_PREDICT_KILLS = int(os.environ.get("TK_EXPORT_PREDICT_KILLS", 3))


def _kill_and_rerun(ctx, argv, work: Path, name: str, check, rng, n: int) -> list[tuple[str, int]]:
    """A reference run, then `n` kills (alternately at a write and timed) each followed by
    `check()` on what is on disk; the last re-run completes. Returns (kind, exit code) per try."""
    ref = Child(ctx, argv, work / f"{name}-ref.log")
    seconds = _stage_seconds(ref)["load"]
    ops = ref.ops().get("load", 0)
    check(final=True)
    log = []
    for i in range(n):
        by_op = i % 2 == 0 and ops > 0
        kw = dict(kill_op=rng.randint(1, ops)) if by_op else dict(kill_delay=rng.uniform(0, seconds))
        child = Child(ctx, argv, work / f"{name}-{i}.log", kill_stage="load", **kw)
        code = child.wait()
        assert code in (0, -signal.SIGKILL), child.text()[-3000:]
        log.append(("op" if by_op else "timed", code))
        check(final=code == 0)
    code, text = run_to_end(ctx, argv, work / f"{name}-rerun.log")
    assert code == 0, text[-3000:]
    check(final=True)
    return log


def test_sigkill_during_export_and_predict_out_leaves_no_half_written_file(baseline, data, forkserver, tmp_path):
    import transferkit as tk
    from transferkit.bulk_predict import read_rows
    from transferkit.predictor import load_predictor

    b = baseline["probe"]
    run = tmp_path / "run"
    shutil.copytree(b["template"], run)
    rng = random.Random("export-predict")
    x = None

    # export: the .onnx file and its card are absent or whole (the whole file loads and gives
    # the reference probabilities); a killed writer's temp file never takes the name
    onnx = tmp_path / "exp" / "model.onnx"

    def check_export(final: bool) -> None:
        nonlocal x
        if final:
            assert onnx.is_file() and (onnx.parent / "model-card.md").is_file()
            leftovers = [t.name for t in onnx.parent.glob(".model.onnx.*.tmp")]
            assert leftovers == [], f"killed exports' temp files were not cleared: {leftovers}"
        if onnx.exists():
            p = load_predictor(onnx)
            if x is None:
                ref = load_predictor(run)
                x = torch_batch(ref, data)
                check_export.ref = ref.predict_proba(x)
            np.testing.assert_allclose(p.predict_proba(x), check_export.ref, atol=1e-4)
        card = onnx.parent / "model-card.md"
        if card.exists():
            assert card.read_text().strip(), "empty model card"

    log = _kill_and_rerun(forkserver, ["export", run, "--out", onnx], tmp_path, "export", check_export, rng, EXPORT_PREDICT_KILLS)
    assert sum(code == -signal.SIGKILL for _, code in log) >= 1, log

    # predict --out: the output is absent or complete; the journal holds whole rows (a torn last
    # line is cut on resume); the resumed output equals the uninterrupted one row for row
    out = tmp_path / "pred" / "rows.csv"
    argv = ["predict", run, data, "--out", out, "--batch-size", "4", "--workers", "0"]
    reference = []

    def check_predict(final: bool) -> None:
        if final:
            rows = read_rows(out)
            if not reference:
                reference.extend(rows)
            assert rows == reference
            assert not Path(str(out) + ".partial").exists()
            return
        if out.exists():
            assert read_rows(out) == reference
        journal = Path(str(out) + ".partial")
        if journal.exists() and reference:
            lines = journal.read_text().splitlines(keepends=True)
            whole = [ln for ln in lines if ln.endswith("\n")][1:]
            assert [r.split(",")[0] for r in whole] == [r["path"] for r in reference[: len(whole)]]

    log = _kill_and_rerun(forkserver, argv, tmp_path, "predict", check_predict, rng, EXPORT_PREDICT_KILLS)
    assert sum(code == -signal.SIGKILL for _, code in log) >= 1, log
    assert len(reference) == len(tk.load_dataset(data))


def torch_batch(predictor, folder: Path):
    """A few preprocessed images of `folder` as the predictors take them."""
    import torch

    from transferkit.data.images import open_rgb

    paths = sorted(folder.rglob("*.png"))[:6]
    return predictor.preprocessor.batch([open_rgb(p, None) for p in paths])
