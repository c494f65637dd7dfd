"""`compare --time-budget`: runs cheapest first, a run starts only while the budget covers it,
a started network stops after the last epoch that fits, and the skipped runs say so."""
from __future__ import annotations

import time

import pytest

import transferkit as tk
from transferkit import budget
from transferkit.loop.callbacks import Deadline
from transferkit.loop.distributed import SINGLE

from conftest import write_class_folder


class _Loop:
    def __init__(self, epochs):
        self.epochs, self.stop, self.dist = epochs, False, SINGLE


def test_deadline_stops_after_the_last_epoch_that_fits():
    loop = _Loop(10)
    Deadline(time.time() + 1000).on_epoch_end(loop, 3, {"seconds": 5.0})
    assert not loop.stop  # another 5 s epoch fits in 1000 s
    cb = Deadline(time.time() + 3)
    cb.on_epoch_end(loop, 4, {"seconds": 5.0})
    assert loop.stop and cb.stopped_epoch == 4  # the next 5 s epoch would end past it
    last = _Loop(4)
    Deadline(time.time() - 1).on_epoch_end(last, 4, {"seconds": 5.0})
    assert not last.stop  # the last epoch: nothing to stop


def test_the_budget_skips_what_it_cannot_pay_for_cheapest_first(tmp_path, monkeypatch):
    from transferkit import pipeline

    photos = write_class_folder(tmp_path / "photos", per_class=8)
    out = tmp_path / "study"
    # a one-second budget: the cheapest run (probe) starts (nothing is measured before it), and the
    # budget is spent when it ends, so finetune and head are skipped; finetune was given first.
    # Each run is made to take 2 s more on the clock, so that holds on a machine fast enough to
    # train the tiny probe in under a second.
    later, run_prepared, real_time = [0.0], pipeline.run_prepared, time.time

    def slow_run(*args, **kwargs):
        try:
            return run_prepared(*args, **kwargs)
        finally:
            later[0] += 2.0

    monkeypatch.setattr(pipeline, "run_prepared", slow_run)
    monkeypatch.setattr(time, "time", lambda: real_time() + later[0])
    rows = tk.compare(str(photos), strategies="finetune,head,probe", backbones="test_efficientnet", out=str(out), time_budget="1s",
                      pretrained=False, image_size=32, epochs=2, batch_size=16, workers=0)
    assert [r["strategy"] for r in rows] == ["probe", "head", "finetune"]
    assert rows[0]["error"] == "" and rows[0]["test_accuracy"] is not None
    assert all(r["error"].startswith("skipped: the --time-budget") and r["run_dir"] is None for r in rows[1:])
    page = (out / "report.html").read_text()
    assert "2 skipped (time budget)" in page and "failed" not in page.split("<table")[0]


def test_a_bad_budget_is_refused_before_any_run(tmp_path):
    photos = write_class_folder(tmp_path / "photos", per_class=4)
    for bad, why in (("soon", "write a duration"), ("0s", "above zero")):
        with pytest.raises(tk.TransferkitError, match=f"--time-budget {bad}: .*{why}"):
            tk.compare(str(photos), strategies="probe", out=str(tmp_path / "x"), time_budget=bad)
    assert not (tmp_path / "x").exists()
    assert budget.least_s("probe", 10, 20, None, False) is None and budget.least_s("head", 10, 20, 0.1, True) == pytest.approx(2.0)
