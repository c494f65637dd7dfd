"""export / serve / predict_files on a run trained on texts: refused with one clear line (text
runs predict through `transferkit predict RUN --text` / Run.predict), nothing written."""
import subprocess
import sys

import pytest

import transferkit as tk
from textdata import make_texts, write_csv


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tfidf run (no encoder download, a second to train): a complete run folder of kind text."""
    base = tmp_path_factory.mktemp("text-run")
    data = write_csv(base / "texts.csv", make_texts(20))
    tk.train(str(data), strategy="tfidf", out=str(base / "run"), cache_dir=str(base / "cache"))
    run = tk.load_run(base / "run")
    assert run.kind == "text" and run.predict(["goal match team player league"])[0]["labels"][0] == "sport"
    return base / "run"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "transferkit", *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [["export", "--format", "torchscript"], ["serve", "--port", "1"]])
def test_export_and_serve_refuse_a_text_run_in_one_line(text_run, command):
    r = _cli(command[0], text_run, *command[1:])
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "trained on texts" in err and f"{command[0]} takes image runs only" in err and "--text" in err
    assert not (text_run / "export").exists()


def test_api_refuses_a_text_run_before_touching_anything(text_run, tmp_path):
    (tmp_path / "a.txt").write_text("rain storm wind")
    with pytest.raises(tk.TransferkitError, match="trained on texts; export takes image runs only"):
        tk.export(text_run, "onnx", tmp_path / "m.onnx")
    with pytest.raises(tk.TransferkitError, match="trained on texts; predict_files takes image runs only"):
        tk.predict_files(text_run, [tmp_path / "a.txt"], tmp_path / "out.csv")
    from transferkit.server import create_app

    with pytest.raises(tk.TransferkitError, match="trained on texts; serve takes image runs only"):
        create_app(text_run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and not (text_run / "export").exists()
    # the way that does work for texts
    assert tk.load_run(text_run).predict([tmp_path / "a.txt"])[0]["labels"][0] == "weather"
