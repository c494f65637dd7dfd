"""Does a served model label real uploads as the run evaluated them? Posts the first N test
photos of a run's predictions.csv to `transferkit serve MODEL` on loopback, one per request,
and counts the answers equal to the run's `predicted` (and `true`) column.

    python benchmarks/check_serve_labels.py RUN_DIR [MODEL] [--n 40]

MODEL defaults to the run folder itself; pass RUN_DIR/export/model.onnx to check the export.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serving import LOOPBACK, free_port, wait_healthy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("model", nargs="?")
    ap.add_argument("--n", type=int, default=40)
    a = ap.parse_args()
    run = Path(a.run)
    data = Path(json.loads((run / "config.json").read_text())["data"])
    with open(run / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[: a.n]
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "transferkit", "serve", a.model or a.run, "--host", LOOPBACK, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(base, proc)
        same = truth = 0
        for r in rows:
            f = data / r["path"]
            with open(f, "rb") as fh:
                got = requests.post(base + "/predict", files={"files": (f.name, fh, "image/jpeg")}, timeout=60).json()["predictions"][0]["labels"][0]
            same += got == r["predicted"]
            truth += got == r["true"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    print(f"{a.model or a.run}: {same}/{len(rows)} uploads got the label the run evaluated; {truth}/{len(rows)} the true label")


if __name__ == "__main__":
    main()
