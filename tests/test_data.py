import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit as tk

from conftest import make_image, write_class_folder


def test_class_folder_loads_every_image(tiny_folder):
    ds = tk.load_dataset(tiny_folder)
    assert ds.classes == ["blue", "green", "red"]
    assert ds.class_counts() == {"blue": 24, "green": 24, "red": 24}
    assert len(set(ds.keys)) == 72


def test_split_is_stratified_deterministic_and_stable(tmp_path):
    root = write_class_folder(tmp_path / "d", per_class=120)
    ds = tk.load_dataset(root)
    a, b = tk.make_splits(ds, seed=3), tk.make_splits(ds, seed=3)
    assert a.as_dict() == b.as_dict()
    every = np.concatenate([a.train, a.val, a.test])
    assert sorted(every.tolist()) == list(range(len(ds)))  # each item in exactly one split
    for c in range(3):
        n_test = int((ds.labels[a.test] == c).sum())
        assert 6 <= n_test <= 32  # 15% of 120 = 18, binomial spread
    assert tk.make_splits(ds, seed=4).as_dict() != a.as_dict()
    before = {ds.paths[i]: name for name in ("train", "val", "test") for i in getattr(a, name)}
    # add images: the ones already assigned keep their split
    rng = np.random.default_rng(99)
    for i in range(30):
        make_image((200, 40, 40), rng).save(root / "red" / f"new_{i}.png")
    ds2 = tk.load_dataset(root)
    s2 = tk.make_splits(ds2, seed=3)
    after = {ds2.paths[i]: name for name in ("train", "val", "test") for i in getattr(s2, name)}
    assert all(after[p] == s for p, s in before.items())


def test_given_train_test_split_is_kept(tmp_path):
    write_class_folder(tmp_path / "d" / "train", per_class=20)
    write_class_folder(tmp_path / "d" / "test", per_class=5, seed=1)
    ds = tk.load_dataset(tmp_path / "d")
    sp = tk.make_splits(ds)
    assert {ds.given_split[i] for i in sp.test} == {"test"} and len(sp.test) == 15
    assert len(sp.val) > 0 and {ds.given_split[i] for i in sp.val} == {"train"}


def test_csv_source(tmp_path, tiny_folder):
    rows = ["path,label"] + [f"photos/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(tiny_folder.rglob("*.png"))]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    ds = tk.load_dataset(tmp_path / "data.csv")
    assert len(ds) == 72 and ds.classes == ["blue", "green", "red"]


def test_corrupt_and_foreign_files_are_listed_and_skipped(tiny_folder):
    (tiny_folder / "red" / "empty.jpg").write_bytes(b"")
    good = (tiny_folder / "red" / "red_000.png").read_bytes()
    (tiny_folder / "red" / "truncated.png").write_bytes(good[: len(good) // 3])
    (tiny_folder / "red" / "notes.txt").write_text("hello")
    (tiny_folder / "red" / ".DS_Store").write_bytes(b"\0\0")
    ds = tk.load_dataset(tiny_folder)
    assert len(ds) == 72
    reasons = {s.item.split("/")[-1]: s.reason for s in ds.skipped}
    assert set(reasons) == {"empty.jpg", "truncated.png", "notes.txt"}
    assert "0 bytes" in reasons["empty.jpg"]
    checks = tk.check_dataset(ds)
    assert any("3 file(s) or row(s) skipped" in w for w in checks.warnings)
    assert [s.item.split("/")[-1] for s in ds.ignored] == [".DS_Store"]


def test_duplicates_contradictions_and_leakage_are_reported(tmp_path):
    write_class_folder(tmp_path / "d" / "train", per_class=20)
    write_class_folder(tmp_path / "d" / "test", per_class=5, seed=1)
    shutil.copy(tmp_path / "d" / "train" / "red" / "red_000.png", tmp_path / "d" / "train" / "blue" / "copy.png")
    shutil.copy(tmp_path / "d" / "train" / "green" / "green_001.png", tmp_path / "d" / "test" / "green" / "leak.png")
    ds = tk.load_dataset(tmp_path / "d")
    res = tk.check_dataset(ds, tk.make_splits(ds))
    assert len(res.contradictions) == 1 and res.contradictions[0]["labels"] == ["blue", "red"]
    assert len(res.leakage) == 1 and "test" in res.leakage[0]["splits"]
    assert any("leakage" in w for w in res.warnings) and any("contradictory" in w for w in res.warnings)


def test_small_and_imbalanced_classes_warn(tmp_path):
    write_class_folder(tmp_path / "d", per_class=3, classes={"a": (200, 0, 0)})
    write_class_folder(tmp_path / "d", per_class=40, classes={"b": (0, 0, 200)}, seed=2)
    ds = tk.load_dataset(tmp_path / "d")
    sp = tk.make_splits(ds)
    assert (ds.labels[sp.test] == 0).sum() >= 1 and (ds.labels[sp.val] == 0).sum() >= 1  # tiny class still in each split
    warnings = tk.check_dataset(ds, sp).warnings
    assert any("'a' has only 3 images" in w for w in warnings)
    assert any("imbalanced 13:1" in w for w in warnings)


def test_one_class_is_an_error(tmp_path):
    write_class_folder(tmp_path / "d", per_class=5, classes={"only": (1, 2, 3)})
    with pytest.raises(tk.TransferkitError, match="at least 2 classes"):
        tk.check_dataset(tk.load_dataset(tmp_path / "d"))


def test_missing_source_and_flat_folder_errors(tmp_path):
    with pytest.raises(tk.TransferkitError, match="no such folder"):
        tk.load_dataset(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(tk.TransferkitError, match="no class sub-folders"):
        tk.load_dataset(tmp_path / "flat")


def test_bad_split_fractions():
    ds = tk.load_dataset("digits")
    with pytest.raises(tk.TransferkitError, match="between 0 and 1"):
        tk.make_splits(ds, val_size=1.5)


def test_builtin_datasets():
    assert {"fashion-mnist", "digits", "cifar10-samples"} <= set(tk.list_datasets())
    digits = tk.load_dataset("digits")
    assert len(digits) == 1797 and digits.load(0).size == (8, 8)
    samples = tk.load_dataset("cifar10-samples")
    assert len(samples) == 20 and samples.load(0).mode == "RGB" and samples.load(0).size == (32, 32)


# where Debian's dataset-fashion-mnist puts its files (`make setup` installs it): named here, not
# taken from the loader, so a loader that stops finding them fails this test instead of skipping it
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_GZ = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_fashion_mnist_official_split():
    if all((DEBIAN_FASHION / f).is_file() for f in FASHION_GZ):
        ds = tk.load_dataset("fashion-mnist")  # installed: it must load, whatever the loader's error would say
    else:
        try:
            ds = tk.load_dataset("fashion-mnist")  # online, it downloads
        except tk.TransferkitError as exc:  # offline and not installed: the error says how to get it
            assert "apt-get install dataset-fashion-mnist" in str(exc)
            pytest.skip(f"dataset-fashion-mnist not installed ({DEBIAN_FASHION} absent; make setup installs it)")
    assert len(ds) == 70000 and ds.given_split.count("test") == 10000
    assert np.bincount(ds.labels).tolist() == [7000] * 10
    sp = tk.make_splits(ds)
    assert len(sp.test) == 10000 and len(sp.train) + len(sp.val) == 60000
