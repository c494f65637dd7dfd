"""Write a run folder all at once: build it beside the target, then swap it into place.

A reader (or a re-run after a kill) sees either the previous complete folder or the new
complete one, never a half-written mix: the swap is one atomic ``renameat2(RENAME_EXCHANGE)``
on Linux, else two renames whose gap a later run repairs (`_recover`).

Only a transferkit run folder (or an empty folder) is ever replaced: `--out` pointing at a
photo folder, a home directory or a file is refused before any work starts.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import socket
import uuid
from pathlib import Path

from .errors import TransferkitError

MARKER = ".transferkit-run"  # written into every run folder: what makes a folder safe to replace
_OLD_RUN_FILES = ("config.json", "labels.json", "model.safetensors")  # run folders written before MARKER existed


def is_run_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / MARKER).is_file() or all((p / f).is_file() for f in _OLD_RUN_FILES))


def check_target(out: str | os.PathLike, protect: list[str | os.PathLike] = ()) -> Path:
    """Resolve `out` and refuse targets a run folder must not replace; returns the resolved path.

    `protect`: paths (e.g. the data folder) that must be neither inside `out` nor contain it.
    """
    final = Path(out).expanduser().resolve()
    if final == final.parent:
        raise TransferkitError(f"--out {out}: the file-system root cannot be a run folder")
    for p in protect:
        q = Path(p).expanduser().resolve()
        if q == final or final in q.parents:
            raise TransferkitError(f"--out {out}: contains the data {p}; replacing the run folder would delete it; choose another path")
        if q in final.parents and q.is_dir():
            raise TransferkitError(f"--out {out}: is inside the data folder {p}; the next load would read it as a class; put runs elsewhere")
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise TransferkitError(f"--out {out}: is a file; give a folder path for the run (it is created)")
        if not is_run_folder(final) and any(final.iterdir()):
            raise TransferkitError(f"--out {out}: folder exists and is not a transferkit run folder; transferkit replaces only its own runs; choose a new path")
    parent = final.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TransferkitError(f"--out {out}: {parent} is not writable by this user")
    return final


def _owner_tag() -> str:
    return f"{socket.gethostname()[:32].replace('-', '_')}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    def __init__(self, out: str | os.PathLike, protect: list[str | os.PathLike] = ()):
        self.final = check_target(out, protect)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        _recover(self.final)
        self.path = self.final.parent / f".{self.final.name}.partial-{_owner_tag()}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        (self.path / MARKER).write_text(json.dumps({"kind": "run", "format": 1}) + "\n")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def commit(self) -> Path:
        """Move the finished folder into place, replacing an earlier run of the same name."""
        for _ in range(10):
            if self.final.exists():
                check_target(self.final)  # still ours to replace (it may have changed meanwhile)
                if _exchange(self.path, self.final):
                    shutil.rmtree(self.path, ignore_errors=True)  # now holds the previous run
                    return self.final
                trash = self.final.parent / f".{self.final.name}.old-{_owner_tag()}-{uuid.uuid4().hex[:8]}"
                os.replace(self.final, trash)
                try:
                    os.replace(self.path, self.final)
                except OSError:
                    os.replace(trash, self.final)  # another writer got there first: try again
                    continue
                shutil.rmtree(trash, ignore_errors=True)
                return self.final
            try:
                os.rename(self.path, self.final)
                return self.final
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        raise TransferkitError(f"--out {self.final}: other processes keep replacing it; try again")

    def abandon(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _recover(final: Path) -> None:
    """Clean what killed writers of `final` left beside it (on this host, their pid gone).

    A `.partial-*` folder is unfinished work: removed. An `.old-*` folder is a complete
    earlier run moved aside in the two-rename fallback: put back if `final` is missing.
    """
    host = socket.gethostname()[:32].replace("-", "_")
    prefix = f".{final.name}."
    for p in sorted(q for q in final.parent.iterdir() if q.name.startswith(prefix)):
        kind, _, rest = p.name[len(final.name) + 2 :].partition("-")
        owner, _, _ = rest.rpartition("-")
        h, _, pid = owner.rpartition("-")
        if kind not in ("partial", "old") or h != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if kind == "old" and not final.exists() and is_run_folder(p):
            try:
                os.rename(p, final)
                continue
            except OSError:
                pass
        shutil.rmtree(p, ignore_errors=True)
