"""Run the speed benchmarks (benchmarks/bench_{backbone,e2e,memory,cache,train}.py) one after the other; each prints its
table and writes benchmarks/results/<name>.json and .md. `make bench` runs this.

    python benchmarks/run_all.py [--quick] [--only backbone,e2e]

--quick (or BENCH_QUICK=1): small sizes, for a smoke run of the harness. Run on an otherwise
idle machine for absolute numbers; the ratios are measured side by side in each script and
hold up under load better than the absolute images/s.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = ["backbone", "e2e", "memory", "cache", "train"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--only", help="comma-separated names, e.g. backbone,e2e (bench_NAME.py)")
    a = ap.parse_args()
    env = dict(os.environ, **({"BENCH_QUICK": "1"} if a.quick else {}))
    # the scripts that run without arguments; bench_predict.py / bench_serve.py need a trained
    # run or an exported model (see BENCHMARKS.md for their commands)
    scripts = [HERE / f"bench_{n}.py" for n in DEFAULT if (HERE / f"bench_{n}.py").is_file()]
    if a.only:
        want = set(a.only.split(","))
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in want]
    failed = []
    for s in scripts:
        print(f"\n=== {s.name} ===", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, str(s)], cwd=HERE, env=env)
        print(f"--- {s.name}: {'ok' if r.returncode == 0 else f'FAILED (exit {r.returncode})'} in {time.perf_counter() - t0:.0f} s", flush=True)
        if r.returncode:
            failed.append(s.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
