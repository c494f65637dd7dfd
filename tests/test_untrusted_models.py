"""Exported model files from elsewhere (.onnx, TorchScript .pt): a damaged or hostile
metadata block, or an ONNX file whose external data points outside its folder, is refused
with one line naming the file; nothing is allocated from its numbers, nothing outside is read."""
import json

import numpy as np
import pytest

from transferkit.errors import TransferkitError
from transferkit.predictor import META_KEY, load_predictor

from test_bad_data import assert_one_line_error, run_cli


def _with_meta(src, dst, edit):
    import onnx

    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == META_KEY:
            p.value = edit(p.value)
    onnx.save(m, str(dst))
    return dst


def _json_edit(fn):
    def edit(raw):
        meta = json.loads(raw)
        fn(meta)
        return json.dumps(meta)

    return edit


HOSTILE = [
    ("not-json", lambda raw: "{not json", "metadata is damaged"),
    ("a-list", lambda raw: "[1, 2, 3]", "metadata is damaged"),
    ("no-labels", _json_edit(lambda m: m.pop("labels")), "labels"),
    ("labels-not-names", _json_edit(lambda m: m.update(labels=[{"x": 1}, 2, None])), "labels"),
    ("labels-too-few", _json_edit(lambda m: m.update(labels=m["labels"][:1])), "labels"),
    ("huge-input", _json_edit(lambda m: m["preprocessing"].update(input_size=[3, 10**9, 10**9])), "preprocessing"),
    ("bad-mean", _json_edit(lambda m: m["preprocessing"].update(mean="0.5")), "preprocessing"),
]


@pytest.mark.parametrize("name, edit, words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_onnx_metadata_is_one_line(tiny_onnx, tmp_path, capsys, name, edit, words):
    bad = _with_meta(tiny_onnx, tmp_path / f"{name}.onnx", edit)
    with pytest.raises(TransferkitError) as exc:
        load_predictor(bad)
    assert str(bad) in str(exc.value) and words in str(exc.value)
    photo = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(photo)
    rc, err = run_cli(capsys, "predict", bad, photo)
    assert_one_line_error(rc, err, str(bad), words)


def test_hostile_torchscript_metadata_is_one_line(tiny_run, tmp_path, capsys):
    import torch

    import transferkit as tk
    from transferkit.predictor import TS_EXTRA

    good = tk.export(tiny_run, "torchscript", tmp_path / "model.pt").path
    extra = {TS_EXTRA: ""}
    module = torch.jit.load(str(good), _extra_files=extra)
    photo = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(photo)
    for name, value, words in [("not-json", "{oops", "metadata is damaged"), ("huge", json.dumps({**json.loads(extra[TS_EXTRA]), "preprocessing": {"input_size": [3, 99999, 99999]}}), "preprocessing")]:
        bad = tmp_path / f"{name}.pt"
        torch.jit.save(module, str(bad), _extra_files={TS_EXTRA: value})
        with pytest.raises(TransferkitError) as exc:
            load_predictor(bad)
        assert str(bad) in str(exc.value) and words in str(exc.value)
        rc, err = run_cli(capsys, "predict", bad, photo)  # the command line: exit 2, one line naming the file, nothing else
        assert_one_line_error(rc, err, str(bad), words)
        assert len(err.strip().splitlines()) == 1, err


def _external(t, location: str, length: int) -> None:
    """Point TensorProto `t` at `length` bytes of the file `location` instead of its own data."""
    import onnx

    t.ClearField("raw_data")
    del t.float_data[:]
    t.data_location = onnx.TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in {"location": location, "offset": "0", "length": str(length)}.items():
        e = t.external_data.add()
        e.key, e.value = k, v


def test_onnx_external_data_cannot_read_outside_its_folder(tiny_onnx, tmp_path, capsys):
    """An ONNX file may keep tensors in separate files; one naming `../secret.bin` (or an
    absolute path), in an initializer or in a Constant node's value, is refused by transferkit's
    own check (one line naming the file, the tensor and the path) before ONNX Runtime opens it."""
    import onnx
    from onnx import helper

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(1 << 20, dtype=np.float32).tobytes())
    folder = tmp_path / "download"
    folder.mkdir()
    cases = []
    for i, location in enumerate(["../secret.bin", str(secret)]):
        m = onnx.load(str(tiny_onnx))
        init = max(m.graph.initializer, key=lambda t: np.prod(t.dims) if t.dims else 0)
        n = int(np.prod(init.dims))
        assert n * 4 <= secret.stat().st_size
        _external(init, location, n * 4)
        cases.append((f"ext{i}", m, f"tensor '{init.name}' in an external file ({location})"))
    # the same through a Constant node: the tensor is a node attribute, not an initializer
    m = onnx.load(str(tiny_onnx))
    init = max(m.graph.initializer, key=lambda t: np.prod(t.dims) if t.dims else 0)
    value = onnx.TensorProto()
    value.CopyFrom(init)
    m.graph.initializer.remove(init)
    m.graph.node.insert(0, helper.make_node("Constant", [], [init.name], name="planted", value=value))
    _external(m.graph.node[0].attribute[0].t, "../secret.bin", int(np.prod(value.dims)) * 4)
    cases.append(("const", m, "node 'planted' attribute 'value' in an external file (../secret.bin)"))
    for name, m, words in cases:
        bad = folder / f"{name}.onnx"
        with open(bad, "wb") as fh:
            fh.write(m.SerializeToString())
        with pytest.raises(TransferkitError) as exc:
            load_predictor(bad)
        assert str(bad) in str(exc.value) and words in str(exc.value) and "self-contained" in str(exc.value), str(exc.value)
        rc, err = run_cli(capsys, "predict", bad, tmp_path / "nothing.png")
        assert_one_line_error(rc, err, str(bad), words)
        assert len(err.strip().splitlines()) == 1, err
