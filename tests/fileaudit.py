"""Record every file the process opens, writes, renames or deletes (Python audit hooks, PEP 578).

    with FileAudit() as audit:
        ...
    audit.writes  # paths opened for writing, created, renamed, removed
    audit.reads   # paths opened for reading

A hook cannot be removed once added, so one hook is installed for the whole test session and
records only while a `FileAudit` is active. Native code that bypasses Python's I/O (a Rust
writer, say) is not seen; transferkit's writes all start from a Python-created temp file.
"""
from __future__ import annotations

import os
import sys
import threading

_active: list["FileAudit"] = []
_installed = False
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _norm(p) -> str | None:
    if isinstance(p, int) or p is None:
        return None
    try:
        return os.path.abspath(os.fsdecode(p))
    except (TypeError, ValueError):
        return None


def _hook(event: str, args) -> None:
    if not _active:
        return
    audit = _active[-1]
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        p = _norm(path)
        if p is None:
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
        (audit.writes if writing else audit.reads).append(p)
    elif event in ("os.rename", "os.replace"):
        if any(isinstance(a, int) and a != -1 for a in args[2:]):
            return  # relative to a directory fd: shutil.rmtree's own walk, covered by its event
        audit.writes += [q for q in (_norm(args[0]), _norm(args[1])) if q]
    elif event in ("os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate", "os.chmod", "os.symlink", "os.link", "shutil.move", "shutil.copyfile"):
        if event != "shutil.rmtree" and isinstance(args[-1], int) and args[-1] != -1 and len(args) > 1:
            return  # dir_fd-relative: inside a tree whose top-level event was recorded
        audit.writes += [q for q in (_norm(a) for a in args[:2] if not isinstance(a, int)) if q]


class FileAudit:
    def __init__(self):
        self.reads: list[str] = []
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "FileAudit":
        global _installed
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.remove(self)

    def writes_outside(self, *allowed: str | os.PathLike, ignore_python_caches: bool = True) -> list[str]:
        """Written paths that are not under any of `allowed` (bytecode caches aside)."""
        roots = [os.path.abspath(os.fsdecode(a)) for a in allowed]
        bad = []
        for w in dict.fromkeys(self.writes):
            if ignore_python_caches and ("__pycache__" in w or w.endswith(".pyc")):
                continue
            if not any(w == r or w.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
                bad.append(w)
        return bad

    def touched(self, path: str | os.PathLike) -> list[str]:
        """Every read or write of `path` or anything under it."""
        r = os.path.abspath(os.fsdecode(path))
        return [p for p in dict.fromkeys(self.reads + self.writes) if p == r or p.startswith(r.rstrip(os.sep) + os.sep)]
