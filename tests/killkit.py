"""The child side of the kill harness (tests/test_interruptions.py).

`run_child` runs `transferkit.cli.main(argv)` in a process forked from a multiprocessing
forkserver that has already imported transferkit, torch, timm and scikit-learn, so a child
costs a fork instead of ~5-10 s of imports. It is the real CLI code path in a real process;
only the interpreter start-up is shared.

The child writes its stderr to `log_path`, and tracks the stage it is in from the lines the
pipeline logs (STAGES). With `kill_stage`/`kill_op` it SIGKILLs itself just before its
`kill_op`-th file-system write in that stage (a crash point between any two writes); at a
normal exit it appends the number of write operations seen per stage, for calibration.
`kill_signal` sends another signal instead (SIGTERM: a handled stop). With `kill_stage` and
`kill_delay` instead, it SIGKILLs itself `kill_delay` seconds after
entering that stage (a timer thread: the kill lands wherever the main thread is).
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading

# The stage a run is in, from the progress lines transferkit writes (first match wins). A new
# strategy joins the harness by logging one of these when its stage starts.
STAGES = [
    ("[transferkit] extracting", "extract"),
    ("[transferkit] fitting", "train"),
    ("[transferkit] training", "train"),
    ("[transferkit] writing run folder", "write"),
    ("[transferkit] run folder:", "done"),
]
WRITE_EVENTS = {"open", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PRELOAD = [
    "killkit", "transferkit", "transferkit.cli", "transferkit.pipeline", "timm", "timm.data", "sklearn.linear_model", "sklearn.metrics",
    "safetensors.torch", "transferkit.report.render", "transferkit.report.run_page", "transferkit.report.plots", "matplotlib.pyplot",
    "transferkit.exporter", "transferkit.bulk_predict", "onnx", "onnxruntime",
]


def stage_of(text: str, current: str) -> str:
    for marker, stage in STAGES:
        if marker in text:
            current = stage
    return current


class _StageStream(io.TextIOBase):
    """stderr that also notes which stage the pipeline has announced (and when)."""

    def __init__(self, raw, on_stage=None):
        self.raw, self.stage, self.on_stage = raw, "load", on_stage

    def write(self, s):
        new = stage_of(s, self.stage)
        if new != self.stage:
            self.stage = new
            if self.on_stage:
                self.on_stage(new)
        return self.raw.write(s)

    def flush(self):
        self.raw.flush()

    def isatty(self):
        return False


def _is_write(event: str, args) -> bool:
    if event not in WRITE_EVENTS:
        return False
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        if isinstance(path, int):
            return False
        return (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
    return True


def _die(sig=signal.SIGKILL) -> None:
    if sig == signal.SIGINT:  # what a terminal's Ctrl-C does: the whole process group (DataLoader workers too)
        os.killpg(0, sig)
    else:
        os.kill(os.getpid(), sig)


def run_child(argv: list[str], log_path: str, flush_every: int, kill_stage: str | None = None, kill_op: int = 0, kill_delay: float | None = None, kill_signal: int = signal.SIGKILL) -> None:
    me = os.getpid()
    os.setpgrp()  # a process group of its own, as a shell gives a command
    # and Ctrl-C's default action, as a terminal's foreground command has it: a shell without job
    # control starts `cmd &` with SIGINT ignored, and the forkserver would pass that on
    signal.signal(signal.SIGINT, signal.default_int_handler)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)

    def on_stage(stage):
        if os.getpid() == me and stage == kill_stage and kill_delay is not None and not kill_op:
            threading.Timer(kill_delay, _die, (kill_signal,)).start()

    stream = _StageStream(open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False), on_stage)
    sys.stdout = sys.stderr = stream
    import transferkit.features.extract as extract

    extract.FLUSH_EVERY = flush_every  # several cache shards even on tiny data
    ops: dict[str, int] = {}
    ops_lock = threading.Lock()

    def hook(event, args):
        if os.getpid() != me or not _is_write(event, args):  # a forked DataLoader worker inherits the hook
            return
        stage = stream.stage
        with ops_lock:  # writes come from several threads (cache writer, decoding): count each once
            n = ops[stage] = ops.get(stage, 0) + 1
        if stage == kill_stage and n == kill_op:  # this thread's own count: another thread's write cannot skip it
            stream.flush()
            _die(kill_signal)

    sys.addaudithook(hook)
    from transferkit import cli

    code = cli.main(argv)
    print(f"[killkit] ops {json.dumps(ops)}", flush=True)
    os._exit(code)
