"""Where transferkit keeps things on disk."""
from __future__ import annotations

import os
import re
from pathlib import Path


def cache_dir() -> Path:
    """The feature cache root: $TRANSFERKIT_CACHE, else the user's cache dir (XDG)."""
    env = os.environ.get("TRANSFERKIT_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "transferkit"


def engines_dir() -> Path:
    """The machine's backbone engines (ONNX exports and the engine choice, features/engines.py):
    $TRANSFERKIT_ENGINES, else `engines/` in the cache root."""
    env = os.environ.get("TRANSFERKIT_ENGINES")
    return Path(env).expanduser() if env else cache_dir() / "engines"


def safe_name(name: str) -> str:
    """A name usable as one folder name (hub names have '/', local folders are paths)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")).strip("_") or "model"
