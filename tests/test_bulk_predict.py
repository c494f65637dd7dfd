"""predict over many files: same labels from the run folder and the ONNX file, streamed in
order across workers, resumable after an interruption, CSV and Parquet."""
import csv
import shutil
import subprocess
import sys

import pytest

import transferkit as tk
from transferkit.bulk_predict import read_rows
from transferkit.modality.image import image_paths
from transferkit.predictor import Predictor, load_predictor


@pytest.fixture(scope="module")
def inputs(tiny_run, tmp_path_factory):
    """The tiny photos, a CSV listing some of them, and two unreadable files."""
    photos = tiny_run.parent / "photos"
    extra = tmp_path_factory.mktemp("inputs")
    (extra / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (extra / "green").mkdir()
    for p in sorted(photos.glob("green/*.png"))[:5]:  # CSV paths stay inside the CSV's folder
        shutil.copy(p, extra / "green" / p.name)
    (extra / "list.csv").write_text("path\n" + "".join(f"green/{p.name}\n" for p in sorted((extra / "green").iterdir())) + "missing.png\n")
    return [str(photos), str(extra / "broken.jpg"), str(extra / "list.csv")]


def test_run_folder_and_onnx_give_the_same_rows(tiny_run, tiny_onnx, inputs, tmp_path):
    a = tk.predict_files(tiny_run, inputs, tmp_path / "a.csv", top_k=2, batch_size=8, progress=False)
    b = tk.predict_files(tiny_onnx, inputs, tmp_path / "b.parquet", top_k=2, batch_size=8, progress=False)
    assert a["kind"] == "torch" and b["kind"] == "onnx"
    ra, rb = read_rows(tmp_path / "a.csv"), read_rows(tmp_path / "b.parquet")
    assert len(ra) == len(rb) == a["rows"] == 72 + 1 + 6
    assert [r["path"] for r in ra] == [r["path"] for r in rb] == image_paths(inputs)
    assert [r["label1"] for r in ra] == [r["label1"] for r in rb]
    for x, y in zip(ra, rb):
        if not x["error"]:
            assert abs(float(x["prob1"]) - y["prob1"]) < 1e-4 and x["label2"] == y["label2"]
    errors = {r["path"].rsplit("/", 1)[-1]: r["error"] for r in ra if r["error"]}
    assert set(errors) == {"broken.jpg", "missing.png"} and "file not found" in errors["missing.png"]
    # the colour classes are easy: the labels are right, not just equal
    by_class = [(r["path"].split("/")[-2], r["label1"]) for r in ra if "/photos/" in r["path"]]
    assert sum(c == lab for c, lab in by_class) >= 0.9 * len(by_class)
    assert not list(tmp_path.glob("*.partial*"))


def test_order_is_kept_with_several_decoding_workers(tiny_onnx, inputs, tmp_path):
    one = tk.predict_files(tiny_onnx, inputs, tmp_path / "w0.csv", batch_size=5, workers=0, progress=False)
    three = tk.predict_files(tiny_onnx, inputs, tmp_path / "w2.csv", batch_size=5, workers=2, progress=False)
    assert three["workers"] == 2 and one["rows"] == three["rows"]
    assert read_rows(tmp_path / "w0.csv") == read_rows(tmp_path / "w2.csv")


class _Interrupted(Predictor):
    """The real predictor, stopped (like Ctrl-C) on its third batch."""

    def __init__(self, inner):
        super().__init__(inner.source, inner.classes, inner.data_config, inner.modality, inner.preprocessor)
        self.inner, self.calls = inner, 0

    def predict_proba(self, x):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.inner.predict_proba(x)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_interrupted_run_resumes_where_it_stopped(tiny_onnx, inputs, tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    tk.predict_files(tiny_onnx, inputs, full, batch_size=8, progress=False)
    out = tmp_path / f"out{suffix}"
    with pytest.raises(KeyboardInterrupt):
        tk.predict_files(_Interrupted(load_predictor(tiny_onnx)), inputs, out, batch_size=8, workers=1, progress=False)
    journal = tmp_path / f"out{suffix}.partial"
    assert not out.exists() and journal.is_file()
    with open(journal, "a") as fh:  # a kill in the middle of a write leaves half a line
        fh.write("/half/a/li")
    res = tk.predict_files(tiny_onnx, inputs, out, batch_size=8, progress=False)
    assert res["resumed_after"] == 16 and res["new_rows"] == res["rows"] - 16
    assert read_rows(out) == read_rows(full)
    assert not journal.exists()


def test_resume_refuses_changed_inputs_or_settings_unless_restarted(tiny_onnx, inputs, tmp_path):
    out = tmp_path / "o.csv"
    with pytest.raises(KeyboardInterrupt):
        tk.predict_files(_Interrupted(load_predictor(tiny_onnx)), inputs, out, batch_size=8, workers=0, progress=False)
    with pytest.raises(tk.TransferkitError, match="other settings.*--restart"):
        tk.predict_files(tiny_onnx, inputs, out, top_k=2, batch_size=8, progress=False)
    res = tk.predict_files(tiny_onnx, inputs, out, top_k=2, restart=True, progress=False)
    assert res["resumed_after"] == 0 and len(read_rows(out)) == res["rows"]


def test_cli_predict_from_onnx_to_stdout_and_bad_input(tiny_onnx, tiny_run, tmp_path):
    red = str(tiny_run.parent / "photos" / "red")
    r = subprocess.run([sys.executable, "-m", "transferkit", "predict", str(tiny_onnx), red, "--top-k", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert len(rows) == 24 and set(rows[0]) == {"path", "label1", "prob1", "label2", "prob2", "error"}
    assert sum(x["label1"] == "red" for x in rows) >= 20
    r = subprocess.run([sys.executable, "-m", "transferkit", "predict", str(tiny_onnx), str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "m.onnx").write_bytes(b"junk")
    r = subprocess.run([sys.executable, "-m", "transferkit", "predict", str(tmp_path / "m.onnx"), red], capture_output=True, text=True)
    assert r.returncode == 2 and "not a readable ONNX file" in r.stderr and "export it again" in r.stderr
