"""Labelled texts from a table (CSV, TSV, .tab, JSON Lines) with a text and a label column,
or a folder with one sub-folder per class of .txt files (or train/ and test/ folders of those)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import TransferkitError
from .dataset import Skipped, TextDataset, text_key
from .images import IMAGE_EXTENSIONS
from .label_sets import encode, read_label_cells, to_multilabel
from .labels import label_notes, sort_labels
from .layout import LABEL_COLUMNS, SPLIT_ALIASES, SPLIT_COLUMN, SPLIT_NAMES, TEXT_COLUMNS, TEXT_SUFFIXES, is_junk
from .tables import cell_text, pick_column, read_table


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
    classes = list(classes) if classes else sort_labels(r[2] for r in ok)
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
        notes=label_notes(classes),
    )


def load_text_table(path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None, multi_label: bool | None = None,
                    label_sep: str | None = None) -> TextDataset:
    """Texts and labels from a CSV, TSV or JSON Lines file (one object per line).

    Columns: `text_column` / `label_column`, or the first of TEXT_COLUMNS / LABEL_COLUMNS in the
    header. A `split` column with train/val/test values is kept as the given split. A label
    column of label sets ('a|b', JSON lists; see data/label_sets.py) gives a multi-label dataset.
    """
    path = Path(path)
    table = read_table(path)
    records, skipped = [(table.row_id(n), r) for n, r in table.rows], table.skipped
    if not records:
        raise TransferkitError(f"{path}: no rows; expected a header with text and label columns and one row per text")
    columns = table.columns
    label_col = pick_column(path, columns, label_column, LABEL_COLUMNS, "labels", "--label-column", exclude=text_column)
    text_col = pick_column(path, columns, text_column, TEXT_COLUMNS, "texts", "--text-column", exclude=label_col)
    if text_col == label_col:
        raise TransferkitError(f"{path}: the text and label columns are both '{text_col}'; name them with --text-column and --label-column")
    split_col = next((c for c in columns if c.strip().lower() == SPLIT_COLUMN and c not in (text_col, label_col)), None)
    rows = []
    for item, r in records:
        split = None
        if split_col is not None:
            split = SPLIT_ALIASES.get(str(r.get(split_col) or "").strip().lower())
            if split is None:
                skipped.append(Skipped(item, f"split '{r.get(split_col)}' is not train, val or test"))
                continue
        rows.append((item, cell_text(r.get(text_col)), r.get(label_col), split))
    sets = read_label_cells([r[2] for r in rows], multi_label, label_sep, path)
    rows = [(i, t, encode(ls) if sets is not None else cell_text(lab), sp) for (i, t, lab, sp), ls in zip(rows, sets or [None] * len(rows))]
    ds = build_text_dataset(path.stem, rows, skipped, root=path.parent)
    if sets is not None:
        to_multilabel(ds)
    if split_col is not None and ds.given_split is not None and "train" not in ds.given_split:
        raise TransferkitError(f"{path}: the '{split_col}' column has no 'train' rows; a model needs training texts")
    if text_column is None or label_column is None:  # a guess from the header: say which columns were taken
        ds.notes.append(f"texts from column '{text_col}', labels from column '{label_col}'" + (f", split from column '{split_col}'" if split_col else "") + " (found from the header; name others with --text-column / --label-column)")
    return ds


def folder_holds_texts(root: Path) -> bool:
    """A folder holds texts when it has .txt files and no image file at all.

    Any image (even a broken one) makes it an image folder, whose stray .txt files (notes,
    licences) are skipped and listed; so a text folder is never taken for images or back.
    """
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
    return sorted(p for p in path.iterdir() if p.is_dir() and not is_junk(p.name))


def load_text_folder(root: str | os.PathLike) -> TextDataset:
    """One sub-folder per class of .txt files; or train/ and test/ (and/or val/) folders of
    those, whose split is kept (the same layouts, and split folder names, as for images)."""
    root = Path(root)
    subdirs = {p.name.lower(): p for p in _dirs(root)}
    split_dirs = {SPLIT_ALIASES[n]: p for n, p in sorted(subdirs.items()) if n in SPLIT_ALIASES}
    if "train" in split_dirs and len(split_dirs) >= 2:
        bases = [(s, split_dirs[s]) for s in SPLIT_NAMES if s in split_dirs]
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
                if is_junk(f.name) or any(part.startswith(".") for part in f.relative_to(cdir).parts[:-1]):
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
