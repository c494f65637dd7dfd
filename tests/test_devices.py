"""One device and precision decision per run, recorded with the reason; bf16 autocast on the
CPU trains and keeps fp32 weights; gradient accumulation gives the update of a larger batch."""
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

import transferkit as tk
from transferkit import cli
from transferkit.loop.devices import choose

from conftest import write_class_folder

TINY = dict(backbone="test_efficientnet", pretrained=False, image_size=32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_class_folder(tmp_path_factory.mktemp("dev") / "photos", per_class=16)


def _weights(run_dir) -> dict:
    with safe_open(str(run_dir / "model.safetensors"), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def test_auto_picks_the_cpu_here_and_says_why(photos, tmp_path, capsys):
    assert not torch.cuda.is_available()  # this suite runs on CPU machines
    rc = cli.main(["train", str(photos), "--backbone", "test_efficientnet", "--no-pretrained", "--image-size", "32", "--out", str(tmp_path / "r")])
    assert rc == 0
    dev = json.loads((tmp_path / "r" / "config.json").read_text())["extra"]["device"]
    assert dev["device"] == "cpu" and dev["precision"] == "fp32" and "no CUDA or MPS device" in dev["reason"] and dev["device_name"]
    assert "device: cpu" in capsys.readouterr().err


@pytest.mark.parametrize("args,fragment", [
    (["--device", "cuda"], "no CUDA GPU is visible"),
    (["--device", "cuda:3"], "no CUDA GPU is visible"),
    (["--device", "tpu"], "choose auto, cpu, cuda, cuda:N or mps"),
    (["--precision", "fp16"], "fp16 autocast is for GPUs"),
])
def test_devices_and_precisions_this_machine_cannot_run_are_refused_in_one_line(photos, tmp_path, capsys, args, fragment):
    rc = cli.main(["train", str(photos), "--backbone", "test_efficientnet", "--no-pretrained", *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "r").exists()


def test_choose_reports_cpu_bf16_only_when_asked():
    assert choose("auto", "auto").precision == "fp32"
    p = choose("cpu", "bf16")
    assert p.precision == "bf16" and p.autocast_dtype == torch.bfloat16 and p.grad_scaler() is None
    with p.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_bf16_autocast_on_cpu_trains_and_saves_fp32_weights(photos, tmp_path):
    run = tk.train(str(photos), strategy="finetune", precision="bf16", epochs=2, head_epochs=1, batch_size=8, out=str(tmp_path / "bf16"), **TINY)
    assert run.config.extra["device"]["precision"] == "bf16"
    weights = _weights(run.dir)
    assert weights and all(t.dtype == torch.float32 for k, t in weights.items() if t.is_floating_point())
    rows = (run.dir / "history.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(np.isfinite(float(r.split(",")[1])) for r in rows)
    fp32 = tk.train(str(photos), strategy="finetune", precision="fp32", epochs=2, head_epochs=1, batch_size=8, out=str(tmp_path / "fp32"), **TINY)
    # bf16 rounds the matrix products: the weights differ a little from fp32's, not wildly
    diffs = [float((weights[k] - t).abs().max()) for k, t in _weights(fp32.dir).items() if t.is_floating_point() and t.numel() > 1]
    assert 0 < max(diffs) < 0.5


def test_grad_accum_4_at_batch_8_matches_batch_32(photos, tmp_path):
    # no randomness that differs between the two: no augmentation, no dropout, frozen BN statistics
    common = dict(strategy="finetune", epochs=2, head_epochs=0, augment="none", dropout=0.0, patience=0, calibrate="none", workers=0, **TINY)
    big = tk.train(str(photos), batch_size=32, out=str(tmp_path / "b32"), **common)
    acc = tk.train(str(photos), batch_size=8, grad_accum=4, out=str(tmp_path / "b8x4"), **common)
    assert acc.metrics["model"]["effective_batch"] == big.metrics["model"]["effective_batch"] == 32
    wa, wb = _weights(acc.dir), _weights(big.dir)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa if wa[k].is_floating_point())
    assert worst < 1e-5, worst
    moved = max(float((wa[k] - wb[k]).abs().max()) for k in wa if wa[k].is_floating_point())
    assert acc.metrics["test"]["accuracy"] == big.metrics["test"]["accuracy"]
    # and it is not vacuous: one accumulated micro-batch (no accumulation) gives other weights
    one = tk.train(str(photos), batch_size=8, out=str(tmp_path / "b8"), **common)
    assert max(float((_weights(one.dir)[k] - wb[k]).abs().max()) for k in wb if wb[k].is_floating_point()) > 100 * max(moved, 1e-7)
