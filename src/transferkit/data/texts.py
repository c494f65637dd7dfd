"""Labelled texts: `TextDataset`, and loading it from CSV / TSV / JSON Lines or class folders of .txt files."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TransferkitError
from .dataset import ItemDataset, Skipped, content_key

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt",)
# Column names tried, in order, when --text-column / --label-column are not given (case-insensitive).
TEXT_COLUMNS = ("text", "sentence", "content", "document", "review", "body", "message", "comment", "tweet", "abstract", "question")
LABEL_COLUMNS = ("label", "class", "category", "target", "sentiment", "labels", "intent", "topic", "y")
PATH_COLUMNS = ("path", "file", "filename", "image")  # a CSV of image paths, not texts
SPLIT_COLUMN_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass
class TextDataset(ItemDataset):
    """Labelled texts; item `i` is ``texts[i]``, found by ``ids[i]`` (``file.csv:row``, ``class/doc.txt``, ``r8/test/00012``)."""

    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    kind: str = "text"

    def item_id(self, i: int) -> str:
        return self.ids[i]

    def text(self, i: int) -> str:
        return self.texts[i]

    def load(self, i: int, size_hint: int | None = None) -> str:  # same call as ImageDataset.load
        return self.texts[i]

    def subset(self, idx) -> "TextDataset":
        idx = np.asarray(idx, dtype=np.int64)
        return TextDataset(
            name=self.name,
            classes=self.classes,
            labels=self.labels[idx],
            keys=[self.keys[i] for i in idx],
            given_split=None if self.given_split is None else [self.given_split[i] for i in idx],
            skipped=self.skipped,
            ignored=self.ignored,
            notes=self.notes,
            root=self.root,
            texts=[self.texts[i] for i in idx],
            ids=[self.ids[i] for i in idx],
        )


def text_key(text: str) -> str:
    """Content key of a text: the hash of its UTF-8 bytes (the cache key and the split's source)."""
    return content_key(text.encode("utf-8"))


def build_text_dataset(name: str, rows: list[tuple[str, str, str, str | None]], skipped: list[Skipped], root=None, classes=None) -> TextDataset:
    """`rows` are (item id, text, label name, given split or None); empty texts and labels are skipped."""
    ok = []
    for item, text, label, split in rows:
        text = (text or "").strip()
        label = (label or "").strip()
        if not text:
            skipped.append(Skipped(item, "empty text"))
        elif not label:
            skipped.append(Skipped(item, "blank label"))
        else:
            ok.append((item, text, label, split))
    if not ok:
        first = f" ({len(skipped)} skipped, e.g. {skipped[0].item}: {skipped[0].reason})" if skipped else ""
        raise TransferkitError(f"{root or name}: no labelled texts found{first}")
    given = [r[3] for r in ok]
    if any(g is None for g in given):
        given = None
    from .sources import _label_notes, _sort_labels  # the image CSVs' rules: 2 before 10, look-alikes noted

    classes = list(classes) if classes else _sort_labels({r[2] for r in ok})
    index = {c: i for i, c in enumerate(classes)}
    return TextDataset(
        name=name,
        classes=classes,
        labels=np.asarray([index[r[2]] for r in ok], dtype=np.int64),
        keys=[text_key(r[1]) for r in ok],
        given_split=given,
        skipped=skipped,
        root=None if root is None else str(root),
        texts=[r[1] for r in ok],
        ids=[r[0] for r in ok],
        notes=_label_notes(classes),
    )


def is_text_table(path: Path, text_column: str | None = None) -> bool:
    """A .csv/.tsv holds texts unless it has an image path column (and no text column)."""
    if path.suffix.lower() in JSONL_SUFFIXES or text_column:
        return True
    header = {h.strip().lower() for h in _read_header(path)}
    return bool(header & set(TEXT_COLUMNS)) or not header & set(PATH_COLUMNS)


def _read_header(path: Path) -> list[str]:
    """The first line's cells (a bad byte further down must not hide the header)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20).decode("utf-8-sig", errors="replace")
    except OSError:
        return []
    return next(csv.reader([first], delimiter=TABLE_SUFFIXES.get(path.suffix.lower(), ",")), [])


def _not_utf8(path: Path) -> TransferkitError:
    """The one-line refusal of a file that is not UTF-8, naming the first bad line and byte."""
    data = path.read_bytes()
    where = "not UTF-8 text"
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        where = f"line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x})"
    return TransferkitError(f"{path}: {where}; save the file as UTF-8 (e.g. Excel: Save As > CSV UTF-8)")


def _pick_column(path: Path, columns: list[str], given: str | None, candidates: tuple[str, ...], what: str, flag: str, exclude: str | None = None) -> str:
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


def load_text_table(path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None) -> TextDataset:
    """Texts and labels from a CSV, TSV or JSON Lines file (one object per line).

    Columns: `text_column` / `label_column`, or the first of TEXT_COLUMNS / LABEL_COLUMNS in the
    header. A `split` column with train/val/test values is kept as the given split.
    """
    path = Path(path)
    records, skipped = _read_records(path)
    if not records:
        raise TransferkitError(f"{path}: no rows; expected a header with text and label columns and one row per text")
    columns = list(dict.fromkeys(c for _, r in records[:1000] for c in r))
    label_col = _pick_column(path, columns, label_column, LABEL_COLUMNS, "labels", "--label-column", exclude=text_column)
    text_col = _pick_column(path, columns, text_column, TEXT_COLUMNS, "texts", "--text-column", exclude=label_col)
    if text_col == label_col:
        raise TransferkitError(f"{path}: the text and label columns are both '{text_col}'; name them with --text-column and --label-column")
    split_col = next((c for c in columns if c.strip().lower() == "split" and c not in (text_col, label_col)), None)
    rows = []
    for item, r in records:
        split = None
        if split_col is not None:
            split = SPLIT_COLUMN_VALUES.get(str(r.get(split_col) or "").strip().lower())
            if split is None:
                skipped.append(Skipped(item, f"split '{r.get(split_col)}' is not train, val or test"))
                continue
        rows.append((item, _as_text(r.get(text_col)), _as_text(r.get(label_col)), split))
    ds = build_text_dataset(path.stem, rows, skipped, root=path.parent)
    if split_col is not None and ds.given_split is not None and "train" not in ds.given_split:
        raise TransferkitError(f"{path}: the '{split_col}' column has no 'train' rows; a model needs training texts")
    if text_column is None or label_column is None:  # a guess from the header: say which columns were taken
        ds.notes.append(f"texts from column '{text_col}', labels from column '{label_col}'" + (f", split from column '{split_col}'" if split_col else "") + " (found from the header; name others with --text-column / --label-column)")
    return ds


def _as_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # a JSON label 1.0 is the class "1"
    return v if isinstance(v, str) else str(v)


def _read_records(path: Path) -> tuple[list[tuple[str, dict]], list[Skipped]]:
    """[(item id 'file:line', {column: value})] and the lines skipped as malformed."""
    skipped: list[Skipped] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            if path.suffix.lower() in JSONL_SUFFIXES:
                out = []
                for n, line in enumerate(fh, start=1):
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
                    out.append((f"{path.name}:{n}", obj))
                return out, skipped
            csv.field_size_limit(2**31 - 1)  # long documents in one cell
            reader = csv.DictReader(fh, delimiter=TABLE_SUFFIXES.get(path.suffix.lower(), ","))
            # the row's first line number: a quoted cell may span several lines
            out, start = [], 2
            for r in reader:
                if any("\0" in v for v in r.values() if isinstance(v, str)):
                    raise TransferkitError(f"{path}: line {start} contains a NUL byte; this is not a text table (a spreadsheet or binary file saved as {path.suffix}?)")
                out.append((f"{path.name}:{start}", {k: v for k, v in r.items() if k is not None}))
                start = reader.line_num + 1
            return out, skipped
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except csv.Error as exc:
        raise TransferkitError(f"{path}: malformed CSV ({exc}); check quoting, or use .tsv for tab-separated files") from None


_JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"}  # OS metadata: ignored, as in image folders
FOLDER_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "testing": "test"}


def folder_holds_texts(root: Path) -> bool:
    """A folder holds texts when it has .txt files and no image file at all.

    Any image (even a broken one) makes it an image folder, whose stray .txt files (notes,
    licences) are skipped and listed; so a text folder is never taken for images or back.
    """
    from .images import IMAGE_EXTENSIONS

    has_txt, seen = False, set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            suffix = os.path.splitext(f)[1].lower()
            if suffix in IMAGE_EXTENSIONS:
                return False
            has_txt = has_txt or suffix in TEXT_SUFFIXES
    return has_txt


def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name.lower() not in ("__macosx",))


def load_text_folder(root: str | os.PathLike) -> TextDataset:
    """One sub-folder per class of .txt files; or train/ and test/ (and/or val/) folders of
    those, whose split is kept (the same layouts, and split folder names, as for images)."""
    root = Path(root)
    subdirs = {p.name.lower(): p for p in _dirs(root)}
    split_dirs = {FOLDER_SPLITS[n]: p for n, p in sorted(subdirs.items()) if n in FOLDER_SPLITS}
    if "train" in split_dirs and len(split_dirs) >= 2:
        bases = [(s, split_dirs[s]) for s in ("train", "val", "test") if s in split_dirs]
    else:
        if split_dirs and "train" not in split_dirs and all(_dirs(d) for d in subdirs.values()):
            raise TransferkitError(f"{root}: has {'/, '.join(sorted(subdirs))}/ but no train/ folder; a split layout needs train/<class>/ beside test/ or val/")
        bases = [(None, root)]
    skipped: list[Skipped] = []
    ignored: list[Skipped] = []
    rows = []
    classes: set[str] = set()
    for split, base in bases:
        for cdir in _dirs(base):
            if split not in (None, "train") and cdir.name not in classes:
                raise TransferkitError(f"{cdir}: class '{cdir.name}' appears in {base.name}/ but not in train/; a model cannot learn it; add training texts or remove the folder")
            classes.add(cdir.name)
            for f in sorted(cdir.rglob("*")):
                if f.is_dir():
                    continue
                item = str(f.relative_to(root))
                if f.name.startswith(".") or f.name.lower() in _JUNK_FILES or any(part.startswith(".") for part in f.relative_to(cdir).parts[:-1]):
                    ignored.append(Skipped(item, "OS metadata / hidden file"))
                    continue
                if f.suffix.lower() not in TEXT_SUFFIXES:
                    skipped.append(Skipped(item, f"not a .txt file ({f.suffix or 'no extension'})"))
                    continue
                try:
                    text = f.read_text(encoding="utf-8-sig")
                except UnicodeDecodeError:
                    skipped.append(Skipped(item, "not UTF-8 text"))
                    continue
                except OSError as exc:
                    skipped.append(Skipped(item, f"cannot read ({exc.strerror or exc})"))
                    continue
                rows.append((item, text, cdir.name, split))
    if not classes:
        raise TransferkitError(f"{root}: no class sub-folders; put each class's .txt files in its own sub-folder (e.g. {root}/sports/*.txt)")
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES:
            skipped.append(Skipped(p.name, "text directly in the data folder, not in a class sub-folder (its class is unknown)"))
    ds = build_text_dataset(root.name, rows, skipped, root=root)
    ds.ignored = ignored
    return ds
