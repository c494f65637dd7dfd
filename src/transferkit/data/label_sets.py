"""Label sets in tables: whether a label column holds several labels per item (the data's shape,
`--multi-label` or `--label-sep`), and a loaded dataset's label sets as its 0/1 matrix `Y`.

The table loaders stay single-label code: for multi-label data each cell is handed to them as
its label set encoded as one JSON string (`encode`), which is never blank (an item without labels
is '[]', kept), and `to_multilabel` turns the loaded dataset's classes back into label sets.
So skipping (blank paths or texts, duplicates, unreadable files) happens in one place."""
from __future__ import annotations

import json

import numpy as np

from ..errors import TransferkitError
from ..log import log
from .labels import label_notes
from .multilabel import label_matrix, looks_multilabel, parse_label_cells


def read_label_cells(cells: list, multi_label: bool | None, label_sep: str | None, where) -> list[list[str]] | None:
    """The label set of each cell, or None when the column holds one label per item.

    `multi_label` True / `label_sep` given: label sets; False: single labels; None: the data's
    shape decides (data/multilabel.py `looks_multilabel`), and a log line says which and why."""
    if multi_label is False:
        return None
    if multi_label is None and label_sep is None:
        ok, why = looks_multilabel(cells)
        if not ok:
            return None
        how = f"{why}; decided from the data (--no-multi-label reads each cell as one label)"
    else:
        how = "--label-sep given" if label_sep else "--multi-label given"
    sets, _, notes = parse_label_cells(cells, label_sep)
    log(f"{where}: multi-label data, several labels per item ({how}); " + "; ".join(notes))
    if not any(sets):
        raise TransferkitError(f"{where}: no item has a label; fill the label column (labels joined by '|', or JSON lists)")
    return sets


def encode(label_set: list[str]) -> str:
    """One label set as the single 'label' a loader keeps (sorted: the same set, the same string)."""
    return json.dumps(sorted(label_set), ensure_ascii=False)


def primary_labels(Y: np.ndarray) -> np.ndarray:
    """(N,) int64: each item's most frequent label (over the data set), -1 for an item with none."""
    freq = Y.sum(0).astype(np.float64) + 1.0
    score = Y * freq[None, :]
    return np.where(Y.any(1), score.argmax(1), -1).astype(np.int64)


def to_multilabel(ds):
    """In place: a dataset whose classes are `encode`d label sets -> classes = the labels, `Y`."""
    sets = [json.loads(ds.classes[int(c)]) for c in ds.labels]
    old = set(label_notes(ds.classes))
    Y, classes = label_matrix(sets)
    ds.Y, ds.classes, ds.labels = Y, classes, primary_labels(Y)
    ds.notes = [n for n in ds.notes if n not in old] + label_notes(classes)
    return ds
