"""Progress that suits where it goes: a live bar on a terminal, a few plain lines in a log.

A tqdm bar redraws itself with carriage returns several times a second; in a file or a CI log
every redraw stays, and one feature extraction wrote more than a thousand of them (`make demo`).
So `bar()` draws tqdm's live bar only when its stream is a terminal (or a notebook), and
otherwise prints one line at every ~10% of the total or every 30 seconds, whichever comes
first, with the rate and the time left, plus one final line:

    [transferkit] extracting features: 3,500/10,000 img (35%) · 412 img/s · 0:16 left
    [transferkit] extracting features: 10,000 img in 24.3 s · 411 img/s

Both kinds answer the same small API: update(n), set_postfix(...), set_description(...),
close(), `with`, and `n` / `total`; `track()` wraps an iterable.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

T = TypeVar("T")
PREFIX = "[transferkit] "


def bar(total: int | None = None, desc: str = "", unit: str = "it", *, initial: int = 0, disable: bool = False, leave: bool = True, file: IO[str] | None = None, every: float = 0.1, seconds: float = 30.0, **tqdm_options):
    """A progress bar for `total` items (None: unknown) written to `file` (default: stderr).

    disable: no output at all. leave=False: a transient bar (a terminal erases it; a log gets
    no final line, for callers that print their own summary, e.g. one line per epoch).
    every / seconds: in a log, a line each time this fraction of the total is passed, or after
    this many seconds without a line. tqdm_options (mininterval, smoothing, ...) tune the live
    bar only; a log has nothing to tune.
    """
    if disable:
        return NullBar(total, initial)
    stream = sys.stderr if file is None else file
    if _is_terminal(stream) or _in_notebook(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream, **tqdm_options)
    return LogBar(total, desc, unit, initial=initial, leave=leave, file=stream, every=every, seconds=seconds)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", **options) -> Iterator[T]:
    """Yield the items of `iterable`, counting each on a `bar()` (closed at the end, or early)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with bar(total, desc, unit, **options) as b:
        for item in iterable:
            yield item
            b.update(1)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def _in_notebook(stream) -> bool:
    """Jupyter's stderr is no TTY but draws tqdm's bar (a widget, or \\r redraws) in place."""
    return stream is sys.stderr and "ipykernel" in sys.modules


class NullBar:
    """`disable=True`: counts, prints nothing."""

    def __init__(self, total: int | None = None, initial: int = 0):
        self.total, self.n = total, initial

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LogBar(NullBar):
    """Plain lines for files and CI logs: at each `every` fraction of the total passed, or
    after `seconds` without a line; the rate counts only the items done since it was created
    (a resumed job's `initial` items took no time here)."""

    def __init__(self, total, desc, unit, *, initial=0, leave=True, file=None, every=0.1, seconds=30.0):
        super().__init__(total, initial)
        self.desc, self.unit, self.leave, self.file = desc, unit, leave, file if file is not None else sys.stderr
        self.every, self.seconds = every, seconds
        self.initial, self.postfix, self.closed = initial, "", False
        self.t0 = self.last_t = time.monotonic()
        self.last_step = self._step(initial)

    def _step(self, n: int) -> int:
        """How many `every` fractions of the total `n` has passed (0 when the total is unknown)."""
        return int(n / self.total / self.every + 1e-9) if self.total and self.every > 0 else 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.closed:
            return
        now = time.monotonic()
        step = self._step(self.n)
        done = self.total is not None and self.n >= self.total  # the final line says it
        if not done and (step > self.last_step or now - self.last_t >= self.seconds):
            self.last_step, self.last_t = step, now
            self._write(self._progress_line(now))

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={_short(v)}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.leave:
            self._write(self._final_line(time.monotonic()))

    # ------------------------------------------------------------------ the lines
    def _rate(self, now: float) -> float | None:
        dt = now - self.t0
        return (self.n - self.initial) / dt if dt > 0 and self.n > self.initial else None

    def _head(self) -> str:
        return PREFIX + (f"{self.desc}: " if self.desc else "")

    def _progress_line(self, now: float) -> str:
        rate = self._rate(now)
        if self.total:
            parts = [f"{self.n:,}/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%)"]
        else:
            parts = [f"{self.n:,} {self.unit}"]
        parts.append(f"{_rate(rate)} {self.unit}/s" if rate else f"? {self.unit}/s")
        if self.total:
            parts.append(f"{_clock((self.total - self.n) / rate)} left" if rate else "? left")
        if self.postfix:
            parts.append(self.postfix)
        return self._head() + " · ".join(parts)

    def _final_line(self, now: float) -> str:
        rate, took = self._rate(now), _seconds(now - self.t0)
        if self.total is not None and self.n < self.total:
            parts = [f"stopped at {self.n:,}/{self.total:,} {self.unit} after {took}"]
        else:
            parts = [f"{self.n:,} {self.unit} in {took}"]
        if rate:
            parts.append(f"{_rate(rate)} {self.unit}/s")
        if self.postfix:
            parts.append(self.postfix)
        return self._head() + " · ".join(parts)

    def _write(self, line: str) -> None:
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except (ValueError, OSError):  # the stream was closed under us: progress is not worth a crash
            pass


def _rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.3g}"


def _clock(s: float) -> str:
    """Seconds as m:ss or h:mm:ss, as tqdm writes the time left."""
    s = int(round(s))
    h, m = divmod(s, 3600)
    m, sec = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else _clock(s)


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
