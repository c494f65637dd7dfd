"""Helpers for the serve tests: free loopback ports and servers that stop with the test."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import requests

LOOPBACK = "127.0.0.1"  # the tests only ever talk to this machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if requests.get(base + "/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{base} not healthy after {timeout} s")


@contextlib.contextmanager
def cli_server(model, *args: str):
    """`transferkit serve MODEL` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "transferkit", "serve", str(model), "--host", LOOPBACK, "--port", str(port), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_healthy(base, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def thread_server(app):
    """An app on uvicorn in a thread of this process, on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_healthy(base, timeout=60)
        yield base
    finally:
        server.should_exit = True
        t.join(timeout=15)
