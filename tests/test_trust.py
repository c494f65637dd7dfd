"""Which numbers to trust, end to end: a run calibrates its probabilities on validation and the
saved model, `predict --min-confidence`, `serve` and the exported ONNX file all give the same
calibrated probabilities; the run folder has the label audit and the near-duplicates (planted
copies found, a planted wrong label among the top suspects); `transferkit audit DATA` writes the
same without training; the run page shows and explains it all."""
import json
import shutil

import numpy as np
import pytest
import requests
from PIL import Image

import transferkit as tk
from transferkit.bulk_predict import read_rows

from conftest import TINY, write_class_folder
from serving import thread_server


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Colour classes with one photo filed under the wrong class and two resized, re-encoded copies."""
    root = tmp_path_factory.mktemp("trust")
    photos = write_class_folder(root / "photos", per_class=30)
    shutil.move(str(photos / "red" / "red_007.png"), str(photos / "blue" / "wrong_red_007.png"))
    for name in ("green_003", "blue_011"):
        cls = name.split("_")[0]
        Image.open(photos / cls / f"{name}.png").resize((36, 36)).save(photos / cls / f"{name}_copy.jpg", quality=92)
    run = tk.train(str(photos), out=str(root / "run"), image_size=48, seed=1, **TINY)
    return {"root": root, "photos": photos, "run": run}


def test_the_run_is_calibrated_on_validation_and_reports_it(planted):
    m = planted["run"].metrics
    cal = m["calibration"]
    assert cal["method"] == "temperature" and cal["temperature"] > 0 and cal["bins"] == 15
    for split in ("val", "test"):
        assert {"ece", "brier", "log_loss", "bins"} <= set(cal[split]["after"]) and "before" in cal[split]
    # the temperature lowers the validation log-loss it was fitted on (or leaves it, at T = 1)
    assert cal["val"]["after"]["log_loss"] <= cal["val"]["before"]["log_loss"] + 1e-9
    sel = m["selective"]
    assert sel["target"] == 0.95 and len(sel["curve_test"]["coverage"]) >= 2


def test_predict_serve_and_export_give_the_same_calibrated_probabilities(planted, tmp_path):
    run, photos = planted["run"], planted["photos"]
    files = [str(p) for p in sorted((photos / "green").glob("*.png"))[:6]]
    onnx = tk.export(run.dir, "onnx", tmp_path / "m.onnx").path
    a = tk.predict_files(run.dir, files, tmp_path / "a.csv", top_k=3, progress=False, min_confidence=0.999999)
    b = tk.predict_files(onnx, files, tmp_path / "b.csv", top_k=3, progress=False, min_confidence=0.999999)
    ra, rb = read_rows(tmp_path / "a.csv"), read_rows(tmp_path / "b.csv")
    assert a["rows"] == b["rows"] == 6 and "uncertain" in ra[0]
    pa = np.array([[float(r[f"prob{j}"]) for j in (1, 2, 3)] for r in ra])
    pb = np.array([[float(r[f"prob{j}"]) for j in (1, 2, 3)] for r in rb])
    assert np.allclose(pa, pb, atol=1e-4) and [r["label1"] for r in ra] == [r["label1"] for r in rb]
    assert [r["uncertain"] for r in ra] == [("true" if p < 0.999999 else "false") for p in pa[:, 0]]
    # the calibrated probabilities, not the raw ones: softmax(logits / T) != softmax(logits) when T != 1
    T = run.metrics["calibration"]["temperature"]
    if abs(T - 1) > 1e-3:
        import torch

        model = tk.load_run(run.dir).model
        x = tk.load_run(run.dir).preprocessor.batch([Image.open(f).convert("RGB") for f in files])
        with torch.no_grad():
            raw = (model(x) * model.temperature).softmax(-1).max(1).values.numpy()
        assert not np.allclose(np.sort(raw)[::-1], np.sort(pa[:, 0])[::-1], atol=1e-6)
    from transferkit.server import create_app

    with thread_server(create_app(onnx, min_confidence=0.999999)) as base:
        up = [("files", (f"{i}.png", open(f, "rb").read(), "image/png")) for i, f in enumerate(files)]
        preds = requests.post(base + "/predict?top_k=3", files=up).json()["predictions"]
    assert np.allclose([p["probs"] for p in preds], pa, atol=1e-4)
    assert [p["uncertain"] for p in preds] == [bool(v < 0.999999) for v in pa[:, 0]]


def test_the_run_folder_lists_label_suspects_and_near_duplicates(planted):
    run = planted["run"]
    audit = run.metrics["audit"]
    assert audit["available"] and audit["file"] == "label_issues.csv" and 0 < audit["noise_rate"] < 0.5
    lines = (run.dir / "label_issues.csv").read_text().splitlines()
    assert lines[0] == "path,given_label,suggested_label,score"
    suspects = [line.split(",") for line in lines[1:]]
    # the planted wrong label is among the top suspects (when it landed in train or val), suggested back to red
    splits = json.loads((run.dir / "splits.json").read_text())
    if "blue/wrong_red_007.png" in splits["train"] + splits["val"]:
        top = {s[0]: s for s in suspects[:5]}
        assert "blue/wrong_red_007.png" in top and top["blue/wrong_red_007.png"][2] == "red", suspects[:5]
    near = json.loads((run.dir / "checks.json").read_text())["near_duplicates"]
    assert near["available"] and near["threshold"] == 0.95
    pairs = {frozenset((p["a"], p["b"])) for kind in ("across_splits", "contradictions", "within_class") for p in near[kind]}
    for name in ("green/green_003", "blue/blue_011"):
        assert frozenset((f"{name}.png", f"{name}_copy.jpg")) in pairs, name
    page = (run.dir / "report.html").read_text()
    for fragment in ('id="calibration"', 'id="coverage"', 'id="label-issues"', 'id="near-duplicates"', "Northcutt", "cosine similarity"):
        assert fragment in page, fragment
    assert (run.dir / "plots" / "reliability.png").is_file() and (run.dir / "plots" / "label_suspects.png").is_file()


def test_runs_without_features_say_why_and_no_audit_turns_it_off(planted, tmp_path):
    ft = tk.train(str(planted["photos"]), strategy="head", epochs=1, out=str(tmp_path / "head"), image_size=32, **TINY)
    assert ft.metrics["audit"] is None or not ft.metrics["audit"].get("available", False)
    assert "transferkit audit DATA" in (ft.dir / "report.html").read_text()
    off = tk.train(str(planted["photos"]), audit=False, out=str(tmp_path / "off"), image_size=48, **TINY)
    assert not (off.dir / "label_issues.csv").exists() and "--no-audit" in (off.dir / "report.html").read_text()


def test_audit_command_audits_without_training(planted, tmp_path, capsys):
    from transferkit import cli

    rc = cli.main(["audit", str(planted["photos"]), "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "48", "--seed", "1", "--out", str(tmp_path / "audit")])
    assert rc == 0
    d = tmp_path / "audit"
    assert {"audit.json", "label_issues.csv", "checks.json", "report.html"} <= {p.name for p in d.iterdir()}
    assert not (d / "model.safetensors").exists()
    # the same split and features as the run: the same suspects
    assert (d / "label_issues.csv").read_text() == (planted["run"].dir / "label_issues.csv").read_text()
    assert "Suspected label errors" in (d / "report.html").read_text()
    rc = cli.main(["audit", str(planted["photos"]), "--near-dup-threshold", "2", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "--near-dup-threshold" in capsys.readouterr().err and not (tmp_path / "bad").exists()
