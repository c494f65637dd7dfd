import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import transferkit as tk

from conftest import TINY


def test_train_probe_writes_a_complete_run_folder(tiny_folder, tmp_path):
    run = tk.train(str(tiny_folder), out=str(tmp_path / "run"), image_size=64, **TINY)
    d = tmp_path / "run"
    for f in ("config.json", "splits.json", "labels.json", "model.safetensors", "metrics.json", "predictions.csv", "report.md", "checks.json"):
        assert (d / f).is_file(), f
    m = json.loads((d / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert {"accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix"} <= set(m[split])
    assert {"extract_s", "train_s", "predict_s_per_item"} <= set(m["timing"])
    assert m["model"]["params_trainable"] < m["model"]["params_total"]
    # colour classes are separable even through random conv features
    assert m["test"]["accuracy"] >= 0.8
    assert np.array(m["test"]["confusion_matrix"]).sum() == m["test"]["n"]
    splits = json.loads((d / "splits.json").read_text())
    assert len(splits["train"]) + len(splits["val"]) + len(splits["test"]) == 72
    with open(d / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == m["test"]["n"] and set(rows[0]) == {"path", "true", "predicted", "confidence", "p_true"}
    acc = np.mean([r["true"] == r["predicted"] for r in rows])
    assert acc == pytest.approx(m["test"]["accuracy"])
    report = (d / "report.md").read_text()
    assert "Classification report" in report and "Confusion matrix" in report and "macro avg" in report
    assert run.classes == ["blue", "green", "red"]
    assert not list(tmp_path.glob(".run.partial-*"))


def test_second_identical_run_does_not_run_the_backbone(tiny_folder, tmp_path):
    for name in "ab":
        tk.train(str(tiny_folder), out=str(tmp_path / name), image_size=64, cache_dir=str(tmp_path / "cache"), **TINY)
    a, b = (json.loads((tmp_path / x / "metrics.json").read_text()) for x in "ab")
    assert a["timing"]["backbone_runs"] == 72 and b["timing"]["backbone_runs"] == 0
    assert a["test"] == b["test"]  # same seed, same split, same metrics
    # nor refit the head: the same features and settings give the earlier fit, priced as it cost
    assert a["timing"]["head_cached"] is False and b["timing"]["head_cached"] is True
    assert b["timing"]["head_fit_s"] == a["timing"]["head_fit_s"] and b["model"]["C"] == a["model"]["C"]
    from safetensors.numpy import load_file

    wa, wb = (load_file(tmp_path / x / "model.safetensors") for x in "ab")
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert json.loads((tmp_path / "a" / "splits.json").read_text()) == json.loads((tmp_path / "b" / "splits.json").read_text())
    # the whole photo by default; the backbone's own centre crop is other features (a new cache entry)
    assert tk.load_run(tmp_path / "a").data_config["crop_pct"] == 1.0
    tk.train(str(tiny_folder), out=str(tmp_path / "c"), image_size=64, crop_pct=None, cache_dir=str(tmp_path / "cache"), **TINY)
    c = tk.load_run(tmp_path / "c")
    assert c.data_config["crop_pct"] == tk.create_backbone(TINY["backbone"], pretrained=False).data_config["crop_pct"] < 1.0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["timing"]["backbone_runs"] == 72


def test_mlp_head_and_history(tiny_folder, tmp_path):
    tk.train(str(tiny_folder), out=str(tmp_path / "r"), image_size=64, head="mlp", hidden=64, **TINY)
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["model"]["head"] == "mlp" and m["test"]["accuracy"] >= 0.8
    assert (tmp_path / "r" / "history.csv").read_text().startswith("epoch,train_loss")


def test_predict_matches_evaluation_and_reports_bad_files(tiny_folder, tmp_path):
    run = tk.train(str(tiny_folder), out=str(tmp_path / "r"), image_size=64, **TINY)
    with open(tmp_path / "r" / "predictions.csv") as fh:
        evaluated = {r["path"]: r for r in csv.DictReader(fh)}
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    paths = [str(tiny_folder / p) for p in evaluated] + [str(tmp_path / "junk.jpg")]
    out = run.predict(paths, top_k=2)
    assert len(out) == len(paths)
    for row, (rel, ev) in zip(out, evaluated.items()):
        assert row["labels"][0] == ev["predicted"] and abs(row["probs"][0] - float(ev["confidence"])) < 1e-3
    assert out[-1]["error"] and not out[-1]["labels"]


def test_probe_feature_power_and_refit_reload_and_export(tiny_folder, tmp_path):
    from transferkit.heads import fit_linear_head

    run = tk.train(str(tiny_folder), out=str(tmp_path / "r"), image_size=64, feature_power="sqrt", **TINY)
    mod = run.metrics["model"]
    n = run.metrics["data"]["split_sizes"]
    assert mod["power"] == "sqrt" and mod["refit"]["items"] == n["train"] + n["val"]
    # validation metrics come from the fit on the training split alone, refitted model or not
    plain = tk.train(str(tiny_folder), out=str(tmp_path / "r-norefit"), image_size=64, feature_power="sqrt", refit=False, **TINY)
    assert "refit" not in plain.metrics["model"] and plain.metrics["val"]["accuracy"] == run.metrics["val"]["accuracy"]
    assert plain.metrics["val"]["macro_f1"] == run.metrics["val"]["macro_f1"]
    fresh = tk.load_run(tmp_path / "r")
    assert fresh.model.head.power == 0.5
    with open(tmp_path / "r" / "predictions.csv") as fh:
        evaluated = list(csv.DictReader(fh))
    got = fresh.predict([str(tiny_folder / r["path"]) for r in evaluated])
    assert [g["labels"][0] for g in got] == [r["predicted"] for r in evaluated]
    assert np.allclose([g["probs"][0] for g in got], [float(r["confidence"]) for r in evaluated], atol=1e-4)
    from transferkit.exporter import export

    res = export(tmp_path / "r", format="onnx")  # written only after its parity check on the test images
    assert res.path.is_file() and res.parity["max_abs_diff"] <= 1e-4 and res.parity["labels_identical"]
    with pytest.raises(tk.TransferkitError, match="--feature-power cube: choose one of auto, none, sqrt"):
        tk.train(str(tiny_folder), out=str(tmp_path / "bad"), feature_power="cube", **TINY)
    assert not (tmp_path / "bad").exists()


def test_cli_train_predict_and_errors(tiny_folder, tmp_path):
    env_py = [sys.executable, "-m", "transferkit"]
    r = subprocess.run(env_py + ["train", str(tiny_folder), "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "64", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stderr
    r = subprocess.run(env_py + ["predict", str(tmp_path / "r"), str(tiny_folder / "red"), "--top-k", "2", "--out", str(tmp_path / "p.csv")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 24 and sum(x["label1"] == "red" for x in rows) >= 20
    r = subprocess.run(env_py + ["train", str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and "no such folder" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(env_py + ["train", str(tiny_folder), "--val-size", "1.5"], capture_output=True, text=True)
    assert r.returncode == 2 and "between 0 and 1" in r.stderr
    r = subprocess.run(env_py + ["train", str(tiny_folder), "--strategy", "prob"], capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean probe" in r.stderr


def test_cli_lists(tmp_path):
    r = subprocess.run([sys.executable, "-m", "transferkit", "backbones", "efficientnet_lite*"], capture_output=True, text=True)
    assert r.returncode == 0 and "efficientnet_lite0" in r.stdout and "1280" in r.stdout
    r = subprocess.run([sys.executable, "-m", "transferkit", "datasets"], capture_output=True, text=True)
    assert "fashion-mnist" in r.stdout
