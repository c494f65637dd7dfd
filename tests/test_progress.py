"""transferkit.progress on real streams: a pseudo-terminal gets tqdm's live bar, a file gets a
line every ~10% (or 30 s) with the rate and the time left, and one final line."""
import os
import pty
import re
import threading

import pytest

from transferkit import progress

LINE = re.compile(r"^\[transferkit\] extracting: ([\d,]+)/1,000 img \((\d+)%\) · ([\d.,]+) img/s · (\d+:\d\d) left$")


class FakeClock:
    """time.monotonic for the bar: `step` seconds pass at every reading (a job of known speed)."""

    def __init__(self, step: float):
        self.t, self.step = 1000.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_a_log_file_gets_about_ten_lines_for_a_thousand_updates(tmp_path):
    path = tmp_path / "job.log"
    with open(path, "w", encoding="utf-8") as fh:
        with progress.bar(1000, "extracting", "img", file=fh) as b:
            assert isinstance(b, progress.LogBar)
            for _ in range(1000):
                b.update(1)
    lines = _lines(path)
    assert 10 <= len(lines) <= 12, lines
    assert "\r" not in path.read_text(encoding="utf-8")  # no redraws in a file
    periodic = [LINE.match(x) for x in lines[:-1]]
    assert all(periodic), lines
    assert [int(m[2]) for m in periodic] == list(range(10, 100, 10))  # one per tenth, in order
    assert re.fullmatch(r"\[transferkit\] extracting: 1,000 img in [\d.]+ s · [\d.,]+ img/s", lines[-1]), lines[-1]


def test_log_lines_carry_the_true_rate_and_time_left(tmp_path, monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", FakeClock(1 / 128))  # 128 items per second
    path = tmp_path / "job.log"
    with open(path, "w", encoding="utf-8") as fh:
        b = progress.bar(1000, "extracting", "img", file=fh)
        for _ in range(1000):
            b.update(1)
        b.close()
    lines = _lines(path)
    first = LINE.match(lines[0])
    assert first[1] == "100" and first[3] == "128" and first[4] == "0:07"  # 900 left at 128/s
    half = LINE.match(lines[4])
    assert half[1] == "500" and half[3] == "128" and half[4] == "0:04"
    assert lines[-1] == "[transferkit] extracting: 1,000 img in 7.8 s · 128 img/s"


def test_a_slow_job_says_something_every_30_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", FakeClock(10.0))  # one item per 10 s
    path = tmp_path / "slow.log"
    with open(path, "w", encoding="utf-8") as fh:
        b = progress.bar(10_000, "fine-tuning", "img", file=fh)
        for _ in range(30):  # 300 s, 0.3% of the total: no tenth passed
            b.update(1)
        b.close()
        progress.bar(None, "reading", "file", file=fh, seconds=30).update(7)  # unknown total: count and rate only
    lines = _lines(path)
    assert len(lines) == 10 + 1 + 0, lines  # 300 s / 30 s, the final line; the unclosed second bar has said nothing yet
    assert lines[0] == "[transferkit] fine-tuning: 3/10,000 img (0%) · 0.1 img/s · 27:46:10 left"
    assert lines[-1] == "[transferkit] fine-tuning: stopped at 30/10,000 img after 5:10 · 0.0968 img/s"


def test_unknown_total_postfix_and_transient_bars(tmp_path, monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", FakeClock(16.0))
    path = tmp_path / "misc.log"
    with open(path, "w", encoding="utf-8") as fh:
        b = progress.bar(None, "reading", "file", file=fh)
        b.set_postfix(loss=0.123456, epoch=2)
        for _ in range(4):
            b.update(8)
        b.close()
        monkeypatch.setattr(progress.time, "monotonic", FakeClock(0.01))
        with progress.bar(50, "epoch 1/3", "img", leave=False, file=fh) as b:  # the caller prints its own epoch line
            for _ in range(50):
                b.update(1)
    lines = _lines(path)
    assert lines[0] == "[transferkit] reading: 16 file · 0.5 file/s · loss=0.1235, epoch=2"
    assert lines[1] == "[transferkit] reading: 32 file · 0.5 file/s · loss=0.1235, epoch=2"
    assert lines[2] == "[transferkit] reading: 32 file in 80.0 s · 0.4 file/s · loss=0.1235, epoch=2"
    epoch = [x for x in lines if "epoch 1/3" in x]
    assert len(epoch) == 9 and all(x.endswith("left") for x in epoch)  # tenths only: no final line


def test_track_counts_what_it_yields_and_disable_is_silent(tmp_path):
    path = tmp_path / "t.log"
    with open(path, "w", encoding="utf-8") as fh:
        assert list(progress.track(range(20), desc="items", unit="x", file=fh)) == list(range(20))
        quiet = progress.bar(5, "quiet", disable=True, file=fh)
        quiet.update(5)
        quiet.close()
        assert quiet.n == 5
    lines = _lines(path)
    assert lines[-1].startswith("[transferkit] items: 20 x in ") and not any("quiet" in x for x in lines)


def _read_pty(master: int, out: list) -> None:
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            return
        if not chunk:
            return
        out.append(chunk)


def test_a_terminal_gets_a_live_tqdm_bar():
    from tqdm import tqdm

    master, slave = pty.openpty()
    got: list[bytes] = []
    reader = threading.Thread(target=_read_pty, args=(master, got), daemon=True)
    reader.start()
    with os.fdopen(slave, "w", encoding="utf-8") as term:
        assert term.isatty()
        b = progress.bar(200, "extracting", "img", file=term, mininterval=0)
        assert isinstance(b, tqdm)
        for _ in range(200):
            b.update(1)
        b.set_postfix(loss=0.5)
        b.close()
        off = progress.bar(10, "quiet", "img", disable=True, file=term)  # disabled: nothing, even here
        off.update(10)
        off.close()
    reader.join(5)
    os.close(master)
    text = b"".join(got).decode("utf-8", "replace")
    assert text.count("\r") >= 10, text[:300]  # redrawn in place, many times
    assert "200/200" in text and "100%" in text and "extracting" in text
    assert text.count("\n") <= 2 and "[transferkit]" not in text and "quiet" not in text


def test_a_make_demo_sized_extraction_stays_under_a_hundred_lines(tmp_path, monkeypatch):
    """70,000 images in batches of 64 over ~9 minutes (the demo's feature extraction on a CPU):
    tqdm wrote ~1,250 redraws into the log; the bar writes a few dozen lines."""
    monkeypatch.setattr(progress.time, "monotonic", FakeClock(0.5))
    path = tmp_path / "demo.log"
    with open(path, "w", encoding="utf-8") as fh:
        with progress.bar(70_000, "extracting efficientnet_lite0 features", "img", file=fh, smoothing=0.1) as b:
            for s in range(0, 70_000, 64):
                b.update(min(64, 70_000 - s))
    lines = _lines(path)
    assert 10 <= len(lines) < 40, len(lines)  # ~18 at 30 s + the tenths + the final line
    assert lines[-1].startswith("[transferkit] extracting efficientnet_lite0 features: 70,000 img in 9:0")


@pytest.mark.parametrize("every,expected", [(0.25, 3 + 1), (0.5, 1 + 1)])
def test_the_fraction_between_lines_is_a_choice(tmp_path, every, expected):
    path = tmp_path / "e.log"
    with open(path, "w", encoding="utf-8") as fh:
        with progress.bar(100, "x", file=fh, every=every) as b:
            for _ in range(100):
                b.update(1)
    assert len(_lines(path)) == expected
