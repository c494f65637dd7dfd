"""`transferkit tune`: trial 0 is the default configuration, and a search killed with SIGKILL
goes on where it stopped when the same command runs again (finished trials are not repeated,
the one the kill interrupted is marked failed). Real Optuna study in a real SQLite file, real
CLI processes, a tiny timm model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="transferkit tune needs optuna (pip install 'transferkit[tune]')")

import transferkit as tk  # noqa: E402
from transferkit import tuning as tune_mod  # noqa: E402

from conftest import write_class_folder  # noqa: E402

BACKBONE = ["--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32", "--workers", "0"]


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "transferkit", *args]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "TRANSFERKIT_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


def test_trial_zero_is_the_default_configuration_and_the_best_is_a_run(tmp_path):
    data = write_class_folder(tmp_path / "photos", per_class=10)
    out = tmp_path / "search"
    r = tk.tune(str(data), strategy="head", trials=3, out=str(out), backbone="test_efficientnet", pretrained=False, image_size=32, workers=0, seed=0)
    trials = r["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2] and trials[0]["default"] and not any(t["default"] for t in trials[1:])
    # trial 0's settings are what `train` uses when no option is given
    from transferkit.config import TrainConfig
    from transferkit.modality import load_dataset
    from transferkit.pipeline import prepare_config

    defaults = prepare_config(str(data), {"strategy": "head", "backbone": "test_efficientnet", "pretrained": False, "image_size": 32, "workers": 0, "seed": 0}, load_dataset(str(data)))
    assert trials[0]["params"] == {k: getattr(defaults, k) for k in trials[0]["params"]}
    assert set(trials[0]["params"]) == set(tune_mod.SPACES["head"]) and isinstance(defaults, TrainConfig)
    # the others explore: at least one differs from the defaults
    assert any(t["params"] != trials[0]["params"] for t in trials[1:])
    # selection on validation only: best = the lowest validation log-loss among finished trials
    done = [t for t in trials if t["state"] == "COMPLETE"]
    assert r["best"]["val_log_loss"] == min(t["val_log_loss"] for t in done)
    best = tk.load_run(out / "best")  # a normal run folder, with its page and its model
    assert (out / "best" / "report.html").is_file() and (out / "report.html").is_file()
    assert best.config.lr == pytest.approx(trials[r["best"]["trial"]]["params"]["lr"])
    assert r["best"]["command"].startswith(f"transferkit train {data} --strategy head --backbone test_efficientnet --no-pretrained --image-size 32 --workers 0")


def test_a_killed_search_goes_on_where_it_stopped(tmp_path):
    data = write_class_folder(tmp_path / "photos", per_class=10)
    out = tmp_path / "search"
    args = _cli("tune", str(data), "--strategy", "head", "--out", str(out), *BACKBONE, "--epochs", "3")
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        p = subprocess.Popen([*args, "--trials", "6"], stderr=fh, stdout=fh, env=_env(tmp_path))
        deadline = time.time() + 300
        while "trial 2:" not in log.read_text() and p.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert p.poll() is None, log.read_text()[-2000:]
        p.send_signal(signal.SIGKILL)  # mid-trial 2: trials 0 and 1 finished
        p.wait()
    db = f"sqlite:///{out / 'study.db'}"
    before = {t.number: t for t in optuna.load_study(study_name=tune_mod.STUDY, storage=db).trials}
    finished = {n for n, t in before.items() if t.state.is_finished()}
    assert {0, 1} <= finished and 2 not in finished, {n: t.state for n, t in before.items()}
    stamps = {n: (out / "trials" / f"{n:04d}" / "config.json").stat().st_mtime_ns for n in finished}

    again = subprocess.run([*args, "--trials", "4"], capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(finished)} trial(s) done earlier" in again.stderr and "trial 2 was interrupted" in again.stderr
    after = optuna.load_study(study_name=tune_mod.STUDY, storage=db).trials
    states = {t.number: t.state.name for t in after}
    assert states[2] == "FAIL"  # interrupted: never counted
    for n in finished:  # kept as they were, not run again
        assert after[n].params == before[n].params and after[n].value == before[n].value
        assert (out / "trials" / f"{n:04d}" / "config.json").stat().st_mtime_ns == stamps[n]
    assert sum(s in ("COMPLETE", "PRUNED") for s in states.values()) == 4  # --trials counts finished ones
    summary = json.loads((out / "tune.json").read_text())
    assert summary["trials"][0]["default"] and len(summary["trials"]) == len(after)
    assert tk.load_run(out / "best").metrics["val"]["log_loss"] == pytest.approx(summary["best"]["val_log_loss"])


def test_bad_tune_options_are_refused_in_one_line(tmp_path):
    data = write_class_folder(tmp_path / "photos", per_class=4)
    with pytest.raises(tk.TransferkitError, match="--trials 0"):
        tk.tune(str(data), strategy="head", trials=0, out=str(tmp_path / "a"))
    with pytest.raises(tk.TransferkitError, match="--time soon"):
        tk.tune(str(data), strategy="head", time_budget="soon", out=str(tmp_path / "b"))
    with pytest.raises(tk.TransferkitError, match="unknown strategy 'nope'"):
        tk.tune(str(data), strategy="nope", out=str(tmp_path / "c"))
    from transferkit.budget import parse_duration

    assert parse_duration("1h30m") == 5400 and parse_duration("90s") == 90 and parse_duration("30m") == 1800 and parse_duration(None) is None
