"""Load benchmark of `transferkit serve` on loopback: requests/s and p50/p99 latency for
single-image POST /predict requests, at a few client concurrencies.

    python benchmarks/bench_serve.py MODEL [--image PHOTO] [--requests 200] [--concurrency 1 4 16]

MODEL is a run folder or an exported .onnx file. The server runs as `transferkit serve` in a
subprocess on a free 127.0.0.1 port (traffic never leaves this machine); the client is Python
threads with one keep-alive session each. Every level sends a bounded number of requests
(and stops after --max-seconds), then the server is stopped. Client and server share the CPU,
so on a small machine the numbers are a floor, not a ceiling.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serving import LOOPBACK, free_port, wait_healthy  # noqa: E402


def default_image() -> tuple[str, bytes]:
    """A 500x375 JPEG photo-like image (a typical upload), made here so the bench needs no data."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    arr = np.stack([(x / 2) % 255, (y / 1.5) % 255, (x + y) % 255], -1) + rng.normal(0, 20, (375, 500, 3))
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype("uint8")).save(buf, "JPEG", quality=90)
    return "synthetic.jpg", buf.getvalue()


def level(base: str, name: str, data: bytes, n: int, conc: int, max_s: float) -> dict:
    lat: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    left = [n]
    stop_at = time.perf_counter() + max_s

    def worker():
        s = requests.Session()
        while True:
            with lock:
                if left[0] <= 0 or time.perf_counter() > stop_at:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            r = s.post(base + "/predict?top_k=5", files={"files": (name, data, "image/jpeg")}, timeout=60)
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] * 1000  # noqa: E731
    return {"concurrency": conc, "requests": len(lat), "ok": codes.get(200, 0), "rps": len(lat) / wall, "p50_ms": q(0.50), "p99_ms": q(0.99), "mean_ms": statistics.mean(lat) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--image", help="photo to upload (default: a synthetic 500x375 JPEG)")
    ap.add_argument("--requests", type=int, default=200, help="requests per concurrency level (default 200)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-seconds", type=float, default=120, help="stop a level after this long (default 120)")
    a = ap.parse_args()
    name, data = (Path(a.image).name, Path(a.image).read_bytes()) if a.image else default_image()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "transferkit", "serve", a.model, "--host", LOOPBACK, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_healthy(base, proc)
        level(base, name, data, 10, 1, 60)  # warm-up
        rows = [level(base, name, data, a.requests, c, a.max_seconds) for c in a.concurrency]
        health = requests.get(base + "/health").json()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    print(f"model {a.model} ({health['kind']}, input {health['input_size']} px); upload {name} {len(data) / 1e3:.0f} kB; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); server batches: {health['batches']} for {health['inputs']} images, largest {health['max_batch_seen']}")
    print("| concurrency | requests (200 OK) | requests/s | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} ({r['ok']}) | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")


if __name__ == "__main__":
    main()
