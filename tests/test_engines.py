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
    assert list((tmp_path / "engines").glob("*/backbone.onnx"))  # the machine's engine folder ($TRANSFERKIT_ENGINES)


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
    decision = json.loads(next((tmp_path / "engines").glob("*/engine.json")).read_text())
    assert decision["engine"] == stats["engine"]
    _, again = engines.select_engine(backbone, "auto", 10**6, next((tmp_path / "engines").glob("*")), 32)
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


def test_a_probe_run_predicts_with_its_caches_onnx_export_and_the_same_answers(tiny_folder, tmp_path):
    from transferkit.features.engines import ONNX_FILE
    from transferkit.predictor import TorchPredictor

    run = tk.train(str(tiny_folder), out=str(tmp_path / "r"), image_size=64, cache_dir=str(tmp_path / "cache"), engine="onnx", **TINY)
    files = sorted(str(p) for p in Path(tiny_folder).rglob("*.png"))
    run = tk.Run.load(run.dir)
    fast, plain = TorchPredictor(run), TorchPredictor(run, engine=False)
    assert fast.fast is not None and plain.fast is None
    refs = list(run.modality.iter_inputs(files, {}))
    a, b = list(fast.predict_refs(refs, 3, 8)), list(plain.predict_refs(refs, 3, 8))
    assert fast.fast.checked and fast.fast.usable  # the export answered, after proving it is the run's backbone
    assert [r["labels"] for r in a] == [r["labels"] for r in b]
    assert np.abs(np.array([r["probs"] for r in a]) - np.array([r["probs"] for r in b])).max() < 1e-4
    assert [r["labels"] for r in run.predict([Path(f) for f in files], top_k=3)] == [r["labels"] for r in b]  # Run.predict takes the same path

    # an export that is not this run's backbone (another one's, same shapes) is found out on the first batch
    other = create_backbone("test_efficientnet", pretrained=False).with_input_size(64)
    torch.nn.init.normal_(next(p for p in other.model.parameters() if p.ndim == 4), std=1.0)
    export = next((tmp_path / "engines").glob(f"*/{ONNX_FILE}"))
    export.unlink()
    engines._SESSIONS.clear()
    engines.export_backbone_onnx(other, export)
    swapped = TorchPredictor(run)
    with pytest.warns(RuntimeWarning, match="does not match"):
        c = list(swapped.predict_refs(refs, 3, 8))
    assert not swapped.fast.usable and [r["labels"] for r in c] == [r["labels"] for r in b]
    assert np.abs(np.array([r["probs"] for r in c]) - np.array([r["probs"] for r in b])).max() < 1e-6


def test_a_frozen_body_run_uses_the_export_and_trained_or_test_time_augmented_ones_do_not(tiny_folder, tmp_path):
    from transferkit.predictor import TorchPredictor

    cache = str(tmp_path / "cache")
    files = sorted(str(p) for p in Path(tiny_folder).rglob("*.png"))
    for name, extra, fast in (("head", dict(strategy="head", epochs=1, augment="none"), True), ("finetune", dict(strategy="finetune", epochs=1, augment="none"), False),
                              ("tta", dict(tta="flip"), False)):
        run = tk.Run.load(tk.train(str(tiny_folder), out=str(tmp_path / name), image_size=64, cache_dir=cache, engine="onnx", **extra, **TINY).dir)
        pred = TorchPredictor(run)
        assert (pred.fast is not None) == fast, name
        if fast:  # a frozen body with its head trained: the export is still the run's backbone
            list(pred.predict_refs(list(run.modality.iter_inputs(files[:4], {})), 1, 8))
            assert pred.fast.usable, name


def test_a_feature_ensemble_probe_runs_every_member_on_its_export(tiny_folder, tmp_path):
    from transferkit.predictor import TorchPredictor

    run = tk.Run.load(tk.train(str(tiny_folder), out=str(tmp_path / "r"), image_size=64, cache_dir=str(tmp_path / "c"), engine="onnx",
                               **dict(TINY, backbone="test_efficientnet+test_efficientnet@48")).dir)
    fast, plain = TorchPredictor(run), TorchPredictor(run, engine=False)
    assert fast.fast is not None and len(fast.fast.engines) == 2
    refs = list(run.modality.iter_inputs(sorted(str(p) for p in Path(tiny_folder).rglob("*.png")), {}))
    a, b = list(fast.predict_refs(refs, 2, 8)), list(plain.predict_refs(refs, 2, 8))
    assert fast.fast.usable and [r["labels"] for r in a] == [r["labels"] for r in b]
    assert np.abs(np.array([r["probs"] for r in a]) - np.array([r["probs"] for r in b])).max() < 1e-4


def test_one_engine_per_backbone_serves_every_cache_folder_and_crop(backbone, tiny_folder, tmp_path):
    ds = load_dataset(str(tiny_folder))
    a: dict = {}
    extract_features(backbone, ds, cache_dir=tmp_path / "a", progress=False, stats=a, engine="onnx")
    export = Path(a["engine_dir"]) / engines.ONNX_FILE
    made = export.stat().st_mtime_ns
    cropped = backbone.with_crop(1.0)  # other preprocessing, so another feature cache folder; the same network
    b: dict = {}
    got = extract_features(cropped, ds, cache_dir=tmp_path / "b", progress=False, stats=b, engine="onnx")
    assert b["engine_dir"] == a["engine_dir"] and b["cache_dir"] != a["cache_dir"] and b["computed"] == len(ds)
    assert export.stat().st_mtime_ns == made  # not exported again
    want = extract_features(cropped, ds, cache_dir=tmp_path / "c", progress=False, engine="torch")
    assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max()))


def test_timing_the_engines_stops_once_the_verdict_cannot_change(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(engines.time, "perf_counter", lambda: clock[0])
    calls = {"slow": 0, "fast": 0}

    def engine(name, seconds):
        def run(x):
            calls[name] += 1
            clock[0] += seconds
        return run

    speed = engines.measure_engines({"slow": engine("slow", 1.0), "fast": engine("fast", 0.2)}, 4, 8, rounds=1, repeats=3, decisive=2.0)
    assert calls == {"slow": 2, "fast": 2}  # warm-up + one round: 5x apart, no need for more
    assert speed == pytest.approx({"slow": 4.0, "fast": 20.0})
    calls.update(slow=0, fast=0)
    engines.measure_engines({"slow": engine("slow", 1.0), "fast": engine("fast", 0.7)}, 4, 8, rounds=1, repeats=3, decisive=2.0)
    assert calls == {"slow": 4, "fast": 4}  # close: every round is run
