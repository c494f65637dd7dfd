"""What a report shows, read from a run (or comparison) folder's files and nothing else."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import io as tkio
from ..errors import TransferkitError
from ..leaderboard import FIELDS as LEADERBOARD_FIELDS

SPLITS = ("train", "val", "test")


@dataclass
class RunFacts:
    """A finished run folder's files, parsed; optional files are None when absent."""

    dir: Path
    config: dict
    metrics: dict
    checks: dict
    classes: list[str]
    history: list[dict] | None = None  # history.csv rows, numbers as floats
    predictions: list[dict] | None = None  # predictions.csv rows (test set)
    splits: dict | None = None  # splits.json: display paths per split
    notes: list[str] = field(default_factory=list)  # what could not be read, for the page

    @property
    def title(self) -> str:
        return f"{self.strategy} · {self.backbone} on {self.metrics.get('data', {}).get('name', self.config.get('data', '?'))}"

    @property
    def strategy(self) -> str:
        s = self.config.get("strategy", "?")
        head = self.config.get("head")
        return f"{s} ({head} head)" if s == "probe" and head else s

    @property
    def backbone(self) -> str:
        return self.config.get("backbone", "?")

    def split(self, name: str) -> dict:
        return self.metrics.get(name) or {}


def is_run_dir(d: Path) -> bool:
    return (d / "metrics.json").is_file() and (d / "config.json").is_file()


def is_compare_dir(d: Path) -> bool:
    return (d / "leaderboard.json").is_file()


def load_run_facts(run_dir: str | Path) -> RunFacts:
    d = Path(run_dir)
    if not is_run_dir(d):
        raise TransferkitError(f"{d}: not a finished run folder (needs config.json and metrics.json); pass a folder written by `transferkit train`")
    cfg = tkio.read_json(d / "config.json")
    m = tkio.read_json(d / "metrics.json")
    notes = []
    checks = _read_optional_json(d / "checks.json", notes) or {}
    classes = m.get("data", {}).get("classes") or (_read_optional_json(d / "labels.json", notes) or {}).get("classes") or []
    return RunFacts(
        dir=d,
        config=cfg,
        metrics=m,
        checks=checks,
        classes=list(classes),
        history=_read_history(d / "history.csv", notes),
        predictions=_read_csv(d / "predictions.csv", notes),
        splits=_read_optional_json(d / "splits.json", notes),
        notes=notes,
    )


def _read_optional_json(path: Path, notes: list[str]):
    if not path.is_file():
        return None
    try:
        return tkio.read_json(path)
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({exc})")
        return None


def _read_csv(path: Path, notes: list[str]) -> list[dict] | None:
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        notes.append(f"{path.name} could not be read ({exc})")
        return None


def _read_history(path: Path, notes: list[str]) -> list[dict] | None:
    rows = _read_csv(path, notes)
    if not rows:
        return None
    return [{k: _num(v) for k, v in r.items() if k} for r in rows]


def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------- leaderboards


def load_leaderboard(compare_dir: str | Path) -> list[dict]:
    """leaderboard.json rows (a list, or {"rows": [...]}) with every agreed field present
    (None when missing) and `run_dir` resolved against the comparison folder."""
    d = Path(compare_dir)
    path = d / "leaderboard.json"
    if not path.is_file():
        raise TransferkitError(f"{d}: no leaderboard.json; pass a run folder or a folder written by `transferkit compare`")
    raw = tkio.read_json(path)
    rows = raw.get("rows", raw.get("runs")) if isinstance(raw, dict) else raw
    if not isinstance(rows, list):
        raise TransferkitError(f"{path}: expected a list of rows or {{\"rows\": [...]}}")
    out = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        row = {k: r.get(k) for k in LEADERBOARD_FIELDS}
        row.update({k: v for k, v in r.items() if k not in row})
        for k in ("test_accuracy", "macro_f1", "weighted_f1", "val_accuracy", "train_accuracy", "train_s", "predict_ms", "peak_mem_mb", "params_total", "params_trainable", "ece", "mAP", "micro_f1"):
            row[k] = _num(row[k])
        rd = row.get("run_dir")
        row["run_path"] = (d / rd) if rd else None
        row["run_href"] = (Path(rd).as_posix().rstrip("/") + "/report.html") if rd else None
        row["label"] = str(r.get("name") or f"{row.get('strategy') or '?'} · {row.get('backbone') or '?'}")
        out.append(row)
    seen: dict[str, int] = {}
    for row in out:
        seen[row["label"]] = seen.get(row["label"], 0) + 1
    for i, row in enumerate(out):  # two runs of one strategy+backbone (a preset): name them by folder
        if seen[row["label"]] > 1:
            row["label"] += f" ({Path(row['run_dir']).name if row.get('run_dir') else i + 1})"
    return out
