"""The modalities: what differs between kinds of items lives in one module each (image.py,
text.py); everything else asks the one for its data. `load_dataset` picks the modality that
claims a source."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import TransferkitError
from .base import InputError, Modality, Preprocessor, Ref, Refused
from .image import ImageModality
from .text import TextModality

MODALITIES: dict[str, Modality] = {"image": ImageModality(), "text": TextModality()}
# data-reading options and the modality they belong to (others are refused for that data)
LOAD_OPTIONS = {"data_root": "image", "text_column": "text", "label_column": None, "multi_label": None, "label_sep": None}  # None: any table


def get(name: str) -> Modality:
    """The modality called `name` ("image", "text"); run folders record it."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise TransferkitError(f"unknown kind of data {name!r} (known: {', '.join(MODALITIES)})") from None


def of(dataset) -> Modality:
    return get(getattr(dataset, "kind", "image"))


def load_dataset(source: str | os.PathLike, *, check_images: bool = True, data_root=None, text_column: str | None = None, label_column: str | None = None,
                 multi_label: bool | None = None, label_sep: str | None = None):
    """Labelled images or texts from `source`: a built-in dataset name (`list_datasets()`), a
    folder (one sub-folder per class, or train/ and test/ and/or val/ folders of those) of
    images or of .txt files, or a table (CSV, TSV, .tab, JSON Lines) with a path or a text
    column and a label column. The data decides which; options that do not apply to it are
    refused in one line. A table's label column may hold label sets ('a|b', JSON lists): a
    multi-label dataset (`ds.multilabel`, its 0/1 matrix `ds.Y`); `multi_label` True forces,
    False refuses that reading, None lets the data decide; `label_sep` names the separator."""
    from ..data import builtins

    options = {"check_images": check_images, "data_root": data_root, "text_column": text_column, "label_column": label_column,
               "multi_label": multi_label, "label_sep": label_sep}
    given = sorted(k for k in LOAD_OPTIONS if options.get(k) not in (None, False, ""))
    text = str(source)
    if builtins.is_builtin(text):
        if given:
            raise TransferkitError(f"--{given[0].replace('_', '-')} applies to tables (CSV/TSV/JSONL) only; {text} is a built-in dataset")
        return builtins.load(text)
    path = Path(source).expanduser()
    if not path.exists():
        names = ", ".join(builtins.list_datasets())
        raise TransferkitError(f"{text}: no such folder or file, and not a built-in dataset ({names})")
    for kind, m in MODALITIES.items():
        if m.claims(path, options):
            for opt in given:
                if path.is_dir():
                    raise TransferkitError(f"--{opt.replace('_', '-')} applies to tables (CSV/TSV/JSONL) only; {text} is a folder")
                if LOAD_OPTIONS[opt] not in (None, kind):
                    raise TransferkitError(f"--{opt.replace('_', '-')} applies to tables of {LOAD_OPTIONS[opt]}s; {text} is a table of {kind}s")
            return m.load(path, options)
    raise TransferkitError(f"{path}: not a folder, .csv, .tsv, .tab or .jsonl file; point at a folder with one sub-folder per class, a CSV with path,label columns, or a CSV/TSV/JSON Lines file of texts with text,label columns")


__all__ = ["InputError", "MODALITIES", "Modality", "Preprocessor", "Ref", "Refused", "get", "load_dataset", "of"]
