"""Bad input: every case has a defined outcome (loaded, skipped and listed, or refused before
anything is written) and, at the CLI, a one-line message with no traceback."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import transferkit as tk
from transferkit import cli
from transferkit.data.images import ImageDecodeError, open_rgb

from badfiles import color_name, jpeg_bytes, write_bad_files, write_ignored_files, write_odd_images
from conftest import TINY, write_class_folder


def run_cli(capsys, *argv) -> tuple[int, str]:
    """`transferkit ARGV` in-process; returns (exit code, stderr)."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_one_line_error(rc, err, *fragments):
    lines = [x for x in err.strip().splitlines() if x.startswith("transferkit:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ------------------------------------------------------------------------------------ images


def test_odd_but_legitimate_images_decode_upright_rgb(tmp_path):
    for name, want in write_odd_images(tmp_path).items():
        im = open_rgb(tmp_path / name, size_hint=64)
        assert im.mode == "RGB", name
        assert color_name(im) == want, (name, color_name(im), want)
    assert open_rgb(tmp_path / "exif_rotated.jpg").size == (20, 40)  # upright: taller than wide


def test_bad_files_are_skipped_with_their_reason(tmp_path):
    write_class_folder(tmp_path / "d", per_class=6)
    expected = write_bad_files(tmp_path / "d" / "red")
    ignored = write_ignored_files(tmp_path / "d" / "red")
    ds = tk.load_dataset(tmp_path / "d")
    assert len(ds) == 18  # every good image, nothing else
    reasons = {Path(s.item).name: s.reason for s in ds.skipped}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment.lower() in reasons[name].lower(), (name, reasons[name])
    assert sorted(Path(s.item).name for s in ds.ignored) == sorted(ignored)
    checks = tk.check_dataset(ds).as_dict()
    assert len(checks["skipped"]) == len(expected) and len(checks["ignored"]) == len(ignored)
    assert not any("Thumbs" in w or "DS_Store" in w for w in checks["warnings"])  # ignored quietly


def test_decompression_bomb_is_refused_from_the_header_without_decoding(tmp_path, monkeypatch):
    from badfiles import png_bomb

    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self))
    for path in (png_bomb(tmp_path / "b.png", side=13000), png_bomb(tmp_path / "c.png", side=40000)):
        with pytest.raises(ImageDecodeError, match="decompression bomb"):
            open_rgb(path, size_hint=224)
    assert loads == []  # no pixel was decoded


def test_very_large_photo_decodes_reduced_with_bounded_memory(tmp_path):
    """A 48-megapixel JPEG (144 MB as RGB) decodes at 1/8 scale through the decoder's draft
    mode; peak memory, measured in a fresh process, grows by far less than the full image."""
    im = Image.new("RGB", (8000, 6000), (30, 120, 200))
    im.paste((220, 30, 30), (0, 0, 4000, 6000))
    im.save(tmp_path / "big.jpg", quality=80)
    del im
    small = open_rgb(tmp_path / "big.jpg", size_hint=256)
    assert small.size == (1000, 750)  # scaled inside the JPEG decoder, never decoded at full size
    images_py = Path(tk.__file__).parent / "data" / "images.py"
    code = f"""
import importlib.util, resource
spec = importlib.util.spec_from_file_location("images", {str(images_py)!r})
images = importlib.util.module_from_spec(spec); spec.loader.exec_module(images)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
im = images.open_rgb({str(tmp_path / 'big.jpg')!r}, size_hint=256)
print(im.size, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    grew_mb = float(out[-1])
    assert grew_mb < 40, f"peak RSS grew by {grew_mb:.0f} MB decoding a 48 MP photo (full decode: 144 MB)"


def test_permission_denied_as_a_real_unprivileged_user(tmp_path):
    """We run as root, where chmod 000 does not stop reads. So a forked child drops to the
    `nobody` user (setuid 65534) and loads the folder: a real EACCES from the kernel."""
    if os.geteuid() != 0:
        base = tmp_path
    else:
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="tk-perm-"))
        os.chmod(base, 0o755)
    try:
        write_class_folder(base / "d", per_class=4)
        for p in (base / "d").rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(base / "d" / "red" / "red_001.png", 0o000)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 1
            try:
                os.close(r)
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                ds = tk.load_dataset(base / "d")
                os.write(w, json.dumps({"n": len(ds), "skipped": [[s.item, s.reason] for s in ds.skipped], "uid": os.geteuid()}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as fh:
            data = fh.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0 and data, "child failed"
        res = json.loads(data)
        assert res["uid"] != 0 and res["n"] == 11
        assert [(Path(i).name, why) for i, why in res["skipped"]] == [("red_001.png", "permission denied (the file is not readable by this user)")]
    finally:
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def test_permission_denied_by_monkeypatched_read(tiny_folder, monkeypatch):
    """The same outcome where the kernel cannot be asked (a non-root CI user would see it for
    real with chmod 000): reading one file raises PermissionError."""
    real = Path.read_bytes

    def deny(self):
        if self.name == "red_003.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    ds = tk.load_dataset(tiny_folder)
    assert len(ds) == 71 and "permission denied" in ds.skipped[0].reason


def test_names_symlinks_and_loops(tmp_path):
    root = write_class_folder(tmp_path / "d", per_class=5)
    (root / "green" / "café au lait 日本.png").write_bytes((root / "green" / "green_000.png").read_bytes())
    raw = os.fsencode(root / "blue") + b"/caf\xe9-latin1.png"  # a name that is not UTF-8
    with open(raw, "wb") as fh:
        fh.write((root / "red" / "red_001.png").read_bytes())
    os.symlink(root / "red" / "red_000.png", root / "red" / "link_to_red_000.png")
    os.symlink(root / "red", root / "red" / "loop")  # a folder symlink pointing at its parent
    os.symlink(root / "blue", root / "blue_alias")  # a symlinked class folder
    ds = tk.load_dataset(root)
    assert ds.classes == ["blue", "blue_alias", "green", "red"]
    counts = ds.class_counts()
    assert counts == {"blue": 6, "blue_alias": 6, "green": 6, "red": 6}  # loop read once, link file read
    assert any("already read" in s.reason for s in ds.ignored)
    names = [Path(p).name for p in ds.paths]
    assert "café au lait 日本.png" in names and os.fsdecode(b"caf\xe9-latin1.png") in names


# ------------------------------------------------------------------------------------ layout


def test_layout_errors_are_one_line_and_refused(tmp_path, capsys):
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "missing"), "no such folder")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "flat"), "no class sub-folders")
    write_class_folder(tmp_path / "one", per_class=4, classes={"only": (1, 2, 3)})
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "one", "--out", tmp_path / "r1"), "at least 2 classes")
    write_class_folder(tmp_path / "wrapped" / "flowers", per_class=3)  # the classes are one level down
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "wrapped"), "point transferkit at", "flowers")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*run_cli(capsys, "train", tmp_path / "empty"), "no class sub-folders")
    assert not (tmp_path / "r1").exists() and not list(tmp_path.glob(".r1*"))


def test_tiny_empty_and_nested_classes_still_split(tmp_path):
    root = write_class_folder(tmp_path / "d", per_class=20)
    write_class_folder(root, per_class=1, classes={"one": (250, 250, 0)}, seed=4)
    write_class_folder(root, per_class=2, classes={"two": (0, 250, 250)}, seed=5)
    (root / "nothing").mkdir()
    write_class_folder(root / "red" / "more", per_class=3, classes={"deep": (210, 30, 30)}, seed=6)
    shutil.copy(root / "red" / "red_000.png", root / "stray.png")  # not in any class folder
    ds = tk.load_dataset(root)
    assert ds.class_counts()["red"] == 23 and ds.class_counts()["nothing"] == 0
    assert any("stray.png" in s.item and "class is unknown" in s.reason for s in ds.skipped)
    sp = tk.make_splits(ds, seed=0)
    where = sp.assignment(len(ds))
    one, two = ds.classes.index("one"), ds.classes.index("two")
    assert list(where[ds.labels == one]) == ["train"]  # a single image is always learned from
    assert sorted(where[ds.labels == two]) == ["test", "train"]  # two: one learns, one tests
    for c in ("blue", "green", "red"):
        assert set(where[ds.labels == ds.classes.index(c)]) == {"train", "val", "test"}
    warnings = tk.check_dataset(ds, sp).warnings
    assert any("'nothing' has no readable images" in w for w in warnings)
    assert any("'one' (1 image(s)) has none in val/test" in w for w in warnings)
    assert any("class 'red': images in 1 sub-folder(s)" in w for w in warnings)


def test_every_class_keeps_a_training_item_whatever_the_hash(tmp_path):
    # 3 items per class, 40 classes: some class gets all three hashed into val/test
    classes = {f"c{i:02d}": (i * 6 % 256, i * 37 % 256, i * 91 % 256) for i in range(40)}
    ds = tk.load_dataset(write_class_folder(tmp_path / "d", per_class=3, classes=classes))
    sp = tk.make_splits(ds, seed=0)
    for c in range(len(ds.classes)):
        assert (ds.labels[sp.train] == c).sum() >= 1 and (ds.labels[sp.test] == c).sum() >= 1 and (ds.labels[sp.val] == c).sum() >= 1


def test_given_splits_with_different_class_sets(tmp_path):
    write_class_folder(tmp_path / "a" / "train", per_class=12)
    write_class_folder(tmp_path / "a" / "test", per_class=3, classes={"red": (200, 40, 40), "blue": (40, 60, 200)}, seed=1)
    ds = tk.load_dataset(tmp_path / "a")
    assert ds.classes == ["blue", "green", "red"] and any("no folder for class(es) ['green']" in n for n in ds.notes)
    write_class_folder(tmp_path / "b" / "train", per_class=6, classes={"red": (200, 40, 40), "blue": (40, 60, 200)})
    write_class_folder(tmp_path / "b" / "test", per_class=2, seed=1)
    with pytest.raises(tk.TransferkitError, match=r"\['green'\] appear in test/ but not in train/"):
        tk.load_dataset(tmp_path / "b")
    # train/ + valid/ and no test/: the validation folder is kept, a test set is carved from train
    write_class_folder(tmp_path / "c" / "train", per_class=30)
    write_class_folder(tmp_path / "c" / "valid", per_class=4, seed=2)
    ds = tk.load_dataset(tmp_path / "c")
    sp = tk.make_splits(ds, test_size=0.2)
    assert {ds.given_split[i] for i in sp.val} == {"val"} and len(sp.val) == 12
    assert {ds.given_split[i] for i in sp.test} == {"train"} and 8 <= len(sp.test) <= 32


# --------------------------------------------------------------------------------------- CSV


def _csv(tmp_path, text: str | bytes, name="data.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_csv_problems(tmp_path, tiny_folder, capsys):
    rel = sorted(f"photos/{p.parent.name}/{p.name}" for p in tiny_folder.rglob("*.png"))
    assert_one_line_error(*run_cli(capsys, "train", _csv(tmp_path, "file,kind\nphotos/red/red_000.png,red\n")), "needs a 'path' and a 'label' column", "['file', 'kind']")
    assert_one_line_error(*run_cli(capsys, "train", _csv(tmp_path, "path,label\n")), "no rows")
    latin1 = ("path,label\n" + "".join(f"{r},{r.split('/')[1]}\n" for r in rel[:3]) + "photos/red/caf\xe9.png,red\n").encode("latin-1")
    assert_one_line_error(*run_cli(capsys, "train", _csv(tmp_path, latin1)), "line 5 is not UTF-8", "0xe9", "save the file as UTF-8")
    assert_one_line_error(*run_cli(capsys, "train", _csv(tmp_path, b"path,label\nphotos/red/red_000.png,red\x00\n")), "line 2 contains a NUL byte")

    rows = ["path,label"] + [f"{r},{r.split('/')[1]}" for r in rel]
    rows += [f"{rel[0]},", f"{rel[1]},{rel[1].split('/')[1]}", "photos/red/missing.png,red", f" {rel[2]} , {rel[2].split('/')[1]} "]
    ds = tk.load_dataset(_csv(tmp_path, "\n".join(rows) + "\n"))
    reasons = {s.item.rsplit(":", 1)[-1] if s.item.endswith(tuple("0123456789")) else Path(s.item).name: s.reason for s in ds.skipped}
    assert len(ds) == 72 and ds.classes == ["blue", "green", "red"]
    assert reasons["74"] == "blank label" and reasons["75"].startswith("duplicate of line 3") and "No such file" in reasons["missing.png"]
    assert reasons["77"].startswith("duplicate of line 4")  # whitespace around cells is stripped


def test_csv_labels_numbers_vs_strings(tmp_path, tiny_folder):
    files = sorted(tiny_folder.rglob("*.png"))
    labels = ["10", "2", "1", "1.0", "Cat", "cat"]
    text = "path,label\n" + "".join(f"photos/{f.parent.name}/{f.name},{labels[i % len(labels)]}\n" for i, f in enumerate(files))
    ds = tk.load_dataset(_csv(tmp_path, text))
    assert ds.classes[:4] == ["1", "1.0", "2", "10"]  # numbers in numeric order, text kept as written
    assert any("['1', '1.0'] are different classes" in n for n in ds.notes)
    assert any("['Cat', 'cat'] are different classes" in n for n in ds.notes)


def test_csv_paths_cannot_escape_its_folder(tmp_path, tiny_folder, capsys):
    """Rule: CSV paths are relative to the CSV's folder (or --data-root) and must stay inside
    it, as written ('..' collapsed); a CSV breaking it is refused before any image is read."""
    (tmp_path / "sub").mkdir()
    secret = tmp_path / "secret.png"
    shutil.copy(tiny_folder / "red" / "red_001.png", secret)
    inside = "".join(f"photos/{c}/{c}_00{i}.png,{c}\n" for c in ("red", "blue") for i in range(3))
    for bad in ("../secret.png", str(secret), "photos/../../secret.png"):
        p = _csv(tmp_path / "sub", "path,label\n" + inside + f"{bad},red\n")
        assert_one_line_error(*run_cli(capsys, "train", p, "--out", tmp_path / "r"), "line 8", "is outside", "--data-root")
    assert not (tmp_path / "r").exists()
    with pytest.raises(tk.TransferkitError, match="outside"):  # naming sub/ as the root changes nothing
        tk.load_dataset(p, data_root=tmp_path / "sub")
    # inside the CSV's own folder: fine ('..' that stays inside is fine too)
    ds = tk.load_dataset(_csv(tmp_path, "path,label\n" + inside + "photos/../secret.png,red\n", name="top.csv"))
    assert len(ds) == 7 and str(secret) in ds.paths
    # a CSV elsewhere whose paths are relative to a root the user names
    ds = tk.load_dataset(_csv(tmp_path / "sub", "path,label\n" + inside + f"{secret},red\n", name="rooted.csv"), data_root=tmp_path)
    assert len(ds) == 7 and str(secret) in ds.paths
    # predict applies the same rule to CSVs of inputs
    from transferkit.modality.image import image_paths as expand_inputs

    with pytest.raises(tk.TransferkitError, match="outside"):
        expand_inputs([_csv(tmp_path / "sub", "path\n../secret.png\n", name="pred.csv")])
    with pytest.raises(tk.TransferkitError, match="outside"):  # relative to --data-root now, still outside
        expand_inputs([tmp_path / "sub" / "pred.csv"], data_root=tmp_path)
    assert expand_inputs([_csv(tmp_path / "sub", "path\nsecret.png\n", name="pred2.csv")], data_root=tmp_path) == [str(secret)]


# ------------------------------------------------------------------------------------ options


def test_impossible_options_are_refused_in_one_line(tiny_folder, tmp_path, capsys):
    cases = [
        (["--val-size", "1.5"], "between 0 and 1"),
        (["--val-size", "0.5", "--test-size", "0.5"], "leave nothing to train on"),
        (["--strategy", "prob"], "did you mean probe"),
        (["--backbone", "efficientnet_lte0"], "did you mean efficientnet_lite0"),
        (["--image-size", "5"], "between 16 and 1024"),
        (["--batch-size", "0"], "must be positive"),
        (["--out", tiny_folder], "contains the data"),
        (["--out", tiny_folder / "red"], "inside the data folder"),
        (["--out", tmp_path / "file.txt"], "is a file"),
        (["--out", tmp_path / "notarun"], "not a transferkit run folder"),
        (["--data-root", tmp_path], "--data-root applies to tables (CSV/TSV/JSONL) only"),
    ]
    (tmp_path / "file.txt").write_text("precious")
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "thesis.tex").write_text("precious")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for opts, fragment in cases:
        assert_one_line_error(*run_cli(capsys, "train", tiny_folder, "--backbone", "test_efficientnet", "--no-pretrained", *opts), fragment)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, nothing removed
    assert (tmp_path / "file.txt").read_text() == "precious" and (tmp_path / "notarun" / "thesis.tex").exists()


def test_epochs_zero_is_refused_once_the_option_exists(tiny_folder, capsys):
    if "--epochs" not in cli._parser()._subparsers._group_actions[0].choices["train"].format_help():
        pytest.skip("`train --epochs` does not exist yet (added with the trained strategies, issue 4)")
    assert_one_line_error(*run_cli(capsys, "train", tiny_folder, "--epochs", "0"), "--epochs")


def test_messy_folder_trains_end_to_end_and_reports_what_it_skipped(tmp_path):
    root = write_class_folder(tmp_path / "photos", per_class=16)
    write_odd_images(tmp_path / "odd")
    for f in (tmp_path / "odd").iterdir():  # the odd-but-fine images join a class
        shutil.move(str(f), root / "green" / f.name)
    bad = write_bad_files(root / "red")
    write_ignored_files(root / "blue")
    with open(os.fsencode(root / "blue") + b"/\xff\xfe odd bytes.png", "wb") as fh:
        fh.write((root / "blue" / "blue_000.png").read_bytes()[:-1] + b"\0")  # same picture, different bytes
    write_class_folder(root, per_class=2, classes={"rare": (250, 250, 0)}, seed=9)
    (root / "nothing").mkdir()
    run = tk.train(str(root), out=str(tmp_path / "run"), image_size=32, **TINY)
    checks = json.loads((tmp_path / "run" / "checks.json").read_text())
    assert {Path(s["item"]).name for s in checks["skipped"]} == set(bad)
    assert len(checks["ignored"]) == 3 and checks["classes"]["nothing"] == 0 and checks["classes"]["rare"] == 2
    report = (tmp_path / "run" / "report.md").read_bytes().decode("utf-8", "surrogateescape")
    assert "bomb.png" in report and "decompression bomb" in report
    listed = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert sum(len(listed[k]) for k in ("train", "val", "test")) == len(tk.load_dataset(root)) == 16 * 3 + 11 + 1 + 2
    assert run.metrics["test"]["n"] >= 1
