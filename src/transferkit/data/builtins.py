"""Built-in datasets, read from files that install from the package registries."""
from __future__ import annotations

import gzip
import importlib.util
import os
import re
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import TransferkitError
from .dataset import ImageDataset, content_key

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_DIRS = ["/usr/share/datasets/fashion-mnist"]
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

BUILTINS = {
    "fashion-mnist": "Fashion-MNIST: 70,000 28×28 grayscale clothing images, 10 classes, official 60k/10k split "
    "(Debian package dataset-fashion-mnist, or downloaded when online)",
    "digits": "scikit-learn's 1,797 8×8 handwritten digits, 10 classes (ships with scikit-learn)",
    "cifar10-samples": "20 CIFAR-10 test images from the foolbox package, for smoke runs",
}


def list_datasets() -> dict[str, str]:
    """Built-in dataset names (images, then texts) and what they are."""
    from .text_builtins import TEXT_BUILTINS

    return {**BUILTINS, **TEXT_BUILTINS}


def is_builtin(name: str) -> bool:
    return name in list_datasets()


def load(name: str):
    """An ImageDataset, or a TextDataset for the text built-ins (r8, r52, 20newsgroups, rotten-tomatoes)."""
    from .text_builtins import TEXT_BUILTINS, load_text_builtin

    if name in TEXT_BUILTINS:
        return load_text_builtin(name)
    return {"fashion-mnist": _fashion_mnist, "digits": _digits, "cifar10-samples": _cifar10_samples}[name]()


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
