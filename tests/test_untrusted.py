"""Untrusted files: nothing from a file is executed, and neither a run folder nor a CSV can
make transferkit read or write outside the places the user named."""
import ast
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import transferkit as tk
from transferkit import cli

from conftest import TINY, write_class_folder
from fileaudit import FileAudit
from test_bad_data import assert_one_line_error, run_cli

SRC = Path(tk.__file__).parent


class Evil:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("trusted")
    root = write_class_folder(base / "photos", per_class=8)
    tk.train(str(root), out=str(base / "run"), image_size=32, **TINY)
    return base / "run", root


def _copy_run(trained_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    return run


def test_pickles_in_a_run_folder_never_execute(trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path)
    marker = tmp_path / "pwned"
    for name in ("checkpoint.pt", "optimizer.pt", "model.pt", "head.pth", "features.npy"):
        torch.save({"state_dict": Evil(marker)}, run / name)  # planted beside the real files
    out = tk.load_run(run).predict([trained_run[1] / "red"], top_k=1)
    assert len(out) == 8 and all(r["labels"] for r in out)
    torch.save({"state_dict": Evil(marker)}, run / "model.safetensors")  # and in place of the weights
    assert_one_line_error(*run_cli(capsys, "predict", run, trained_run[1] / "red"), "not a valid safetensors file")
    assert not marker.exists()


def test_no_unsafe_deserialisation_anywhere_in_the_source():
    """Every torch.load passes weights_only=True; no pickle/marshal/dill/joblib loads, no
    np.load(allow_pickle=True), no yaml.load without SafeLoader, no eval/exec. Checked on the
    syntax tree of every module, so new code (checkpoints, presets) is held to it too."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", getattr(f.value, "attr", "")) if isinstance(f, ast.Attribute) else ""
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if owner == "torch" and name == "load" and not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve") and name in ("load", "loads", "open", "Unpickler"):
                problems.append(f"{where}: {owner}.{name}")
            if name == "load" and owner in ("np", "numpy") and isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value:
                problems.append(f"{where}: np.load(allow_pickle=True)")
            if owner == "yaml" and (name in ("unsafe_load", "full_load") or (name == "load" and "SafeLoader" not in ast.unparse(node))):
                problems.append(f"{where}: yaml.{name} without SafeLoader")
            if isinstance(f, ast.Name) and f.id in ("eval", "exec"):
                problems.append(f"{where}: {f.id}()")
    assert problems == []


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "config.json").write_text("{not json"), "damaged or not JSON"),
        (lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00garbage"), "damaged or not JSON"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), "expected a JSON dict"),
        (lambda d: (d / "labels.json").write_text('{"classes": "red"}'), "non-empty list of names"),
        (lambda d: _edit(d, "config.json", lambda c: c["extra"].update(data_config={"input_size": [3, 10**9, 10**9]})), "out of range"),
        (lambda d: _edit(d, "config.json", lambda c: c["extra"].update(data_config={"input_size": "big"})), "out of range"),
        (lambda d: _edit(d, "config.json", lambda c: c.update(backbone="hf-hub:attacker/model")), "unknown backbone"),
        (lambda d: _edit(d, "config.json", lambda c: c.update(backbone="vit_huge_patch14_224")), "do not fit a vit_huge_patch14_224"),
        (lambda d: _edit(d, "labels.json", lambda c: c.update(classes=c["classes"] + ["extra"])), "do not fit"),
        (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]), "not a valid safetensors file"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}"), "not a valid safetensors file"),
        (lambda d: (d / "labels.json").unlink(), "not a finished run folder"),
    ],
)
def test_damaged_or_hostile_run_folder_gives_one_line(trained_run, tmp_path, capsys, damage, fragment):
    run = _copy_run(trained_run, tmp_path)
    damage(run)
    assert_one_line_error(*run_cli(capsys, "predict", run, trained_run[1] / "red" / "red_000.png"), fragment)


def test_hostile_head_metadata_cannot_make_us_allocate(trained_run, tmp_path, capsys):
    """The head's size comes from the tensors in the file, not from metadata that claims a
    billion hidden units."""
    from safetensors.torch import load_file, save_file

    run = _copy_run(trained_run, tmp_path)
    tensors = load_file(str(run / "model.safetensors"))
    save_file(tensors, str(run / "model.safetensors"), metadata={"head": "mlp", "hidden": str(10**9)})
    assert_one_line_error(*run_cli(capsys, "predict", run, trained_run[1] / "red" / "red_000.png"), "malformed head")
    save_file(tensors, str(run / "model.safetensors"), metadata={"head": "linear", "hidden": str(10**9)})
    assert len(tk.load_run(run).predict([trained_run[1] / "red" / "red_000.png"])) == 1


def _edit(d: Path, name: str, fn) -> None:
    obj = json.loads((d / name).read_text())
    fn(obj)
    (d / name).write_text(json.dumps(obj))


def test_a_run_folder_cannot_point_predict_elsewhere(trained_run, tmp_path):
    """config.json names the data, the cache, --out and --weights of the training machine; a
    received run folder could aim them at anything. predict must touch none of them."""
    run = _copy_run(trained_run, tmp_path)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "weights.pth").write_bytes(b"x")
    _edit(run, "config.json", lambda c: c.update(data=str(canary), cache_dir=str(canary), out=str(canary), weights=str(canary / "weights.pth"), extra=dict(c["extra"], feature_cache=str(canary))))
    out_csv = tmp_path / "pred.csv"
    with FileAudit() as audit:
        assert cli.main(["predict", str(run), str(trained_run[1] / "blue"), "--out", str(out_csv)]) == 0
    assert audit.touched(canary) == []
    temp_siblings = [w for w in audit.writes if Path(w).parent == out_csv.parent and Path(w).name.startswith(".pred.csv")]
    journal = [f"{out_csv}.partial", f"{out_csv}.partial.json"]  # the resumable journal beside --out, removed at the end
    assert audit.writes_outside(out_csv, "/dev/null", *journal, *temp_siblings) == [str(out_csv.parent)], "predict writes only its --out file (via a journal and temp files beside it; the parent: mkdir exist_ok)"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pred")) == ["pred.csv"]


def test_train_writes_only_its_run_folder_and_the_cache(tmp_path):
    """Everything `train` writes lands in --out (built as a hidden sibling and renamed into
    place), the feature cache or the machine's engine folder, even when CSV labels look like paths."""
    from transferkit.paths import engines_dir

    root = write_class_folder(tmp_path / "photos", per_class=8)
    files = sorted(root.rglob("*.png"))
    labels = {"red": "../../escape", "green": "a/b", "blue": "/etc/evil"}
    (tmp_path / "data.csv").write_text("path,label\n" + "".join(f"photos/{f.parent.name}/{f.name},{labels[f.parent.name]}\n" for f in files))
    out, cache = tmp_path / "runs" / "r", tmp_path / "cache"
    with FileAudit() as audit:
        run = tk.train(str(tmp_path / "data.csv"), out=str(out), cache_dir=str(cache), image_size=32, **TINY)
    assert sorted(run.classes) == sorted(labels.values())

    import matplotlib

    # not data: the kernel's peak-memory reset (transferkit.memory) and matplotlib's own config
    # and font-cache folders, created on its first import (the report's plots)
    state = [Path("/proc/self/clear_refs"), Path(matplotlib.get_configdir()), Path(matplotlib.get_cachedir())]

    def allowed(p: str) -> bool:
        q = Path(p)
        if p == "/dev/null" or q == out.parent:  # (the parent is created if missing)
            return True
        if p == "/proc/self/clear_refs":  # memory.PeakMemory resets this process's peak-RSS mark per phase
            return True
        if any(q == r or r in q.parents for r in (out, cache, engines_dir(), *state)):
            return True
        try:  # the hidden sibling the run is built in, then renamed to --out
            return q.relative_to(out.parent).parts[0].startswith(f".{out.name}.")
        except ValueError:
            return False

    bad = [w for w in dict.fromkeys(audit.writes) if not allowed(w) and "__pycache__" not in w]
    assert bad == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]  # no partial folder left beside it
    assert not (tmp_path / "escape").exists() and not Path("/etc/evil").exists()
