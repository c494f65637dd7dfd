"""Progress lines on stderr: what transferkit is doing now (one line per stage)."""
from __future__ import annotations

import sys


def log(msg: str) -> None:
    print(f"[transferkit] {msg}", file=sys.stderr, flush=True)
