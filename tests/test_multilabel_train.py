"""Multi-label runs through the one pipeline: label sets recognised in tables of images and texts,
a stable split, every strategy trained on a tiny model (sigmoid outputs, binary cross-entropy),
thresholds chosen on validation only, the same label sets from the run folder, predict --out,
the ONNX export and serve; compare ranks by macro-F1 with a paired test that fits label sets.

Data: 2x2 mosaics of real CIFAR-10 images (foolbox's samples) labelled with the classes they
show, and Reuters R52 texts of 1-3 topics (benchmarks/multilabel_sets.py via tests/mldata.py),
plus a few items with no label at all ("none of these")."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from mldata import sets, text_set
from PIL import Image

import transferkit as tk
from transferkit.data import make_splits
from transferkit.data.multilabel import multilabel_split
from transferkit.errors import TransferkitError
from transferkit.evaluate_multilabel import choose_thresholds

IMAGE_STRATEGIES = ("probe", "head", "partial", "finetune")
TEXT_STRATEGIES = ("probe", "finetune")
NO_LABEL = 4  # items without any label added to each set


def _foolbox_or_skip() -> str:
    try:
        sets().image_pool("foolbox")
    except Exception:  # noqa: BLE001 - the package is not installed here
        pytest.skip("foolbox's CIFAR-10 samples are not installed")
    return "foolbox"


@pytest.fixture(scope="module")
def mosaics(tmp_path_factory) -> Path:
    """60 mosaics (labels.csv: path,labels joined by '|') + NO_LABEL plain images with an empty label."""
    d = tmp_path_factory.mktemp("mosaics")
    rows = sets().build_images(d, n=60, seed=0, source=_foolbox_or_skip())
    for k in range(NO_LABEL):
        Image.new("RGB", (64, 64), (40 * k, 200 - 30 * k, 90)).save(d / f"blank_{k}.png")
    with open(d / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "labels"])
        w.writerows([(p, "|".join(ls)) for p, ls in rows] + [(f"blank_{k}.png", "") for k in range(NO_LABEL)])
    return d / "labels.csv"


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    """90 Reuters texts with 1-3 topics as JSON Lines (labels as JSON lists) + NO_LABEL texts with []."""
    d = tmp_path_factory.mktemp("texts")
    t, ls, _ = text_set(90)
    extra = [f"an unrelated note number {k} about nothing in particular" for k in range(NO_LABEL)]
    with open(d / "topics.jsonl", "w") as fh:
        for text, labels in [*zip(t, ls), *[(x, []) for x in extra]]:
            fh.write(json.dumps({"text": text, "labels": labels}) + "\n")
    return d / "topics.jsonl"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from textdata import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


def _image_options(strategy: str) -> dict:
    o = dict(backbone="test_efficientnet", pretrained=False, device="cpu")
    if strategy == "head":
        return {**o, "epochs": 1}  # augmented images through the frozen body
    if strategy in ("partial", "finetune"):
        return {**o, "epochs": 1, "head_epochs": 1, "augment": "none"}  # warm-up on cached features, then items through the body
    return o


@pytest.fixture(scope="module")
def image_runs(mosaics, cache, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("image-runs")
    runs = {}
    for s in IMAGE_STRATEGIES:
        extra = {} if s == "head" else {"cache_dir": cache}
        runs[s] = tk.train(str(mosaics), strategy=s, out=str(out / s), **_image_options(s), **extra)
    return runs


@pytest.fixture(scope="module")
def text_runs(texts, tiny_bert, cache, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("text-runs")
    opts = {"probe": {}, "finetune": {"epochs": 1, "head_epochs": 2}}
    return {s: tk.train(str(texts), strategy=s, backbone=str(tiny_bert), out=str(out / s), device="cpu", cache_dir=cache, **opts[s]) for s in TEXT_STRATEGIES}


# ------------------------------------------------------------------------------ data
def test_label_sets_are_recognised_from_the_data(mosaics, texts, capsys):
    ds = tk.load_dataset(str(mosaics))
    assert ds.multilabel and ds.Y.shape == (60 + NO_LABEL, len(ds.classes)) and ds.Y.dtype == np.uint8
    rows = list(csv.DictReader(open(mosaics)))
    by_path = {Path(p).name: set(np.asarray(ds.classes)[ds.Y[i] == 1]) for i, p in enumerate(ds.paths)}
    assert all(by_path[r["path"]] == {x for x in r["labels"].split("|") if x} for r in rows)
    assert int((ds.Y.sum(1) == 0).sum()) == NO_LABEL  # items with no label are kept
    assert "multi-label data" in capsys.readouterr().err  # the log line says what the data's shape decided
    tx = tk.load_dataset(str(texts))  # JSON lists in a JSON Lines file
    assert tx.multilabel and int((tx.Y.sum(1) == 0).sum()) == NO_LABEL and tx.Y.sum(1).max() == 3
    assert not tk.load_dataset(str(mosaics), multi_label=False).multilabel  # --no-multi-label: one label per cell


def test_separator_option_and_single_label_tables_unchanged(tmp_path):
    t, ls, _ = text_set(40)
    p = tmp_path / "semi.csv"
    with open(p, "w", newline="") as fh:
        csv.writer(fh).writerows([("text", "label"), *[(x, "/".join(y)) for x, y in zip(t, ls)]])
    assert not tk.load_dataset(str(p)).multilabel  # '/' is no separator by itself: single labels containing '/'
    ds = tk.load_dataset(str(p), label_sep="/")
    assert ds.multilabel and ds.Y.sum(1).max() == max(len(y) for y in ls)
    single = tmp_path / "single.csv"
    with open(single, "w", newline="") as fh:
        csv.writer(fh).writerows([("text", "label"), *[(x, y[0]) for x, y in zip(t, ls)]])
    s = tk.load_dataset(str(single))
    assert s.Y is None and not s.multilabel and s.labels.dtype == np.int64
    with pytest.raises(TransferkitError, match="tables"):
        tk.load_dataset(str(tmp_path), multi_label=True)  # a folder has no label column


def test_split_is_the_stratified_stable_one(texts):
    ds = tk.load_dataset(str(texts))
    sp = make_splits(ds, 0.15, 0.15, 0)
    ref = multilabel_split(ds.Y, ds.keys, 0.15, 0.15, 0)
    assert all(np.array_equal(np.sort(a), b) for a, b in zip(ref, (sp.train, sp.val, sp.test)))
    again = make_splits(tk.load_dataset(str(texts)), 0.15, 0.15, 0)
    assert all(np.array_equal(getattr(sp, k), getattr(again, k)) for k in ("train", "val", "test"))
    assert sorted(np.concatenate([sp.train, sp.val, sp.test]).tolist()) == list(range(len(ds)))


def test_data_checks_name_rare_labels(texts):
    from transferkit.data import check_dataset

    ds = tk.load_dataset(str(texts))
    warnings = check_dataset(ds, make_splits(ds)).warnings
    assert any("fewer than 5 training items" in w for w in warnings) and any("label cardinality" in w for w in warnings)


# ------------------------------------------------------------------------- training
@pytest.mark.parametrize("strategy", IMAGE_STRATEGIES)
def test_every_image_strategy_trains_label_sets(image_runs, strategy):
    run = image_runs[strategy]
    m = run.metrics
    L = len(run.classes)
    for split in ("train", "val", "test"):
        s = m[split]
        assert s["multilabel"] and s["accuracy"] == s["subset_accuracy"] and s["macro_f1"] == s["f1_macro"]
        assert 0 <= s["f1_macro"] <= 1 and 0 <= s["hamming_loss"] <= 1 and set(s["per_label"]) == set(run.classes)
    assert m["test"]["mAP"] is not None and len(run.thresholds) == L
    assert all(m["test"]["per_label"][c]["threshold"] == pytest.approx(t) for c, t in zip(run.classes, run.thresholds))
    assert m["calibration"]["method"] == "none" and "skipped" in m["calibration"]  # softmax-only steps skipped, and said so
    z = np.load(run.dir / "proba.npz")
    assert z["test_proba"].shape[1] == L and not np.allclose(z["test_proba"].sum(1), 1.0)  # sigmoids, not a softmax
    if strategy != "probe":
        hist = list(csv.DictReader(open(run.dir / "history.csv")))
        assert hist and float(hist[0]["train_loss"]) > 0  # binary cross-entropy trained in the loop


@pytest.mark.parametrize("strategy", TEXT_STRATEGIES)
def test_text_strategies_train_label_sets(text_runs, strategy):
    run = text_runs[strategy]
    assert run.metrics["test"]["multilabel"] and len(run.thresholds) == len(run.classes)
    assert (run.dir / "report.html").is_file() and "per-label" in (run.dir / "report.html").read_text()


def test_thresholds_come_from_validation_only(image_runs, mosaics):
    """The saved thresholds are choose_thresholds of the validation labels and probabilities; and
    set_thresholds gives the same ones whatever the test labels and probabilities are."""
    from types import SimpleNamespace

    from transferkit.multilabel_run import set_thresholds

    run = image_runs["probe"]
    ds = tk.load_dataset(str(mosaics))
    sp = make_splits(ds)
    z = np.load(run.dir / "proba.npz")
    assert np.array_equal(z["val_items"], sp.val)
    assert np.allclose(run.thresholds, choose_thresholds(ds.Y[sp.val], z["val_proba"]))

    def chosen(Y, proba):
        ctx = SimpleNamespace(config=SimpleNamespace(threshold="per_label"), dataset=SimpleNamespace(Y=Y, classes=ds.classes), splits=sp)
        trained = SimpleNamespace(model=SimpleNamespace(spec={}), info={}, proba=proba)
        return set_thresholds(ctx, trained)

    rng = np.random.default_rng(0)
    proba = {"val": z["val_proba"], "test": z["test_proba"], "train": np.zeros((len(sp.train), len(ds.classes)))}
    base = chosen(ds.Y, proba)
    Y2 = ds.Y.copy()
    Y2[sp.test] = 1 - Y2[sp.test]  # every test label flipped
    assert np.array_equal(base, chosen(Y2, {**proba, "test": rng.random(proba["test"].shape)}))
    Y3 = ds.Y.copy()
    Y3[sp.val] = 1 - Y3[sp.val]
    assert not np.array_equal(base, chosen(Y3, proba))  # the validation labels do move them


def test_options_that_do_nothing_for_label_sets_are_refused(mosaics, tmp_path):
    for opts, words in (({"calibrate": "temperature"}, "--calibrate"), ({"tta": "flip"}, "--tta"), ({"label_smoothing": 0.1, "epochs": 1}, "--label-smoothing")):
        with pytest.raises(TransferkitError, match=words):
            tk.train(str(mosaics), strategy="head" if "epochs" in opts else "probe", backbone="test_efficientnet", pretrained=False, out=str(tmp_path / "x"), **opts)
    assert not (tmp_path / "x").exists()


def test_threshold_option_is_refused_on_single_label_data(tiny_folder, tmp_path):
    with pytest.raises(TransferkitError, match="--threshold"):
        tk.train(str(tiny_folder), backbone="test_efficientnet", pretrained=False, threshold="global", out=str(tmp_path / "x"))


# ------------------------------------------------------------------ predict, export, serve
def _sets_from_predictions(run) -> dict:
    with open(run.dir / "predictions.csv", newline="") as fh:
        return {r["path"]: [x for x in r["predicted"].split("|") if x] for r in csv.DictReader(fh)}


def test_predict_export_and_serve_give_the_same_label_sets(image_runs, mosaics, tmp_path):
    pytest.importorskip("onnxruntime")
    run = image_runs["probe"]
    evaluated = _sets_from_predictions(run)
    files = [str(mosaics.parent / p) for p in list(evaluated)[:8]]
    rows = tk.predict(run.dir, files, top_k=2)
    assert [set(r["labels"]) for r in rows] == [set(evaluated[Path(f).name]) for f in files]
    assert all(len(r["top_labels"]) == 2 and r["probs"] == sorted(r["probs"], reverse=True) for r in rows)
    # predict --out: a labels column joined by '|' beside one probability column per label
    tk.predict_files(run.dir, files, tmp_path / "out.csv", top_k=2, progress=False)
    out = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [r["labels"].split("|") if r["labels"] else [] for r in out] == [r["labels"] for r in rows]
    assert {f"p_{c}" for c in run.classes} <= set(out[0]) and {"label1", "prob2"} <= set(out[0])
    res = tk.export(run.dir, out=tmp_path / "model.onnx")
    assert res.parity["labels_identical"] and res.metadata["multilabel"] and len(res.metadata["thresholds"]) == len(run.classes)
    assert "threshold" in res.card.read_text()
    onnx_rows = tk.predict(str(res.path), files, top_k=2)
    assert [r["labels"] for r in onnx_rows] == [r["labels"] for r in rows]
    pytest.importorskip("fastapi")
    import requests
    from serving import thread_server

    with thread_server(tk.create_app(str(res.path))) as base:
        got = requests.post(base + "/predict", files=[("files", (Path(f).name, open(f, "rb").read(), "image/png")) for f in files[:4]]).json()
    assert [p["labels"] for p in got["predictions"]] == [r["labels"] for r in rows[:4]]


# ------------------------------------------------------------------------------ compare
def test_paired_permutation_test():
    from transferkit.report.inferences_multilabel import item_f1, paired_permutation

    assert item_f1("a|b", "a") == pytest.approx(2 / 3) and item_f1("", "") == 1.0 and item_f1("a", "") == 0.0
    a = np.linspace(0, 1, 60)
    assert paired_permutation(a, a) == 1.0
    assert paired_permutation(a, a - 0.3) < 0.001
    noise = np.random.default_rng(1).normal(0, 0.3, 60)
    assert paired_permutation(a, a + noise) > 0.05


def test_compare_ranks_label_set_runs_by_macro_f1(image_runs, tmp_path):
    """The comparison page of two multi-label runs: ranked by macro-F1, mAP shown, the paired test named."""
    from transferkit.leaderboard import leaderboard_row, write_leaderboard

    d = tmp_path / "cmp"
    d.mkdir()
    rows = []
    for s in ("probe", "head"):
        import shutil

        shutil.copytree(image_runs[s].dir, d / s)
        run = tk.load_run(d / s)
        rows.append({"name": s, "strategy": s, "backbone": "test_efficientnet", "run_dir": s, "error": "", **leaderboard_row(run.metrics, run.config)})
    write_leaderboard(d, rows)
    page = tk.write_compare_report(d, runs="none").read_text()
    best = max(rows, key=lambda r: r["macro_f1"])
    assert "Sorted by test macro-F1" in page and "paired permutation test" in page and "McNemar" not in page
    assert f"{best['name']} ranks first by test macro-F1" in page and all(r["mAP"] is not None and r["multilabel"] for r in rows)
