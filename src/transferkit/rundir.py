"""Write a run folder all at once: build it beside the target, then swap it into place.

A reader (or a re-run after a kill) sees either the previous complete folder or the new
complete one, never a half-written mix.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


class RunFolder:
    def __init__(self, out: str | os.PathLike):
        self.final = Path(out).expanduser().resolve()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.final.parent / f".{self.final.name}.partial-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def commit(self) -> Path:
        """Move the finished folder into place, replacing an earlier run of the same name."""
        trash = None
        if self.final.exists():
            trash = self.final.parent / f".{self.final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, trash)
        os.replace(self.path, self.final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return self.final

    def abandon(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
