"""Peak resident memory (RSS) of this process during one phase (training, prediction).

On Linux the kernel's high-water mark (VmHWM) is reset by writing 5 to /proc/self/clear_refs,
so each phase gets its own exact peak, also when several runs share one process (`compare`).
Elsewhere a background thread samples the RSS every 50 ms (psutil-free); where neither works
the process-lifetime peak from `resource` is reported. DataLoader worker processes are not
counted: the number is the main process, which holds the model, optimizer state and batches.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def current_rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def _lifetime_peak_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


class PeakMemory:
    """``with PeakMemory() as pm: ...`` then ``pm.peak_mb`` (MB) and ``pm.method``."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak_mb: float | None = None
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0.0

    def __enter__(self) -> "PeakMemory":
        try:
            _CLEAR.write_text("5")  # reset VmHWM to the current RSS
            if _status_kb("VmHWM") is not None:
                self.method = "VmHWM"
                return self
        except OSError:
            pass
        if current_rss_mb() is not None:
            self.method = "sampled"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.method = "lifetime"
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, current_rss_mb() or 0.0)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            self.peak_mb = (_status_kb("VmHWM") or 0) / 1024
        elif self.method == "sampled":
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._sampled, current_rss_mb() or 0.0)
        else:
            self.peak_mb = _lifetime_peak_mb()
