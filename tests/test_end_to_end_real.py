"""End to end with the real offline EfficientNet-Lite0 weights on real images."""
import json
import shutil

import pytest

import transferkit as tk
from conftest import SHARED, foolbox_data, needs_lite0

pytestmark = needs_lite0  # decided from the installed distribution, not from the discovery under test


def test_real_weights_on_real_images(tmp_path):
    d = foolbox_data()
    if d is None:
        pytest.skip("foolbox sample images not installed (make setup installs them)")
    # three kinds of real images that ship with foolbox: CIFAR-10 photos, MNIST digits, Fashion-MNIST
    for kind in ("cifar10", "mnist", "fashionMNIST"):
        (tmp_path / "data" / kind).mkdir(parents=True)
        for f in d.glob(f"{kind}_*.png"):
            shutil.copy(f, tmp_path / "data" / kind / f.name)
    run = tk.train(str(tmp_path / "data"), out=str(tmp_path / "run"), val_size=0.25, test_size=0.25, seed=1)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["timing"]["backbone_runs"] == 60
    assert m["test"]["n"] >= 9 and m["test"]["accuracy"] >= 0.9
    out = run.predict([tmp_path / "data" / "cifar10"])
    assert sum(r["labels"][0] == "cifar10" for r in out) >= 18


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
