"""One device and precision decision per run (`--device`, `--precision`), with the reason,
recorded in the run's config.json.

`auto` takes CUDA, then Apple MPS, then the CPU. Under torchrun each process takes the GPU of
its LOCAL_RANK. Precision `auto` is bf16 autocast on GPUs that support it, fp16 autocast with a
gradient scaler on those that do not, and fp32 on the CPU (bf16 autocast on the CPU only when
asked: it trains, but is rarely faster there). Weights stay fp32 in every case (autocast runs
the matrix products in low precision, the parameters and optimizer state are fp32), and the
metrics are computed from fp32 copies of the outputs.
"""
from __future__ import annotations

import os
import platform
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..errors import TransferkitError

DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Placement:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16: what autocast computes in (weights are always fp32)
    name: str  # the device's name, e.g. "NVIDIA H200" or the CPU model
    reason: str  # why this device and precision, for config.json and the log

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _DTYPES[self.precision]

    def autocast(self):
        """The context forward passes run in: autocast to bf16/fp16, or nothing for fp32."""
        dt = self.autocast_dtype
        if dt is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dt)

    def grad_scaler(self):
        """A gradient scaler for fp16 on CUDA (fp16 gradients underflow without one); None otherwise."""
        if self.precision == "fp16" and self.device.type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def as_dict(self) -> dict:
        return {"device": str(self.device), "device_name": self.name, "precision": self.precision, "reason": self.reason}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def choose(device: str = "auto", precision: str = "auto") -> Placement:
    """The device and precision a run uses, and why (one line). Bad values are refused."""
    device = (device or "auto").strip().lower()
    if precision not in PRECISIONS:
        raise TransferkitError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device == "auto":
        if n_cuda:
            dev, why = torch.device("cuda", local % n_cuda), f"auto: CUDA is available ({n_cuda} GPU(s))"
        elif _mps_available():
            dev, why = torch.device("mps"), "auto: Apple MPS is available"
        else:
            dev, why = torch.device("cpu"), f"auto: no CUDA or MPS device visible to PyTorch {torch.__version__}"
    elif device == "cpu":
        dev, why = torch.device("cpu"), "--device cpu"
    elif device == "mps":
        if not _mps_available():
            raise TransferkitError("--device mps: Apple's MPS backend is not available in this PyTorch on this machine; use --device auto or cpu")
        dev, why = torch.device("mps"), "--device mps"
    elif device == "cuda" or device.startswith("cuda:"):
        if not n_cuda:
            raise TransferkitError(f"--device {device}: no CUDA GPU is visible to PyTorch {torch.__version__} (a CPU build, or no driver); use --device auto or cpu")
        idx = local % n_cuda if device == "cuda" else _index(device, n_cuda)
        dev, why = torch.device("cuda", idx), f"--device {device}"
    else:
        raise TransferkitError(f"--device {device}: choose auto, cpu, cuda, cuda:N or mps")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else ("Apple GPU (MPS)" if dev.type == "mps" else cpu_name())
    prec, pwhy = _precision(dev, precision)
    return Placement(dev, prec, name, f"{why}; {pwhy}")


def _index(device: str, n: int) -> int:
    try:
        i = int(device.split(":", 1)[1])
    except ValueError:
        raise TransferkitError(f"--device {device}: write cuda:N with N a GPU number (0 to {n - 1})") from None
    if not 0 <= i < n:
        raise TransferkitError(f"--device {device}: this machine has {n} CUDA GPU(s), numbered 0 to {n - 1}")
    return i


def _precision(dev: torch.device, precision: str) -> tuple[str, str]:
    if dev.type == "cpu":
        if precision == "fp16":
            raise TransferkitError("--precision fp16: fp16 autocast is for GPUs; on the CPU use bf16 or fp32")
        if precision == "bf16":
            return "bf16", "--precision bf16 (bf16 autocast on the CPU, fp32 weights)"
        return "fp32", "fp32 on the CPU" + (" (auto)" if precision == "auto" else "")
    if dev.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return ("bf16", "auto: bf16 autocast (the GPU supports bf16)") if bf16_ok else ("fp16", "auto: fp16 autocast with a gradient scaler (no bf16 on this GPU)")
        if precision == "bf16" and not bf16_ok:
            raise TransferkitError(f"--precision bf16: {torch.cuda.get_device_name(dev)} has no bf16 support; use fp16 or fp32")
        return precision, f"--precision {precision}"
    if precision == "auto":  # MPS: fp16 autocast is the supported low precision
        return "fp16", "auto: fp16 autocast on MPS"
    return precision, f"--precision {precision}"


def to_device(batch, device: torch.device, non_blocking: bool = True):
    """A batch (a tensor, or the tokenizer's dict of tensors) on `device`; a host tensor in
    pinned memory is copied asynchronously."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    return batch.to(device, non_blocking=non_blocking)
