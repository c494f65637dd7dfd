"""Inference engines for feature extraction: the same backbone function run by PyTorch
(eager, channels-last) or by ONNX Runtime (CPU, all graph optimisations) on an ONNX export
of the backbone's feature function.

`auto` picks per backbone and input size: the first job of at least AUTO_MIN_ITEMS images
times both engines on a few batches of the real input shape, alternately, and keeps the
faster; smaller jobs before that run in PyTorch (an export costs seconds that a few images do
not pay back), later jobs of any size use the recorded choice. The choice and its
timings are stored with the export in the machine's engine folder (``engine_dir``: once per
backbone, weights and input size, whatever the crop or feature cache folder), and recorded in
each run's config (``extra["engine"]``, ``extra["engine_dir"]``).
"""
from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import io as tkio
from ..errors import TransferkitError

ENGINES = ("auto", "torch", "onnx")
AUTO_MIN_ITEMS = 256  # below this, `auto` runs PyTorch without measuring (nothing to win back)
ONNX_MARGIN = 1.05  # `auto` takes ONNX Runtime only when it measures at least this much faster
DECISIVE = 2.0  # `auto` stops timing once one engine is at least this much faster in every measurement
ONNX_FILE = "backbone.onnx"
DECISION_FILE = "engine.json"
INPUT_NAME = "image"


def engine_dir(backbone, fallback_root=None) -> Path:
    """Where a backbone's ONNX export and engine choice live: once per machine
    (``paths.engines_dir()``: $TRANSFERKIT_ENGINES, else ``engines/`` in the cache root), keyed
    by the backbone's name, weights and input size only — the export does not depend on the
    crop, the feature cache folder or the run, so every run of that backbone shares it. Where
    that cannot be written, ``fallback_root/engines`` (the feature cache root)."""
    import hashlib

    from ..paths import engines_dir, safe_name

    ident = hashlib.blake2b(f"{backbone.weights_id}|{getattr(backbone, 'input_size', None)}".encode(), digest_size=8).hexdigest()
    name = f"{safe_name(backbone.name)}-{ident}"
    roots = [engines_dir()] + ([Path(fallback_root) / "engines"] if fallback_root is not None else [])
    for root in roots:
        try:
            (root / name).mkdir(parents=True, exist_ok=True)
            return root / name
        except OSError:
            continue
    raise TransferkitError(f"{roots[0]}: cannot create the engine folder; set TRANSFERKIT_ENGINES to a writable folder")


_SESSIONS: dict = {}  # (path, mtime, threads) -> ONNX Runtime session: one per process


def compute_threads() -> int:
    """Threads for the backbone: $TRANSFERKIT_THREADS if set, else the cores this process may
    use (affinity aware). On a machine busy with other jobs, fewer threads than cores can be
    faster (BENCHMARKS.md, Speed: 1 thread beat 2 on a loaded 2-core machine)."""
    env = os.environ.get("TRANSFERKIT_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise TransferkitError(f"TRANSFERKIT_THREADS={env!r}: give a whole number of threads, e.g. 2") from None
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, n)


class TorchEngine:
    """PyTorch eager on the run's device and precision (autocast): channels-last weights and
    inputs for image models, inference mode; features come back as fp32 numpy."""

    name = "torch"
    description = "PyTorch eager, channels-last, inference_mode"

    def __init__(self, backbone, placement=None):
        from ..loop.devices import choose

        self.backbone, self.placement = backbone, placement or choose("cpu", "fp32")
        if os.environ.get("TRANSFERKIT_THREADS", "").strip():
            torch.set_num_threads(compute_threads())
        self.channels_last = getattr(backbone, "kind", "image") == "image"
        backbone.model.eval().to(self.placement.device)  # in place: eval mode, on the device
        if self.channels_last:
            backbone.model.to(memory_format=torch.channels_last)

    def __call__(self, x) -> np.ndarray:
        from ..loop.devices import to_device

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.placement.autocast():
            return self.backbone.features(to_device(x, self.placement.device)).float().cpu().numpy()


class _Features(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_backbone_onnx(backbone, path: Path, opset: int | None = None) -> Path:
    """Write the backbone's feature function (images -> pooled features) to `path` as ONNX,
    batch dimension dynamic, spatial size fixed to the backbone's input size (so padding and
    pooling fold into constants). Uses the same exporter settings as `transferkit export`."""
    from ..onnx_io import DEFAULT_OPSET, export_onnx_module

    size = backbone.input_size
    module = _Features(copy.deepcopy(backbone.model).to("cpu", memory_format=torch.contiguous_format)).eval()
    with tkio.atomic_path(path) as tmp:
        export_onnx_module(module, (torch.zeros(2, 3, size, size),), tmp, opset or DEFAULT_OPSET, input_names=[INPUT_NAME], output_names=["features"])
    return path


def ort_providers(device: torch.device | None) -> list[str]:
    """ONNX Runtime execution providers for `device`: CUDA when the run is on a GPU and
    onnxruntime-gpu is installed (else a one-line refusal), the CPU otherwise."""
    if device is None or device.type == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise TransferkitError(f"--engine onnx on {device}: this ONNX Runtime has no {device.type.upper()} provider (pip install onnxruntime-gpu for CUDA); use --engine torch or auto")


def session_options(threads: int | None = None):
    """ONNX Runtime session options for every transferkit session (extraction, predict, serve,
    the int8 comparison): all graph optimisations, `threads` intra-op threads (default: one
    per usable core), sequential execution, no spinning, errors-only logging."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or compute_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    # no busy-waiting between runs: the cores go to decoding and the rest of the process (on
    # 2 cores: single-file latency 19 -> 15 ms, extraction throughput unchanged; BENCHMARKS.md)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxEngine:
    """ONNX Runtime, all graph optimisations, one thread per core; the CUDA execution provider
    on a GPU run (onnxruntime-gpu)."""

    name = "onnx"
    description = "ONNX Runtime, graph optimisations ORT_ENABLE_ALL"

    def __init__(self, backbone, path: Path, threads: int | None = None, device: torch.device | None = None):
        if not onnxruntime_available():
            raise TransferkitError('--engine onnx needs ONNX Runtime: pip install "transferkit[export]" (onnx, onnxruntime), or use --engine torch')
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        path = Path(path)
        if not path.is_file():
            try:
                export_backbone_onnx(backbone, path)
            except Exception as exc:  # noqa: BLE001 - an architecture the exporter cannot trace
                raise TransferkitError(f"backbone '{backbone.name}' cannot be exported to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); use --engine torch") from None
        threads = threads or compute_threads()
        providers = ort_providers(device)
        key = (str(path), path.stat().st_mtime_ns, threads, str(device))
        self.path = path
        if key in _SESSIONS:
            self.session = _SESSIONS[key]
            return
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        except Exception as exc:  # noqa: BLE001 - a damaged cached export: make it again next time
            path.unlink(missing_ok=True)
            raise TransferkitError(f"{path}: ONNX Runtime cannot load the cached backbone export ({type(exc).__name__}); it was removed, run again") from None
        _SESSIONS[key] = self.session

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        arr = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        return self.session.run(None, {INPUT_NAME: arr})[0]


def _throughput(engine, x: torch.Tensor, rounds: int) -> float:
    t0 = time.perf_counter()
    for _ in range(rounds):
        engine(x)
    return rounds * len(x) / (time.perf_counter() - t0)


def measure_engines(engines: dict, batch_size: int, size: int, rounds: int = 3, repeats: int = 3, decisive: float | None = None) -> dict:
    """Images/s of each engine on the same random batch, alternated up to `repeats` times (so
    load from other processes hits all alike); the median per engine. `decisive` (e.g. 2.0):
    stop after the first round where one engine's slowest measurement is that many times
    every other's fastest — no later round could change which is faster."""
    x = torch.randn(batch_size, 3, size, size)
    for e in engines.values():  # warm-up: first calls allocate and plan
        e(x)
    runs: dict[str, list[float]] = {n: [] for n in engines}
    for _ in range(repeats):
        for n, e in engines.items():
            runs[n].append(_throughput(e, x, rounds))
        if decisive and any(all(min(v) >= decisive * max(w) for m, w in runs.items() if m != n) for n, v in runs.items()):
            break
    return {n: float(np.median(v)) for n, v in runs.items()}


def select_engine(backbone, requested: str, n_items: int, engine_dir: Path, batch_size: int, placement=None):
    """The engine to run `backbone` with on the run's device, and a dict saying why (recorded
    in the run). A backbone declares the engines it has (`backbone.engines`); text encoders run
    in PyTorch."""
    from ..loop.devices import choose

    placement = placement or choose("cpu", "fp32")
    device = placement.device
    if requested not in ENGINES:
        raise TransferkitError(f"unknown engine '{requested}' (choices: {', '.join(ENGINES)})")
    own = getattr(backbone, "engines", ENGINES)
    if requested == "auto" and len(own) == 1:
        requested = own[0]
    if requested not in own:
        raise TransferkitError(f"--engine {requested}: backbone '{backbone.name}' runs with {', '.join(backbone.engines)} only")
    engine_dir = Path(engine_dir)
    onnx_path = engine_dir / ONNX_FILE
    if requested == "torch":
        return TorchEngine(backbone, placement), {"engine": "torch", "reason": "requested"}
    if requested == "onnx":
        return OnnxEngine(backbone, onnx_path, device=device), {"engine": "onnx", "reason": "requested"}
    if not onnxruntime_available():
        return TorchEngine(backbone, placement), {"engine": "torch", "reason": "auto: onnxruntime not installed"}
    if placement.precision != "fp32":
        return TorchEngine(backbone, placement), {"engine": "torch", "reason": f"auto: {placement.precision} autocast runs in PyTorch"}
    decision_file = engine_dir / (DECISION_FILE if device.type == "cpu" else f"engine-{device.type}.json")
    threads = compute_threads()
    if decision_file.is_file():  # measured before for this backbone, input size and device: any job size uses it
        try:
            d = tkio.read_json(decision_file)
            if d.get("threads") == threads and d.get("engine") in ("torch", "onnx"):
                eng = OnnxEngine(backbone, onnx_path, device=device) if d["engine"] == "onnx" else TorchEngine(backbone, placement)
                return eng, dict(d, reason=f"auto: measured earlier ({decision_file})")
        except (TransferkitError, ValueError, OSError, KeyError):
            pass  # measure again below
    if n_items < AUTO_MIN_ITEMS:
        return TorchEngine(backbone, placement), {"engine": "torch", "reason": f"auto: {n_items} items < {AUTO_MIN_ITEMS}, no export"}
    torch_engine = TorchEngine(backbone, placement)
    t0 = time.perf_counter()
    try:
        onnx_engine = OnnxEngine(backbone, onnx_path, device=device)
    except TransferkitError as exc:
        return torch_engine, {"engine": "torch", "reason": f"auto: ONNX Runtime not used ({exc})"}
    export_s = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        speed = measure_engines({"torch": torch_engine, "onnx": onnx_engine}, min(batch_size, 32), backbone.input_size, rounds=1, repeats=3, decisive=DECISIVE)
    pick = "onnx" if speed["onnx"] >= ONNX_MARGIN * speed["torch"] else "torch"
    d = {"engine": pick, "images_per_s": {k: round(v, 1) for k, v in speed.items()}, "threads": threads, "device": str(device), "export_s": round(export_s, 2)}
    try:
        tkio.write_json(decision_file, d)
    except OSError:
        pass
    return (onnx_engine if pick == "onnx" else torch_engine), dict(d, reason="auto: measured")
