"""Extraction engines: ONNX Runtime gives PyTorch's features; the choice is recorded and
overridable; the numpy preprocessing equals timm's. (Speed lives in benchmarks/, not here.)"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transferkit as tk
from transferkit.backbones import create_backbone
from transferkit.cli import main as cli_main
from transferkit import load_dataset
from transferkit.features import engines, extract_features
from transferkit.modality.image_transforms import eval_transform as build_eval_transform, fast_eval_transform as build_extract_transform

from conftest import TINY


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone("test_efficientnet", pretrained=False).with_input_size(64)


def test_onnx_engine_features_equal_torch(backbone, tmp_path):
    x = torch.randn(5, 3, 64, 64)
    t = engines.TorchEngine(backbone)(x)
    o = engines.OnnxEngine(backbone, tmp_path / "b.onnx")(x)
    assert o.shape == t.shape == (5, backbone.num_features)
    assert np.abs(o - t).max() < 1e-4 * max(1.0, float(np.abs(t).max()))
    assert engines.OnnxEngine(backbone, tmp_path / "b.onnx")(x[:1]).shape == (1, backbone.num_features)  # dynamic batch


def test_extract_features_same_with_either_engine(backbone, tiny_folder, tmp_path):
    ds = load_dataset(str(tiny_folder))
    out = {}
    for name in ("torch", "onnx"):
        stats: dict = {}
        out[name] = extract_features(backbone, ds, cache_dir=tmp_path / name, progress=False, stats=stats, engine=name)
        assert stats["engine"] == name and stats["computed"] == len(ds)
    assert np.allclose(out["onnx"], out["torch"], atol=1e-4, rtol=1e-4)
    assert (tmp_path / "onnx" / "engines").is_dir() and list((tmp_path / "onnx" / "engines").glob("*/backbone.onnx"))


def test_auto_measures_once_and_remembers(backbone, tiny_folder, tmp_path, monkeypatch):
    ds = load_dataset(str(tiny_folder))
    stats: dict = {}
    extract_features(backbone, ds, cache_dir=tmp_path / "small", progress=False, stats=stats)
    assert stats["engine"] == "torch" and "no export" in stats["engine_choice"]["reason"]  # few items: no export
    monkeypatch.setattr(engines, "AUTO_MIN_ITEMS", 1)
    stats = {}
    extract_features(backbone, ds, cache_dir=tmp_path / "c", progress=False, stats=stats)
    choice = stats["engine_choice"]
    assert choice["reason"] == "auto: measured" and set(choice["images_per_s"]) == {"torch", "onnx"}
    assert stats["engine"] == ("onnx" if choice["images_per_s"]["onnx"] >= engines.ONNX_MARGIN * choice["images_per_s"]["torch"] else "torch")
    decision = json.loads(next((tmp_path / "c" / "engines").glob("*/engine.json")).read_text())
    assert decision["engine"] == stats["engine"]
    _, again = engines.select_engine(backbone, "auto", 10**6, next((tmp_path / "c" / "engines").glob("*")), 32)
    assert again["engine"] == stats["engine"] and "measured earlier" in again["reason"]


def test_engine_is_recorded_and_overridable(tiny_folder, tmp_path):
    cache = str(tmp_path / "cache")
    run = tk.train(str(tiny_folder), out=str(tmp_path / "r1"), image_size=64, cache_dir=cache, engine="onnx", **TINY)
    cfg = json.loads((Path(run.dir) / "config.json").read_text())
    assert cfg["engine"] == "onnx" and cfg["extra"]["engine"] == "onnx" and cfg["extra"]["engine_choice"]["reason"] == "requested"
    rc = cli_main(["train", str(tiny_folder), "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "64", "--engine", "torch", "--cache-dir", str(tmp_path / "c2"), "--out", str(tmp_path / "r2")])
    assert rc == 0
    cfg = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert cfg["engine"] == "torch" and cfg["extra"]["engine"] == "torch"
    # everything cached: the backbone does not run, and the run says so
    tk.train(str(tiny_folder), out=str(tmp_path / "r3"), image_size=64, cache_dir=cache, **TINY)
    cfg = json.loads((tmp_path / "r3" / "config.json").read_text())
    assert cfg["extra"]["engine"].startswith("none: all") and json.loads((tmp_path / "r3" / "metrics.json").read_text())["timing"]["backbone_runs"] == 0


def test_unknown_engine_is_a_clear_error(tiny_folder, tmp_path):
    with pytest.raises(tk.TransferkitError, match="--engine"):
        tk.train(str(tiny_folder), out=str(tmp_path / "r"), engine="tensorrt", **TINY)


def test_numpy_preprocessing_equals_timm(backbone):
    rng = np.random.default_rng(0)
    for shape in ((50, 70, 3), (130, 90, 3)):
        im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        a, b = build_eval_transform(backbone.data_config)(im), build_extract_transform(backbone.data_config)(im)
        assert a.shape == b.shape and b.dtype == torch.float32 and torch.allclose(a, b, atol=1e-5)
