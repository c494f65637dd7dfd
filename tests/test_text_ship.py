"""Texts ship like images: a text run exports to ONNX (tokenizer files beside it) and
TorchScript with the same parity check, gets a model card, predicts from the exported file
(streamed, resumable, real Parquet), and is served (`POST /predict` with JSON texts; the
OpenAPI schema says exactly that). Calibrated probabilities agree across all of them. A tf-idf
run predicts and serves from its folder and refuses export in one line."""
import json
import subprocess
import sys

import numpy as np
import pytest
import requests

import transferkit as tk
from transferkit.bulk_predict import read_rows
from transferkit.modality import Ref

from serving import cli_server, thread_server
from textdata import make_texts, make_tiny_bert, write_csv

pytest.importorskip("transformers")

PROBE_TEXTS = ["goal match team player league", "bank market stock price profit", "rain storm wind cloud snow"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    base = tmp_path_factory.mktemp("text-ship")
    data = write_csv(base / "texts.csv", make_texts(30, length=(6, 20)))
    bert = make_tiny_bert(base / "bert")
    run = tk.train(str(data), strategy="finetune", backbone=str(bert), out=str(base / "run"), epochs=2, head_epochs=20, max_length=16, batch_size=16, lr=3e-3)
    onnx = tk.export(run.dir, "onnx")
    tfidf = tk.train(str(data), strategy="tfidf", out=str(base / "tfidf"))
    return {"base": base, "data": data, "run": run, "onnx": onnx, "tfidf": tfidf}


def test_text_run_exports_to_onnx_with_parity_and_a_tokenizer_beside_it(shipped):
    r, run = shipped["onnx"], shipped["run"]
    assert r.path == run.dir / "export" / "model.onnx" and r.path.is_file()
    assert (r.path.parent / "model.tokenizer" / "tokenizer.json").is_file() or (r.path.parent / "model.tokenizer" / "vocab.txt").is_file()
    p = r.parity
    assert p["source"] == "test" and p["n"] == run.metrics["test"]["n"] and p["max_abs_diff"] <= 1e-4 and p["labels_identical"], p
    assert p["accuracy_export"] == pytest.approx(run.metrics["test"]["accuracy"])
    meta = tk.load_predictor(r.path).meta
    assert meta["modality"] == "text" and meta["labels"] == run.classes and meta["tokenizer"] == "model.tokenizer"
    assert meta["temperature"] == pytest.approx(run.metrics["calibration"]["temperature"])
    card = r.card.read_text()
    assert "text classifier" in card and "input_ids" in card and "model.tokenizer" in card and f"T = {meta['temperature']:.3f}" in card


def test_the_onnx_file_predicts_what_the_run_predicts_with_the_same_calibrated_probabilities(shipped, tmp_path):
    run, onnx = shipped["run"], shipped["onnx"].path
    a = run.predict(PROBE_TEXTS, top_k=3)
    b = list(tk.load_predictor(onnx).predict_refs([Ref(f"text[{i}]", t) for i, t in enumerate(PROBE_TEXTS)], top_k=3))
    assert [x["labels"] for x in a] == [x["labels"] for x in b]
    assert np.allclose([x["probs"] for x in a], [x["probs"] for x in b], atol=1e-4)
    assert [x["labels"][0] for x in a] == ["sport", "money", "weather"]
    # the calibrated model is not the raw one: its temperature changes the probabilities
    assert run.metrics["calibration"]["temperature"] != pytest.approx(1.0, abs=1e-3)


def test_torchscript_export_of_a_text_run_passes_parity(shipped, tmp_path):
    r = tk.export(shipped["run"].dir, "torchscript", tmp_path / "m.pt")
    assert r.parity["max_abs_diff"] <= 1e-4 and r.parity["labels_identical"]
    got = list(tk.load_predictor(r.path).predict_refs([Ref("t", PROBE_TEXTS[2])], top_k=1))
    assert got[0]["labels"] == ["weather"]


def test_predict_streams_texts_resumes_and_writes_real_parquet(shipped, tmp_path):
    onnx = shipped["onnx"].path
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(PROBE_TEXTS[0])
    (tmp_path / "docs" / "empty.txt").write_text("  ")
    inputs = [Ref("text[0]", PROBE_TEXTS[1]), str(tmp_path / "docs"), str(shipped["data"])]
    out = tmp_path / "labels.parquet"
    res = tk.predict_files(onnx, inputs, out, top_k=2, progress=False)
    rows = read_rows(out)
    import pyarrow.parquet as pq

    assert pq.read_schema(out).field("prob1").type == "double"  # a real Parquet file, typed columns
    assert res["rows"] == len(rows) == 1 + 2 + 90
    assert rows[0]["path"] == "text[0]" and rows[0]["label1"] == "money"
    by = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by["a.txt"]["label1"] == "sport" and by["empty.txt"]["error"] == "empty text"
    # resume: a journal with the first rows done continues after them, same rows in the end
    journal = tmp_path / "again.csv.partial"
    tk.predict_files(onnx, inputs, tmp_path / "full.csv", progress=False)
    full = (tmp_path / "full.csv").read_text().splitlines()
    settings = {"model": str(onnx.resolve()), "top_k": 1, "inputs": [__import__("transferkit.bulk_predict", fromlist=["_describe"])._describe(i) for i in inputs], "format": "csv"}
    (tmp_path / "again.csv.partial.json").write_text(json.dumps(settings))
    journal.write_text("\n".join(full[:11]) + "\n")
    res = tk.predict_files(onnx, inputs, tmp_path / "again.csv", progress=False)
    assert res["resumed_after"] == 10 and res["new_rows"] == len(full) - 11
    assert (tmp_path / "again.csv").read_text().splitlines() == full


def test_cli_predict_text_model_with_texts_files_and_a_min_confidence(shipped, tmp_path):
    r = subprocess.run([sys.executable, "-m", "transferkit", "predict", str(shipped["onnx"].path), "--text", PROBE_TEXTS[2], "--text", PROBE_TEXTS[0], "--top-k", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("path,label1,prob1,label2,prob2") and lines[1].startswith("text[0],weather,") and lines[2].startswith("text[1],sport,")


def test_text_model_is_served_as_json_and_the_schema_says_so(shipped):
    from transferkit.server import create_app

    run, onnx = shipped["run"], shipped["onnx"].path
    for model in (run.dir, onnx):
        with thread_server(create_app(model, min_confidence=0.999999)) as base:
            h = requests.get(base + "/health").json()
            assert h["modality"] == "text" and h["input_size"] is None
            spec = requests.get(base + "/openapi.json").json()
            assert list(spec["paths"]["/predict"]["post"]["requestBody"]["content"]) == ["application/json"]
            one = requests.post(base + "/predict", json={"text": PROBE_TEXTS[0]})
            many = requests.post(base + "/predict?top_k=2", json={"texts": PROBE_TEXTS})
            assert one.status_code == 200 and many.status_code == 200, (one.text, many.text)
            preds = many.json()["predictions"]
            assert [p["labels"][0] for p in preds] == ["sport", "money", "weather"] and all(len(p["labels"]) == 2 for p in preds)
            assert preds[0]["text"] == PROBE_TEXTS[0] and "filename" not in preds[0]
            assert all(p["uncertain"] for p in preds)  # nothing reaches a 0.999999 confidence
            # the same calibrated probabilities as the run folder
            local = run.predict(PROBE_TEXTS, top_k=2)
            assert np.allclose([p["probs"] for p in preds], [x["probs"] for x in local], atol=1e-4)
            for body, status in (({"txt": "x"}, 422), ({"texts": []}, 422), ({"texts": ["ok", " "]}, 422), ({"texts": ["a"] * 17}, 400), ({"text": 5}, 422)):
                r = requests.post(base + "/predict", json=body)
                assert r.status_code == status and "\n" not in r.json()["detail"], (body, r.status_code, r.text)
            r = requests.post(base + "/predict", files={"files": ("a.png", b"x", "image/png")})
            assert r.status_code == 415 and "classifies texts" in r.json()["detail"]


def test_tfidf_run_predicts_and_serves_from_its_folder_and_refuses_export(shipped, tmp_path, capsys):
    from transferkit import cli
    from transferkit.server import create_app

    tfidf = shipped["tfidf"]
    rc = cli.main(["export", str(tfidf.dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "not a neural network" in err and "serve" in err
    assert not (tfidf.dir / "export").exists()
    with thread_server(create_app(tfidf.dir)) as base:
        preds = requests.post(base + "/predict", json={"texts": PROBE_TEXTS}).json()["predictions"]
        assert [p["labels"][0] for p in preds] == ["sport", "money", "weather"]
    res = tk.predict_files(tfidf.dir, [Ref("t", PROBE_TEXTS[1])], tmp_path / "t.csv", progress=False)
    assert res["rows"] == 1 and read_rows(tmp_path / "t.csv")[0]["label1"] == "money"


def test_image_model_refuses_texts_in_one_line(tiny_run, capsys):
    from transferkit import cli

    rc = cli.main(["predict", str(tiny_run), "--text", "a red photo"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--text is for models trained on texts" in err
