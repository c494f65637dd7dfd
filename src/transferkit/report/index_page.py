"""FOLDER/index.html: every run and comparison under a folder, one sortable table.

`transferkit report runs/` on a folder that holds run folders (config.json + metrics.json)
and comparison folders (leaderboard.json), at any depth, lists each with its data, strategy,
backbone, test accuracy and macro-F1, date and a link to its report.html. The page works
from disk (file://): relative links, the sort is a few lines of inline JavaScript, nothing is
fetched. It reads only the small JSON files, never predictions or models, so a folder of a
hundred runs indexes in a moment; a folder that cannot be read is listed in the notes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from .. import io as tkio
from ..errors import TransferkitError
from .facts import RunFacts, is_compare_dir, is_run_dir, load_leaderboard

INDEX_FILE = "index.html"
PAGE_FILE = "report.html"


@dataclass
class Entry:
    """One row of the index: a run or a comparison folder."""

    kind: str  # "run" | "comparison"
    path: str  # relative to the indexed folder, posix
    href: str | None  # its report.html, relative and URL-quoted; None when it has no page yet
    data: str
    strategy: str
    backbone: str
    test_accuracy: float | None
    macro_f1: float | None
    date: float  # when it finished: mtime of metrics.json / leaderboard.json (seconds)
    within: str = ""  # the comparison a run belongs to
    detail: str = ""  # e.g. "3 runs, 1 failed"
    members: list[Path] = field(default_factory=list)  # a comparison's run folders

    @property
    def date_text(self) -> str:
        return datetime.fromtimestamp(self.date).strftime("%Y-%m-%d %H:%M")


def find_folders(folder: Path) -> tuple[list[Path], list[Path]]:
    """(run folders, comparison folders) under `folder`, itself included, in path order. Hidden
    folders are skipped, links not followed, and nothing below a run folder is searched."""
    runs, comparisons = [], []
    for here, dirs, _ in os.walk(folder, followlinks=False):
        d = Path(here)
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        if is_run_dir(d):
            runs.append(d)
            dirs[:] = []
        elif is_compare_dir(d):
            comparisons.append(d)
    return runs, comparisons


def _href(page: Path, root: Path) -> str | None:
    return quote(page.relative_to(root).as_posix()) if page.is_file() else None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def run_entry(d: Path, root: Path, within: str = "") -> Entry:
    cfg, m = tkio.read_json(d / "config.json"), tkio.read_json(d / "metrics.json")
    facts = RunFacts(d, cfg, m, {}, list(m.get("data", {}).get("classes") or []))
    test = facts.split("test")
    data = m.get("data", {}).get("name") or Path(str(cfg.get("data", "?"))).name
    return Entry(
        kind="run", path=d.relative_to(root).as_posix() or ".", href=_href(d / PAGE_FILE, root), data=str(data),
        strategy=facts.strategy, backbone=facts.backbone, test_accuracy=_num(test.get("accuracy")), macro_f1=_num(test.get("macro_f1")),
        date=(d / "metrics.json").stat().st_mtime, within=within,
    )  # fmt: skip


def comparison_entry(d: Path, root: Path) -> Entry:
    """A comparison's row: its best run's numbers, the strategies and backbones it compared."""
    rows = load_leaderboard(d)
    ok = [r for r in rows if not r.get("error") and r.get("test_accuracy") is not None]
    best = max(ok, key=lambda r: r["test_accuracy"], default=None)
    data = ""
    for r in rows:  # the data's name, from the first run folder that has one
        p = r.get("run_path")
        if p is not None and (p / "metrics.json").is_file():
            try:
                data = tkio.read_json(p / "metrics.json").get("data", {}).get("name") or ""
            except (OSError, ValueError):
                continue
            if data:
                break
    failed = len(rows) - len([r for r in rows if not r.get("error")])
    return Entry(
        kind="comparison", path=d.relative_to(root).as_posix() or ".", href=_href(d / PAGE_FILE, root), data=str(data),
        strategy=", ".join(dict.fromkeys(str(r.get("strategy") or "?") for r in rows)),
        backbone=", ".join(dict.fromkeys(str(r.get("backbone")) for r in rows if r.get("backbone"))),
        test_accuracy=best["test_accuracy"] if best else None, macro_f1=best.get("macro_f1") if best else None,
        date=(d / "leaderboard.json").stat().st_mtime,
        detail=f"{len(rows)} run{'s' if len(rows) != 1 else ''}" + (f", {failed} failed" if failed else "") + (f"; best: {best['label']}" if best else ""),
        members=[Path(r["run_path"]) for r in rows if r.get("run_path") is not None],
    )  # fmt: skip


def collect(folder: str | os.PathLike) -> tuple[list[Entry], list[str]]:
    """Every run and comparison under `folder`, newest first, and what could not be read."""
    root = Path(folder)
    runs, comparisons = find_folders(root)
    owner = {}  # run folder -> the comparison that lists it
    entries, notes = [], []
    for d in comparisons:
        try:
            e = comparison_entry(d, root)
        except (OSError, ValueError, TransferkitError) as exc:
            notes.append(f"{d.relative_to(root).as_posix() or '.'}: the comparison could not be read ({exc})")
            continue
        entries.append(e)
        owner.update({p.resolve(): e.path for p in e.members})
    for d in runs:
        try:
            entries.append(run_entry(d, root, within=owner.get(d.resolve(), "")))
        except (OSError, ValueError, AttributeError) as exc:
            notes.append(f"{d.relative_to(root).as_posix() or '.'}: the run could not be read ({exc})")
    missing = [e.path for e in entries if e.href is None]
    if missing:
        notes.append(f"{len(missing)} folder{'s have' if len(missing) > 1 else ' has'} no report.html yet ({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}); transferkit report on a run folder writes its page")
    entries.sort(key=lambda e: (-e.date, e.path))
    return entries, notes


def write_index(folder: str | os.PathLike) -> Path:
    """Write FOLDER/index.html listing every run and comparison under FOLDER; returns its path."""
    t0 = time.perf_counter()
    root = Path(folder)
    if not root.is_dir():
        raise TransferkitError(f"{root}: no such folder; pass a folder that holds run or comparison folders")
    entries, notes = collect(root)
    if not entries:
        raise TransferkitError(
            f"{root}: no run folders (config.json + metrics.json) or comparison folders (leaderboard.json) in it or below it; "
            "pass a folder written by `transferkit train` or `transferkit compare`, or one that holds them"
        )
    from .. import __version__

    n_runs = sum(e.kind == "run" for e in entries)
    html = _env().get_template("index.html.j2").render(
        title=f"transferkit runs: {root.resolve().name}", entries=entries, notes=notes, n_runs=n_runs, n_comparisons=len(entries) - n_runs,
        toc=[("runs", "Runs")], version=__version__, rendered_s=time.perf_counter() - t0, folder_arg=str(root),
    )  # fmt: skip
    path = root / INDEX_FILE
    tkio.write_text(path, html)
    return path


def _env():
    """The report templates' Jinja environment (the same settings as render.py's)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
