import numpy as np
import pytest

import transferkit as tk
from transferkit.features import extract as extract_mod

from conftest import make_image, write_class_folder


@pytest.fixture
def tiny_backbone():
    return tk.create_backbone("test_efficientnet", pretrained=False).with_input_size(64)


def test_second_run_computes_nothing_and_changed_image_recomputes_one(tiny_folder, tiny_backbone, tmp_path):
    ds = tk.load_dataset(tiny_folder)
    s1, s2, s3 = {}, {}, {}
    f1 = tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", stats=s1, progress=False)
    assert s1["computed"] == 72 and f1.shape == (72, tiny_backbone.num_features)
    f2 = tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", stats=s2, progress=False)
    assert s2["computed"] == 0
    np.testing.assert_array_equal(f1, f2)
    make_image((0, 0, 0), np.random.default_rng(5)).save(tiny_folder / "red" / "red_000.png")
    ds2 = tk.load_dataset(tiny_folder)
    tk.extract_features(tiny_backbone, ds2, cache_dir=tmp_path / "c", stats=s3, progress=False)
    assert s3["computed"] == 1


def _with(backbone, **change):
    """The same network and weights with other preprocessing (a fresh data_config dict)."""
    from transferkit.backbones.image import Backbone

    return Backbone(backbone.name, backbone.model, dict(backbone.data_config, **change), backbone.weights_source, backbone.weights_id, backbone.extra)


def test_cache_key_includes_preprocessing(tiny_backbone, tmp_path):
    """Each declared preprocessing field (input size, mean, std, interpolation, crop ratio and
    mode) keys the cache: changing one recomputes every item; the same config, built afresh,
    reuses them all."""
    ds = tk.load_dataset(write_class_folder(tmp_path / "few", per_class=2))
    n, c = len(ds), tiny_backbone.data_config
    st = {}
    tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", stats=st, progress=False)
    assert st["computed"] == n
    changes = {
        "input size": dict(input_size=(3, 48, 48)),
        "mean": dict(mean=(c["mean"][0] + 0.05, *c["mean"][1:])),
        "std": dict(std=(*c["std"][:2], c["std"][2] * 1.1)),
        "interpolation": dict(interpolation="bilinear" if c["interpolation"] != "bilinear" else "bicubic"),
        "crop ratio": dict(crop_pct=0.5 if c["crop_pct"] != 0.5 else 0.75),
        "crop mode": dict(crop_mode="squash" if c.get("crop_mode", "center") != "squash" else "center"),
    }
    for what, change in changes.items():
        st = {}
        tk.extract_features(_with(tiny_backbone, **change), ds, cache_dir=tmp_path / "c", stats=st, progress=False)
        assert st["computed"] == n, f"another {what} reused the cached features"
    for what, change in [("the same config", {}), *changes.items()]:  # built again: the same key, nothing computed
        st = {}
        tk.extract_features(_with(tiny_backbone, **change), ds, cache_dir=tmp_path / "c", stats=st, progress=False)
        assert st["computed"] == 0, f"{what}, built again, recomputed"


def test_interrupted_extraction_resumes(tiny_folder, tiny_backbone, tmp_path, monkeypatch):
    ds = tk.load_dataset(tiny_folder)
    monkeypatch.setattr(extract_mod, "FLUSH_EVERY", 16)
    calls = {"n": 0}
    real = tiny_backbone.features

    def dies_on_third_batch(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(tiny_backbone, "features", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", batch_size=16, num_workers=0, progress=False)
    monkeypatch.setattr(tiny_backbone, "features", real)
    st = {}
    feats = tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", stats=st, progress=False)
    assert st["computed"] == 72 - 32  # two batches were saved before the interrupt
    fresh = tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "fresh", progress=False)
    np.testing.assert_allclose(feats, fresh, atol=1e-5)


def test_damaged_shard_is_ignored_and_recomputed(tiny_folder, tiny_backbone, tmp_path):
    ds = tk.load_dataset(tiny_folder)
    st = {}
    tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", progress=False, stats=st)
    from pathlib import Path

    feats = next(Path(st["cache_dir"]).glob("shard-*.feats.npy"))
    feats.write_bytes(feats.read_bytes()[:100])
    st2 = {}
    with pytest.warns(UserWarning, match="damaged shard"):
        tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", stats=st2, progress=False)
    assert st2["computed"] == 72


def test_cache_reads_are_memory_mapped(tiny_folder, tiny_backbone, tmp_path):
    ds = tk.load_dataset(tiny_folder)
    st = {}
    tk.extract_features(tiny_backbone, ds, cache_dir=tmp_path / "c", stats=st, progress=False)
    from transferkit.features.extract import feature_cache_for

    cache = feature_cache_for(tiny_backbone, tmp_path / "c")
    assert len(cache) == 72 and all(isinstance(s, np.memmap) for s in cache._shards)
