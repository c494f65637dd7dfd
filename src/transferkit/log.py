"""Progress lines on stderr: what transferkit is doing now (one line per stage)."""
from __future__ import annotations

import os
import sys


def log(msg: str) -> None:
    """One line on stderr; under torchrun from rank 0 only (the others would repeat it)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        print(f"[transferkit] {msg}", file=sys.stderr, flush=True)
