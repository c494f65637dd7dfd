"""Load a labelled image dataset from a folder, a split folder, a CSV or a built-in name."""
from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import TransferkitError
from . import builtins, texts
from .dataset import ImageDataset, ItemDataset, Skipped, content_key
from .images import IMAGE_EXTENSIONS, ImageDecodeError, open_rgb

SPLIT_NAMES = ("train", "val", "test")
_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}


def load_dataset(source: str | os.PathLike, *, check_images: bool = True, text_column: str | None = None, label_column: str | None = None) -> ItemDataset:
    """Load labelled images or texts from `source`.

    Images: a folder with one sub-folder per class; a folder with `train/` and `test/`
    (optionally `val/`) sub-folders, each with one sub-folder per class, whose split is kept;
    a CSV file with `path,label` columns (paths relative to the CSV).
    Texts (a `TextDataset`): a CSV, TSV or JSON Lines file with a text and a label column
    (`text_column` / `label_column`, or found from the header); the same folder layouts with
    .txt files. Or a built-in dataset name (see `list_datasets()`).
    """
    text = str(source)
    if builtins.is_builtin(text):
        return builtins.load(text)
    path = Path(source).expanduser()
    if path.is_file() and (path.suffix.lower() in texts.JSONL_SUFFIXES or (path.suffix.lower() in texts.TABLE_SUFFIXES and texts.is_text_table(path, text_column))):
        return texts.load_text_table(path, text_column, label_column)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        return _load_csv(path, check_images)
    if path.is_dir() and texts.folder_holds_texts(path):
        return texts.load_text_folder(path)
    if path.is_dir():
        subdirs = {p.name.lower(): p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if "train" in subdirs and "test" in subdirs:
            return _load_split_folder(path, subdirs, check_images)
        return _load_class_folder(path, check_images)
    if path.exists():
        raise TransferkitError(f"{path}: not a folder, .csv, .tsv or .jsonl file; point at a folder with one sub-folder per class, a CSV with path,label columns, or a CSV/TSV/JSON Lines file of texts with text,label columns")
    names = ", ".join(builtins.list_datasets())
    raise TransferkitError(f"{text}: no such folder or file, and not a built-in dataset ({names})")


def _class_files(class_dir: Path, skipped: list[Skipped]) -> list[Path]:
    files = []
    for p in sorted(class_dir.rglob("*")):
        if p.is_dir():
            continue
        if p.name.lower() in _JUNK or p.name.startswith("."):
            continue  # OS metadata files, not data; not worth a warning
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(Skipped(str(p), f"not an image file extension ({p.suffix or 'none'})"))
            continue
        files.append(p)
    return files


def _load_class_folder(root: Path, check: bool) -> ImageDataset:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise TransferkitError(f"{root}: no class sub-folders; put each class's images in its own sub-folder (e.g. {root}/cat/*.jpg)")
    skipped: list[Skipped] = []
    paths, labels = [], []
    for ci, d in enumerate(class_dirs):
        for f in _class_files(d, skipped):
            paths.append(f)
            labels.append(ci)
    return _build(root.name, [d.name for d in class_dirs], paths, labels, None, skipped, root, check)


def _load_split_folder(root: Path, subdirs: dict[str, Path], check: bool) -> ImageDataset:
    splits = [s for s in SPLIT_NAMES if s in subdirs]
    class_sets = {s: sorted(p.name for p in subdirs[s].iterdir() if p.is_dir() and not p.name.startswith(".")) for s in splits}
    classes = sorted(set().union(*class_sets.values()))
    if not class_sets["train"]:
        raise TransferkitError(f"{subdirs['train']}: no class sub-folders; put each class's images in train/<class>/")
    missing = {s: sorted(set(class_sets["train"]) - set(c)) for s, c in class_sets.items() if s != "train"}
    extra = sorted(set(classes) - set(class_sets["train"]))
    if extra:
        raise TransferkitError(f"{root}: classes {extra} appear in val/ or test/ but not in train/; a model cannot learn them; add training images or remove those folders")
    skipped: list[Skipped] = []
    paths, labels, given = [], [], []
    for s in splits:
        for c in class_sets[s]:
            for f in _class_files(subdirs[s] / c, skipped):
                paths.append(f)
                labels.append(classes.index(c))
                given.append(s)
    ds = _build(root.name, classes, paths, labels, given, skipped, root, check)
    ds.notes = [f"{s}/ has no images of {m}" for s, m in missing.items() if m]
    return ds


def _load_csv(csv_path: Path, check: bool) -> ImageDataset:
    delimiter = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh, delimiter=delimiter))
    except UnicodeDecodeError as exc:
        raise TransferkitError(f"{csv_path}: not UTF-8 text ({exc}); save it as UTF-8") from None
    if not rows:
        raise TransferkitError(f"{csv_path}: no rows; expected a header with path,label and one row per image")
    header = {h.strip().lower(): h for h in rows[0].keys() if h}
    path_col = next((header[h] for h in ("path", "file", "filename", "image") if h in header), None)
    label_col = next((header[h] for h in ("label", "class", "category", "target") if h in header), None)
    if path_col is None or label_col is None:
        raise TransferkitError(f"{csv_path}: needs a 'path' and a 'label' column; found {list(rows[0].keys())}")
    skipped: list[Skipped] = []
    paths, names = [], []
    base = csv_path.parent
    for n, row in enumerate(rows, start=2):
        p, label = (row.get(path_col) or "").strip(), (row.get(label_col) or "").strip()
        if not p or not label:
            skipped.append(Skipped(f"{csv_path}:{n}", "blank path or label"))
            continue
        paths.append((base / p) if not os.path.isabs(p) else Path(p))
        names.append(label)
    classes = sorted(set(names))
    labels = [classes.index(x) for x in names]
    return _build(csv_path.stem, classes, paths, labels, None, skipped, base, check)


def _read_and_check(path: Path, check: bool) -> tuple[str | None, str | None]:
    """Return (content key, error) for one file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"
    if not data:
        return None, "empty file (0 bytes)"
    if check:
        try:
            open_rgb(path, size_hint=64)
        except ImageDecodeError as exc:
            return None, str(exc)
    return content_key(data), None


def _build(name, classes, paths, labels, given, skipped, root, check) -> ImageDataset:
    keys: list[str] = []
    ok_paths, ok_labels, ok_given = [], [], []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = pool.map(lambda p: _read_and_check(p, check), paths)
        for i, (key, err) in enumerate(tqdm(results, total=len(paths), desc="reading images", unit="img", leave=False, disable=len(paths) < 2000)):
            if err:
                skipped.append(Skipped(str(paths[i]), err))
                continue
            keys.append(key)
            ok_paths.append(str(paths[i]))
            ok_labels.append(labels[i])
            if given is not None:
                ok_given.append(given[i])
    if not ok_paths:
        raise TransferkitError(f"{root}: no readable images found" + (f" ({len(skipped)} files skipped, e.g. {skipped[0].item}: {skipped[0].reason})" if skipped else ""))
    return ImageDataset(
        name=name,
        classes=list(classes),
        labels=np.asarray(ok_labels, dtype=np.int64),
        keys=keys,
        paths=ok_paths,
        given_split=ok_given if given is not None else None,
        skipped=skipped,
        root=str(root),
    )
