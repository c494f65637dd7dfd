"""Temp files of killed writers: named after their writer, cleared once it is gone."""
import os
import subprocess
import sys

from transferkit import io as tkio


def test_remove_dead_temps_clears_only_dead_writers(tmp_path):
    target = tmp_path / "model.onnx"
    tag = tkio._writer_tag().rsplit("_", 1)[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    files = {
        "dead": tmp_path / f".model.onnx.{tag}_{dead}.abc123.tmp",
        "alive": tmp_path / f".model.onnx.{tag}_{os.getppid()}.abc123.tmp",
        "mine": tmp_path / f".model.onnx.{tag}_{os.getpid()}.abc123.tmp",
        "other host": tmp_path / f".model.onnx.elsewhere_{dead}.abc123.tmp",
        "other file": tmp_path / f".model.int8.onnx.{tag}_{dead}.abc123.tmp",
    }
    for f in files.values():
        f.write_bytes(b"x")
    assert tkio.remove_dead_temps(target) == 1
    assert {k for k, f in files.items() if f.exists()} == {"alive", "mine", "other host", "other file"}


def test_atomic_path_names_its_temp_after_the_writer(tmp_path):
    with tkio.atomic_path(tmp_path / "f.json") as tmp:
        assert tmp.name.startswith(f".f.json.{tkio._writer_tag()}.") and tmp.name.endswith(".tmp")
        tmp.write_text("{}")
    assert (tmp_path / "f.json").read_text() == "{}" and not list(tmp_path.glob(".*.tmp"))
