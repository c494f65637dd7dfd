"""Test-time augmentation: the average it claims, ONNX parity on random and real images, mirror symmetry."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import foolbox_data
from transferkit.errors import TransferkitError
from transferkit.tta import TTA, crop_boxes, tta_views


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These nets are tiny: one intra-op thread is faster than several on a shared CPU (measured
    on 2 busy cores: the file took 45 s with torch's default threads, 14 s with one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cnn(seed=0, classes=10):
    """A small conv net with batch-norm statistics that are not the defaults, in eval mode."""
    torch.manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, classes),
    )
    with torch.no_grad():
        m.train()
        for _ in range(3):
            m(torch.randn(8, 3, 32, 32) * 2 + 0.3)
        m[-1].weight *= 40  # logits that spread over several units, so the views disagree
    return m.eval()


def hand_views(x, side, margin):
    """The 12 views spelt out for a square side (crop = side - 2 * margin), resized back."""
    c = side - 2 * margin
    offsets = [(margin, margin), (0, 0), (0, 2 * margin), (2 * margin, 0), (2 * margin, 2 * margin)]
    crops = [F.interpolate(x[:, :, t : t + c, s : s + c], size=(side, side), mode="bilinear", align_corners=False) for t, s in offsets]
    base = [x] + crops
    return base + [torch.flip(v, dims=[3]) for v in base]


def mean_softmax(model, views):
    with torch.no_grad():
        return torch.stack([torch.softmax(model(v), -1) for v in views]).mean(0)


def test_view_counts_and_boxes():
    assert tta_views("flip") == 2 and tta_views("flip+crops") == 12
    with pytest.raises(TransferkitError, match="unknown TTA views"):
        tta_views("crops")
    with pytest.raises(TransferkitError, match="unknown TTA views"):
        TTA(torch.nn.Identity(), "ten-crop")
    assert crop_boxes(32, 32) == [(2, 2, 28, 28), (0, 0, 28, 28), (0, 4, 28, 28), (4, 0, 28, 28), (4, 4, 28, 28)]
    assert crop_boxes(224, 224)[0] == (14, 14, 196, 196)  # 87.5 % of 224 = 196, timm's crop_pct
    with pytest.raises(TransferkitError, match="too small"):
        crop_boxes(4, 4)


@pytest.mark.parametrize("side,margin", [(32, 2), (64, 4)])
def test_equals_manual_average_of_probabilities(side, margin):
    model = tiny_cnn()
    x = torch.randn(5, 3, side, side)
    with torch.no_grad():
        out_flip, out_all = TTA(model, "flip")(x), TTA(model, "flip+crops")(x)
    for out, views in ((out_flip, [x, torch.flip(x, dims=[3])]), (out_all, hand_views(x, side, margin))):
        expected = mean_softmax(model, views)
        torch.testing.assert_close(torch.softmax(out, -1), expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.exp().sum(1), torch.ones(5), atol=1e-6, rtol=0)
        # the average of probabilities, not of logits (which would be a different number)
        logit_avg = torch.softmax(torch.stack([model(v) for v in views]).mean(0), -1).detach()
        assert (logit_avg - expected).abs().max() > 1e-3


def test_temperature_inside_model_acts_per_view():
    base, T = tiny_cnn(), 3.0

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.base = base

        def forward(self, x):
            return self.base(x) / T

    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = TTA(Scaled(), "flip+crops")(x)
        expected = torch.stack([torch.softmax(base(v) / T, -1) for v in hand_views(x, 32, 2)]).mean(0)
    torch.testing.assert_close(torch.softmax(out, -1), expected, atol=1e-6, rtol=0)


def test_mirror_symmetry():
    model = tiny_cnn()
    x = torch.randn(6, 3, 32, 32)
    sym = (x + x.flip(-1)) / 2
    with torch.no_grad():
        # a mirror-symmetric image: both flip views are the same image, so TTA = the model alone
        torch.testing.assert_close(TTA(model, "flip")(sym), torch.log_softmax(model(sym), -1), atol=1e-6, rtol=0)
        assert (TTA(model, "flip")(x) - torch.log_softmax(model(x), -1)).abs().max() > 1e-3
        # the view sets are mirror-closed: any image and its mirror get the same output
        for views in ("flip", "flip+crops"):
            tta = TTA(model, views)
            torch.testing.assert_close(tta(x), tta(x.flip(-1)), atol=1e-5, rtol=0)


class Orientation(torch.nn.Module):
    """Logits (mean(left half) - mean(right half), 1): the prediction depends on which way the image faces."""

    def forward(self, x):
        w = x.shape[-1] // 2
        d = x[..., :w].mean((1, 2, 3)) - x[..., w:].mean((1, 2, 3))
        return torch.stack([d, torch.ones_like(d)], 1)


def test_tta_changes_an_orientation_dependent_prediction():
    x = torch.zeros(1, 3, 32, 32)
    x[..., :16] = 1.5  # logits (1.5, 1): class 0; mirrored (-1.5, 1): class 1 far more surely
    model = Orientation()
    with torch.no_grad():
        assert model(x).argmax(1).item() == 0
        out = TTA(model, "flip")(x)
    p0 = (torch.sigmoid(torch.tensor(0.5)) + torch.sigmoid(torch.tensor(-2.5))) / 2  # 0.349
    assert out.argmax(1).item() == 1
    assert out.exp()[0, 0].item() == pytest.approx(p0.item(), abs=1e-6)


def export_and_run(tta, x_export, inputs, path):
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's int(shape) notice: H, W are constants by design
        torch.onnx.export(tta, (x_export,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                          output_names=["log_proba"], dynamic_axes={"images": {0: "batch"}, "log_proba": {0: "batch"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as torch above
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [sess.run(None, {"images": x.numpy()})[0] for x in inputs]


def cifar_batch(side=64):
    d = foolbox_data()
    if d is None:
        pytest.skip("foolbox sample images not installed (make setup installs them)")
    files = sorted(d.glob("cifar10_*.png"))
    assert len(files) == 20
    arr = np.stack([np.asarray(Image.open(f).convert("RGB").resize((side, side), Image.BICUBIC), dtype=np.float32) for f in files])
    return torch.from_numpy((arr / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous()  # mean = std = 0.5


@pytest.mark.parametrize("views", ["flip", "flip+crops"])
def test_onnx_export_matches_torch_on_random_and_real_images(views, tmp_path):
    tta = TTA(tiny_cnn(), views).eval()
    g = torch.Generator().manual_seed(1)
    real = cifar_batch()
    inputs = [torch.randn(1, 3, 64, 64, generator=g), torch.randn(7, 3, 64, 64, generator=g), real]
    outs = export_and_run(tta, torch.randn(2, 3, 64, 64), inputs, tmp_path / "tta.onnx")
    for x, got in zip(inputs, outs):
        with torch.no_grad():
            want = tta(x).numpy()
        assert got.shape == want.shape == (len(x), 10)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    with torch.no_grad():  # real photos: mirror-closed views give the mirror the same output
        np.testing.assert_allclose(tta(real.flip(-1)).numpy(), outs[2], atol=1e-5, rtol=0)


def test_torchscript_trace_keeps_the_batch_dynamic():
    # the exporter's TorchScript path traces (torch.jit.trace), like ONNX: H, W fixed, N free
    tta = TTA(tiny_cnn(), "flip+crops").eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(tta, torch.randn(2, 3, 32, 32), check_trace=False)
        x = torch.randn(5, 3, 32, 32)
        torch.testing.assert_close(traced(x), tta(x), atol=1e-6, rtol=0)
