"""Peak memory of one phase of a run (training, prediction), measured, not estimated.

On Linux the kernel keeps the process's peak resident set size (VmHWM in /proc/self/status)
and lets a process reset it (write "5" to /proc/self/clear_refs): the peak of a phase is then
exact. Where that is unavailable, a thread samples the resident size every few milliseconds
(a short spike between two samples can be missed). Only this process is measured: data-loading
worker processes are not included."""
from __future__ import annotations

import os
import threading

SAMPLE_S = 0.005
_seen_kb = 0  # the highest VmHWM seen before a reset: resets must not lower the whole run's peak


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    global _seen_kb
    _seen_kb = max(_seen_kb, _status_kb("VmHWM") or 0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    hwm, rss = _status_kb("VmHWM"), _status_kb("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss * 1.05 + 1024  # the reset took


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # optional: macOS / Windows

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - no way to read it: the phase is reported as not measured
        return None


def process_peak_mb() -> float:
    """Peak resident memory of the whole process so far, phase resets included."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return max(_seen_kb, _status_kb("VmHWM") or 0, ru) / 1024


class PeakMemory:
    """`with PeakMemory() as pm: ...` then `pm.peak_mb` (None when it could not be measured),
    `pm.start_mb` (what was resident when the phase began, part of the peak) and `pm.method`
    (how: "VmHWM" or "sampled")."""

    def __init__(self, full_collect: bool = True) -> None:
        self.full_collect = full_collect
        self.peak_mb: float | None = None
        self.start_mb: float | None = None
        self.method: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def __enter__(self) -> "PeakMemory":
        import gc

        # garbage of an earlier phase is not this phase's memory; a full pass walks every live
        # object (~0.3 s with torch, timm and sklearn loaded), the young generations only the recent
        gc.collect(2 if self.full_collect else 1)
        rss = _rss_bytes()
        self.start_mb = None if rss is None else rss / 2**20
        if _reset_peak():
            self.method = "VmHWM"
        elif _rss_bytes() is not None:
            self.method = "sampled"
            self._peak = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, name="transferkit-peak-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            kb = _status_kb("VmHWM")
            self.peak_mb = None if kb is None else kb / 1024
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.peak_mb = self._peak / 2**20 if self._peak else None
