"""Near-duplicate pairs: exact against brute force (with and without the pre-filter), and planted
resized + JPEG copies of real photos found with real EfficientNet-Lite0 features."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit import neardup as nd
from conftest import SHARED, foolbox_data, skimage_chelsea


def _brute(X, threshold):
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = np.triu(Z @ Z.T, 1)
    i, j = np.nonzero(S >= threshold)
    return {(int(a), int(b)): float(S[a, b]) for a, b in zip(i, j)}


def _structured(n=3000, d=256, planted=60, seed=0):
    """Non-negative low-rank features (like pooled CNN activations) with planted near-copies."""
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.normal(size=(n, 16)) @ rng.normal(size=(16, d)) + rng.normal(0, 1.0, (n, d)) + 2, 0).astype(np.float32)
    src = rng.choice(n, planted, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), planted, replace=False)
    X[dst] = X[src] * rng.uniform(0.5, 2) + rng.normal(0, 0.05, (planted, d)).astype(np.float32)
    return X, {(int(min(a, b)), int(max(a, b))) for a, b in zip(src, dst)}


@pytest.mark.parametrize("threshold", [0.9, 0.99])
def test_exact_against_brute_force_with_the_prefilter(threshold):
    X, planted = _structured()
    ref = _brute(X, threshold)
    stats = {}
    got = nd.near_duplicate_pairs(X, threshold, block=512, reduce=32, stats=stats)
    assert stats["prefilter"] and stats["dense_blocks"] == 0
    assert stats["candidates"] < 0.002 * len(X) ** 2 / 2  # the bound pruned almost every pair
    assert {(i, j) for i, j, _ in got} == set(ref)
    assert planted <= set(ref)
    assert all(i < j for i, j, _ in got) and all(abs(s - ref[(i, j)]) < 1e-5 for i, j, s in got)
    assert [s for *_, s in got] == sorted((s for *_, s in got), reverse=True)
    dense = {(i, j): s for i, j, s in nd.near_duplicate_pairs(X, threshold, block=700, reduce=None)}
    assert set(dense) == set(ref) and all(abs(dense[(i, j)] - s) < 1e-5 for i, j, s in got)


def test_features_without_structure_fall_back_to_dense_blocks():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1500, 128)).astype(np.float32)
    X[1000:1010] = X[:10] + 0.01 * rng.normal(size=(10, 128)).astype(np.float32)
    stats = {}
    # 16 of 128 noise dimensions keep ~1/8 of each norm: the bound (~0.88 for any pair) passes all at 0.8
    got = nd.near_duplicate_pairs(X, 0.8, block=256, reduce=16, stats=stats)
    assert not stats["prefilter"] and stats["dense_blocks"] == stats["blocks"] == 21  # 6 row blocks: 6*7/2
    assert {(i, j) for i, j, _ in got} == set(_brute(X, 0.8)) == {(k, 1000 + k) for k in range(10)}


def test_max_pairs_keeps_the_most_similar(capsys):
    X, _ = _structured(n=1200, d=64, planted=0, seed=2)
    ref = sorted(_brute(X, 0.75).items(), key=lambda kv: -kv[1])
    assert len(ref) > 600
    stats = {}
    got = nd.near_duplicate_pairs(X, 0.75, block=256, max_pairs=100, reduce=None, stats=stats)
    assert len(got) == 100 and np.allclose([s for *_, s in got], [s for _, s in ref[:100]], atol=1e-6)
    assert stats["truncated"] and "more than 100 pairs above 0.75; kept the 100 most similar" in capsys.readouterr().err
    assert len(nd.near_duplicate_pairs(X, 0.75, block=256, max_pairs=len(ref), reduce=None)) == len(ref)
    assert "more than" not in capsys.readouterr().err


def test_degenerate_inputs():
    assert nd.near_duplicate_pairs(np.zeros((0, 4))) == []
    assert nd.near_duplicate_pairs(np.ones((1, 4))) == []
    X = np.array([[0, 0, 0], [0, 0, 0], [1, 2, 3], [2, 4, 6]], dtype=np.float32)
    got = nd.near_duplicate_pairs(X)
    assert [(i, j) for i, j, _ in got] == [(2, 3)] and got[0][2] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        nd.near_duplicate_pairs(X, threshold=1.5)


def test_classify_pairs():
    pairs = [(0, 1, 0.99), (2, 3, 0.98), (4, 5, 0.97), (6, 7, 0.96)]
    labels = ["cat", "cat", "cat", "dog", "dog", "dog", "cat", "dog"]
    split = ["train", "test", "train", "train", "val", "val", "val", "train"]
    out = nd.classify_pairs(pairs, labels, split)
    assert [(r["i"], r["j"]) for r in out["across_splits"]] == [(0, 1), (6, 7)]
    assert [(r["i"], r["j"]) for r in out["contradictions"]] == [(2, 3), (6, 7)]
    assert [(r["i"], r["j"]) for r in out["within_class"]] == [(4, 5)]
    assert out["across_splits"][0] == {"i": 0, "j": 1, "similarity": 0.99, "label_i": "cat", "label_j": "cat", "split_i": "train", "split_j": "test"}


def _copy(im: Image.Image) -> Image.Image:
    """A resized (3/4 of each side) and JPEG re-encoded (quality 90) copy."""
    small = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=90)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# Distinct photos that look alike: the most similar pairs among 666 flowers5 images (cosine
# 0.913, 0.906, 0.905 with EfficientNet-Lite0), a threshold must stay above them.
LOOKALIKES = [("daisy/34637970155_a2b917077c_n.jpg", "daisy/3704306975_75b74497d8.jpg"),
              ("daisy/33830843653_ee6d7989fa_n.jpg", "daisy/5896676090_68bb74b1e9_n.jpg"),
              ("dandelion/19691175559_ef12b8b354_n.jpg", "dandelion/4575406391_7a62c5f90f_n.jpg")]


def test_planted_copies_of_real_photos_are_found():
    """20 ImageNet photos (foolbox) and 6 scikit-image photos, a resized + re-encoded copy of 9
    of them; EfficientNet-Lite0 ImageNet features. Every copy pairs with its original at the
    default threshold; distinct photos (two of them the same class, jeeps) pair at most once,
    and the flowers5 look-alike pairs (where ../shared/datasets has them) not at all."""
    fb, chelsea = foolbox_data(), skimage_chelsea()
    if fb is None or chelsea is None:
        pytest.skip("needs the foolbox sample images and scikit-image's data (make setup installs both)")
    import timm

    from transferkit.backbones import create_backbone
    from transferkit.errors import TransferkitError

    try:
        bb = create_backbone("efficientnet_lite0")
    except TransferkitError as e:
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {e}")
    sk = chelsea.parent
    photos = [Image.open(p).convert("RGB") for p in sorted(Path(fb).glob("imagenet_*.jpg"))]
    photos += [Image.open(sk / n).convert("RGB") for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")]
    assert len(photos) == 26
    originals = list(range(0, 26, 3))  # 9 of them
    items = photos + [_copy(photos[k]) for k in originals]
    flowers = SHARED / "flowers5"
    lookalikes = [(flowers / a, flowers / b) for a, b in LOOKALIKES if (flowers / a).is_file() and (flowers / b).is_file()]
    items += [Image.open(f).convert("RGB") for pair in lookalikes for f in pair]
    tf = timm.data.create_transform(**bb.data_config)
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on 2 shared cores ran several times slower here
    try:
        with torch.no_grad():
            X = np.concatenate([bb.features(torch.stack([tf(im) for im in items[s : s + 16]])).numpy() for s in range(0, len(items), 16)])
    finally:
        torch.set_num_threads(n_threads)
    assert X.shape == (35 + 2 * len(lookalikes), bb.num_features)
    pairs = nd.near_duplicate_pairs(X)
    found = {(i, j) for i, j, _ in pairs}
    planted = {(k, 26 + c) for c, k in enumerate(originals)}
    assert planted <= found, f"missed copies: {sorted(planted - found)}"
    distinct = [(i, j, s) for i, j, s in pairs if (i, j) not in planted]
    assert len(distinct) <= 1, distinct
    sims = {(i, j): s for i, j, s in nd.near_duplicate_pairs(X, threshold=0.0)}
    copy_min = min(sims[p] for p in planted)
    distinct_max = max(s for p, s in sims.items() if p not in planted and p[0] < 26 and p[1] < 26)
    assert copy_min - distinct_max > 0.03  # a clear gap around the default threshold
    for k in range(len(lookalikes)):
        pair = (35 + 2 * k, 36 + 2 * k)
        assert 0.85 < sims[pair] < nd.DEFAULT_THRESHOLD, (lookalikes[k], sims[pair])
