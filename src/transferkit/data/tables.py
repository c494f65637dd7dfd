"""Reading a table of items (CSV, TSV, Orange .tab, JSON Lines) into rows, one reader for
tables of image paths and tables of texts, with errors that name the file, the line and the fix.

The modality of a table is decided from its header by the column table in `layout.py`
(`table_modality`): a text column makes it texts, else a path column makes it images."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TransferkitError
from .dataset import Skipped
from .layout import JSONL_SUFFIXES, PATH_COLUMNS, TABLE_SUFFIXES, TEXT_COLUMNS


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES or path.suffix.lower() in JSONL_SUFFIXES


@dataclass
class Table:
    path: Path
    columns: list[str]  # header cells (CSV) or the keys seen in the first 1,000 objects (JSONL)
    rows: list[tuple[int, dict]]  # (the row's first line number, {column: value})
    skipped: list[Skipped] = field(default_factory=list)  # malformed JSON lines

    def row_id(self, line: int) -> str:
        return f"{self.path.name}:{line}"


def _decoded(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TransferkitError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TransferkitError(f"{path}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8 (e.g. Excel: Save As > CSV UTF-8)") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise TransferkitError(f"{path}: line {line} contains a NUL byte; this is not a text table (a spreadsheet or binary file saved as {path.suffix}?)")
    return text


def read_table(path: str | Path) -> Table:
    """Rows of a UTF-8 CSV/TSV/.tab or JSON Lines file. Refused in one line: not UTF-8 (the line
    and byte named), NUL bytes, broken quoting; JSON lines that do not parse are skipped and listed."""
    path = Path(path)
    text = _decoded(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        rows, skipped = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(f"{path.name}:{n}", f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skipped(f"{path.name}:{n}", "not a JSON object"))
                continue
            rows.append((n, obj))
        columns = list(dict.fromkeys(c for _, r in rows[:1000] for c in r))
        return Table(path, columns, rows, skipped)
    csv.field_size_limit(2**31 - 1)  # long documents in one cell
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=TABLE_SUFFIXES.get(path.suffix.lower(), ","))
    rows, start = [], 2
    try:
        for r in reader:
            rows.append((start, {k: v for k, v in r.items() if k is not None}))
            start = reader.line_num + 1  # a quoted cell may span several lines
    except csv.Error as exc:
        raise TransferkitError(f"{path}: line {reader.line_num}: {exc}; check its quoting, or use .tsv for tab-separated files") from None
    return Table(path, list(reader.fieldnames or []), rows)


def read_header(path: Path) -> list[str]:
    """The first line's cells (a bad byte further down must not hide the header)."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        try:
            with open(path, "rb") as fh:
                obj = json.loads(fh.readline(1 << 20).decode("utf-8-sig", errors="replace") or "{}")
            return list(obj) if isinstance(obj, dict) else []
        except (OSError, ValueError):
            return []
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20).decode("utf-8-sig", errors="replace")
    except OSError:
        return []
    return next(csv.reader([first], delimiter=TABLE_SUFFIXES.get(path.suffix.lower(), ",")), [])


def table_modality(path: Path, text_column: str | None = None) -> str:
    """'text' or 'image': a table holds texts when a text column is named or found in its
    header, or when it has no column of image paths; else it lists images."""
    if text_column:
        return "text"
    header = {h.strip().lower() for h in read_header(path)}
    if header & set(TEXT_COLUMNS) or not header & set(PATH_COLUMNS):
        return "text"
    return "image"


def pick_column(path: Path, columns: list[str], given: str | None, candidates: tuple[str, ...], what: str, flag: str, exclude: str | None = None) -> str:
    """The column holding `what`: the one given (`flag`), else the first of `candidates` in the
    header, else the only one left beside `exclude`; or a one-line error naming the columns."""
    if given is not None:
        if given in columns:
            return given
        lower = {c.strip().lower(): c for c in columns}
        if given.strip().lower() in lower:
            return lower[given.strip().lower()]
        raise TransferkitError(f"{path}: no column '{given}' ({flag}); the columns are {columns}")
    lower = {c.strip().lower(): c for c in columns if c != exclude}
    for name in candidates:
        if name in lower:
            return lower[name]
    rest = [c for c in columns if c != exclude]
    if exclude is not None and len(rest) == 1:  # two columns, one recognised: the other is this one
        return rest[0]
    hint = " (a CSV of images needs a 'path' column)" if what == "texts" else ""
    raise TransferkitError(f"{path}: cannot tell which column holds the {what} (columns: {columns}); name it with {flag} NAME{hint}")


def cell_text(v) -> str:
    """A cell as text: JSON numbers 1 and 1.0 are the class '1'; None is ''."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return v if isinstance(v, str) else str(v)
