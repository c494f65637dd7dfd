"""Labelled images from a folder with one sub-folder per class, a folder of train/val/test
folders of those, or a table (CSV/TSV/JSON Lines) of image paths and labels.

What happens with bad data (the README's "What happens with bad data" section is the summary):
- files that are not images, cannot be read or cannot be decoded are skipped and listed
  (`ImageDataset.skipped`, then checks.json and the report); OS metadata (.DS_Store, Thumbs.db,
  desktop.ini, dot-files, __MACOSX/) is ignored and listed separately (`ignored`);
- symlinks are followed (a symlinked folder visited twice is not read twice);
- images in sub-folders of a class folder belong to that class;
- a table whose paths leave its folder (`../`, absolute paths elsewhere) is refused before any
  image is read, unless `data_root` names a folder that holds them.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import TransferkitError
from .dataset import ImageDataset, Skipped, content_key
from .images import IMAGE_EXTENSIONS, ImageDecodeError, open_rgb
from .label_sets import encode, read_label_cells, to_multilabel
from .labels import label_notes, sort_labels
from .layout import LABEL_COLUMNS, PATH_COLUMNS, SPLIT_ALIASES, SPLIT_NAMES, find_column, is_junk
from .tables import cell_text, pick_column, read_table


def load_image_folder(path: Path, check_images: bool = True) -> ImageDataset:
    """A class folder, or a folder of split folders (train/ beside val/ and/or test/)."""
    try:
        subdirs = {p.name.lower(): p for p in _subdirs(path)}
    except PermissionError:
        raise TransferkitError(f"{path}: permission denied; make the folder readable by this user") from None
    split_dirs = {SPLIT_ALIASES[n]: p for n, p in sorted(subdirs.items()) if n in SPLIT_ALIASES}
    if "train" in split_dirs and len(split_dirs) >= 2:
        return _load_split_folder(path, split_dirs, [p for n, p in subdirs.items() if n not in SPLIT_ALIASES], check_images)
    return _load_class_folder(path, check_images)


def folder_holds_images(root: Path) -> bool:
    """Whether any file under `root` has an image extension (even a broken one)."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS for f in filenames):
            return True
    return False


def _subdirs(path: Path, strict: bool = True) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not is_junk(p.name))
    except OSError:
        if strict:
            raise
        return []


def _walk(class_dir: Path, skipped: list[Skipped], ignored: list[Skipped]) -> list[Path]:
    """Image files under `class_dir`, at any depth, symlinks followed, each real folder once."""
    found: list[Path] = []
    seen = {os.path.realpath(class_dir)}

    def onerror(exc: OSError) -> None:
        skipped.append(Skipped(str(exc.filename), f"folder cannot be read ({exc.strerror})"))

    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True, onerror=onerror):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if is_junk(d):
                ignored.append(Skipped(full, "OS metadata / hidden folder"))
                continue
            real = os.path.realpath(full)
            if real in seen:
                ignored.append(Skipped(full, f"symlink to a folder already read ({real})"))
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            p = Path(dirpath) / f
            if is_junk(f):
                ignored.append(Skipped(str(p), "OS metadata / hidden file"))
            elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(Skipped(str(p), f"not an image file extension ({p.suffix or 'none'})"))
            else:
                found.append(p)
    return sorted(found, key=str)


def _stray_files(root: Path, skipped: list[Skipped], ignored: list[Skipped]) -> None:
    """Files directly in the data folder belong to no class: list them, don't guess."""
    for p in sorted(root.iterdir()):
        if p.is_dir():
            continue
        if is_junk(p.name):
            ignored.append(Skipped(str(p), "OS metadata / hidden file"))
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            skipped.append(Skipped(str(p), "image directly in the data folder, not in a class sub-folder (its class is unknown)"))


def _nested_note(root: Path, class_dirs: list[Path], paths: list[Path]) -> list[str]:
    nested = {}
    for p in paths:
        rel = p.relative_to(root).parts
        if len(rel) > 2:
            nested.setdefault(rel[0], set()).add("/".join(rel[:2]))
    return [f"class '{c}': images in {len(s)} sub-folder(s) (e.g. {sorted(s)[0]}/) are counted as '{c}'" for c, s in sorted(nested.items())]


def _load_class_folder(root: Path, check: bool) -> ImageDataset:
    class_dirs = _subdirs(root)
    if not class_dirs:
        raise TransferkitError(f"{root}: no class sub-folders; put each class's images in its own sub-folder (e.g. {root}/cat/*.jpg)")
    names = {d.name.lower() for d in class_dirs}
    if "train" not in names and names & {"test", "val", "valid", "validation"} and all(_subdirs(d, strict=False) for d in class_dirs):
        raise TransferkitError(f"{root}: has {'/, '.join(sorted(names))}/ but no train/ folder; a split layout needs train/<class>/ beside test/ or val/")
    if len(class_dirs) == 1:
        inner = _subdirs(class_dirs[0], strict=False)
        if len(inner) >= 2:
            raise TransferkitError(
                f"{root}: one class folder ('{class_dirs[0].name}') holding sub-folders ({', '.join(p.name for p in inner[:5])}); "
                f"if those are the classes, point transferkit at {class_dirs[0]}"
            )
    skipped: list[Skipped] = []
    ignored: list[Skipped] = []
    _stray_files(root, skipped, ignored)
    paths, labels = [], []
    for ci, d in enumerate(class_dirs):
        for f in _walk(d, skipped, ignored):
            paths.append(f)
            labels.append(ci)
    ds = _build(root.name, [d.name for d in class_dirs], paths, labels, None, skipped, root, check)
    ds.ignored = ignored
    ds.notes += _nested_note(root, class_dirs, paths)
    return ds


def _load_split_folder(root: Path, split_dirs: dict[str, Path], others: list[Path], check: bool) -> ImageDataset:
    splits = [s for s in SPLIT_NAMES if s in split_dirs]
    class_sets = {s: [p.name for p in _subdirs(split_dirs[s])] for s in splits}
    classes = sorted(set().union(*class_sets.values()))
    if not class_sets["train"]:
        raise TransferkitError(f"{split_dirs['train']}: no class sub-folders; put each class's images in {split_dirs['train'].name}/<class>/")
    extra = sorted(set(classes) - set(class_sets["train"]))
    if extra:
        where = ", ".join(f"{split_dirs[s].name}/" for s in splits if set(class_sets[s]) & set(extra))
        raise TransferkitError(f"{root}: classes {extra} appear in {where} but not in {split_dirs['train'].name}/; a model cannot learn them; add training images or remove those folders")
    skipped: list[Skipped] = []
    ignored: list[Skipped] = []
    _stray_files(root, skipped, ignored)
    paths, labels, given = [], [], []
    for s in splits:
        _stray_files(split_dirs[s], skipped, ignored)
        for c in class_sets[s]:
            for f in _walk(split_dirs[s] / c, skipped, ignored):
                paths.append(f)
                labels.append(classes.index(c))
                given.append(s)
    ds = _build(root.name, classes, paths, labels, given, skipped, root, check)
    ds.ignored = ignored
    missing = {split_dirs[s].name: sorted(set(class_sets["train"]) - set(class_sets[s])) for s in splits if s != "train"}
    ds.notes = [f"{s}/ has no folder for class(es) {m}" for s, m in missing.items() if m]
    if others:
        ds.notes.append(f"sub-folders other than train/val/test are ignored: {', '.join(p.name for p in others)}")
    return ds


# ---------------------------------------------------------------------------------------- CSV


def within(root: Path, listed: str) -> Path | None:
    """The file `listed` (relative to `root`, or absolute) if it stays inside `root`, else None.

    The check is on the path as written (`..` collapsed), not on symlinks: a symlink inside the
    root was put there by whoever owns the folder, and is followed.
    """
    base = os.path.abspath(root)
    full = os.path.normpath(os.path.join(base, listed))
    try:
        inside = os.path.commonpath([base, full]) == base
    except ValueError:  # different drives (Windows)
        inside = False
    return Path(full) if inside else None


def load_image_table(csv_path: Path, check: bool = True, data_root: Path | None = None, label_column: str | None = None, multi_label: bool | None = None,
                     label_sep: str | None = None) -> ImageDataset:
    """A table with a path and a label column (`label_column`, or found from the header);
    paths relative to `data_root` (default: the table's folder) and inside it. A label column
    of label sets ('a|b', JSON lists; see data/label_sets.py) gives a multi-label dataset."""
    table = read_table(csv_path)
    header, rows = table.columns, table.rows
    if not rows:
        raise TransferkitError(f"{csv_path}: no rows; expected a header with path,label and one row per image")
    path_col = find_column(header, PATH_COLUMNS)
    label_col = pick_column(csv_path, header, label_column, LABEL_COLUMNS, "labels", "--label-column") if label_column else find_column(header, LABEL_COLUMNS)
    if path_col is None or label_col is None:
        raise TransferkitError(f"{csv_path}: needs a 'path' and a 'label' column; found {header}")
    if data_root is not None and not data_root.is_dir():
        raise TransferkitError(f"--data-root {data_root}: no such folder")
    root = Path(os.path.abspath(data_root or csv_path.parent))
    skipped: list[Skipped] = []
    paths, names, outside = [], [], []
    first_line: dict[tuple[str, str], int] = {}
    sets = read_label_cells([row.get(label_col) for _, row in rows], multi_label, label_sep, csv_path)
    for j, (n, row) in enumerate(rows):
        p = cell_text(row.get(path_col)).strip()
        label = encode(sets[j]) if sets is not None else cell_text(row.get(label_col)).strip()
        if not p or not label:
            skipped.append(Skipped(f"{csv_path}:{n}", "blank " + ("path" if not p else "label")))
            continue
        full = within(root, p)
        if full is None:
            outside.append((n, p))
            continue
        if (str(full), label) in first_line:
            skipped.append(Skipped(f"{csv_path}:{n}", f"duplicate of line {first_line[(str(full), label)]}"))
            continue
        first_line[(str(full), label)] = n
        paths.append(full)
        names.append(label)
    if outside:
        n, p = outside[0]
        more = f" (and {len(outside) - 1} more row(s))" if len(outside) > 1 else ""
        raise TransferkitError(
            f"{csv_path}: line {n}: '{p}' is outside {root}{more}; paths in a CSV must stay inside "
            + ("--data-root" if data_root else "the CSV's folder")
            + "; pass --data-root DIR (a folder that holds them) to allow it"
        )
    classes = sort_labels(names)
    index = {c: i for i, c in enumerate(classes)}
    ds = _build(csv_path.stem, classes, paths, [index[x] for x in names], None, skipped, root, check)
    ds.notes += label_notes(ds.classes)
    return to_multilabel(ds) if sets is not None else ds


# ------------------------------------------------------------------------------- reading files


def _read_and_check(path: Path, check: bool) -> tuple[str | None, str | None]:
    """Return (content key, error) for one file."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return None, "is a folder, not an image file"
    except PermissionError:
        return None, "permission denied (the file is not readable by this user)"
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
        n_txt = sum(1 for s in skipped if str(s.item).lower().endswith(".txt"))
        hint = f"; {n_txt} .txt files were skipped: a folder is read as texts only when it holds no image files, so remove or move those" if n_txt else ""
        raise TransferkitError(f"{root}: no readable images found" + (f" ({len(skipped)} files skipped, e.g. {skipped[0].item}: {skipped[0].reason})" if skipped else "") + hint)
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
