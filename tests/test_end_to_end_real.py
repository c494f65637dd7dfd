"""End to end with the real offline EfficientNet-Lite0 weights on real images."""
import csv
import json
import shutil

import pytest

import transferkit as tk
from conftest import SHARED, fashion_mnist, needs_lite0

pytestmark = needs_lite0  # decided from the installed distribution, not from the discovery under test


UPPER_BODY = {0: "t-shirt", 2: "pullover", 4: "coat", 6: "shirt"}  # Fashion-MNIST's four classes that look alike


def test_imagenet_weights_beat_random_weights_on_a_transfer_task(tmp_path):
    """Four look-alike Fashion-MNIST classes (t-shirt, pullover, coat, shirt), 100 real images
    each: a probe on the real ImageNet weights against the same probe on random weights (the
    control). Colour, size and domain cannot separate them; features learnt on ImageNet do.
    Measured (160 px, split seeds 1/2/3): 0.770/0.825/0.736 with ImageNet weights,
    0.582/0.612/0.566 random; chance 0.25. If the weights silently fail to load, the two tie."""
    images, y = fashion_mnist(3000)
    from PIL import Image

    counts = dict.fromkeys(UPPER_BODY, 0)
    for im, k in zip(images, y):
        if k in UPPER_BODY and counts[k] < 100:
            counts[k] += 1
            (tmp_path / "data" / UPPER_BODY[k]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(tmp_path / "data" / UPPER_BODY[k] / f"{counts[k]:03d}.png")
    acc, runs = {}, {}
    for pretrained in (True, False):
        out = tmp_path / f"run-{pretrained}"
        runs[pretrained] = tk.train(str(tmp_path / "data"), out=str(out), image_size=160, val_size=0.25, test_size=0.3, seed=1, pretrained=pretrained, audit=False)
        acc[pretrained] = json.loads((out / "metrics.json").read_text())["test"]["accuracy"]
    assert acc[True] >= 0.65, acc
    assert acc[True] - acc[False] >= 0.10, f"ImageNet weights no better than random ones: {acc}"
    # predicting the saved run's files again gives the labels its test split was scored with
    with open(tmp_path / "run-True" / "predictions.csv") as fh:
        scored = {r["path"]: r["predicted"] for r in csv.DictReader(fh)}
    again = runs[True].predict([tmp_path / "data" / p for p in scored])
    assert [r["labels"][0] for r in again] == list(scored.values())


def test_real_weights_on_a_few_real_flowers(tmp_path):
    src = SHARED / "flowers5"
    if not src.is_dir():
        pytest.skip(f"{src} not present (the shared photo datasets sit beside the project only on developer/CI machines)")
    for c in sorted(p.name for p in src.iterdir() if p.is_dir()):
        (tmp_path / "f" / c).mkdir(parents=True)
        for f in sorted((src / c).iterdir())[:24]:
            shutil.copy(f, tmp_path / "f" / c / f.name)
    tk.train(str(tmp_path / "f"), out=str(tmp_path / "run"), val_size=0.2, test_size=0.3)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["test"]["accuracy"] >= 0.5  # 5 classes: chance is 0.2; full-data probe reaches ~0.76
