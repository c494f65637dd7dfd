"""One interface over every form a trained classifier takes: a run folder (torch, via
`Run.model`), an exported ONNX file or an exported TorchScript file.

A predictor knows its labels and its preprocessing and maps a batch of preprocessed images
(N, 3, H, W) float32 to class probabilities (N, C); `predict_files`, `serve` and the export
parity check all go through it, so the three forms give the same answers by construction.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import TransferkitError

META_KEY = "transferkit"  # ONNX metadata_props key / TorchScript extra file holding the metadata (JSON)
TS_EXTRA = "transferkit.json"
INPUT_NAME = "image"  # (batch, 3, H, W) float32, RGB, resized, cropped and normalised
OUTPUT_NAMES = ("probs", "logits")  # (batch, classes) each


def make_transform(data_config: dict):
    """The eval preprocessing for a data config (resize, center crop, normalise): PIL -> tensor."""
    import timm.data

    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return timm.data.create_transform(**{k: data_config[k] for k in keys if k in data_config}, is_training=False)


class Predictor:
    """Labels + preprocessing + a function from a preprocessed batch to probabilities."""

    kind = "?"

    def __init__(self, source: str, classes: list[str], data_config: dict, meta: dict | None = None):
        self.source = source  # the run folder or model file it was loaded from
        self.classes = list(classes)
        self.data_config = dict(data_config)
        self.meta = meta or {}  # everything the artifact says about itself (run, metrics, ...)
        self._transform = None

    @property
    def transform(self):
        if self._transform is None:
            self._transform = make_transform(self.data_config)
        return self._transform

    @property
    def input_size(self) -> int:
        return int(self.data_config["input_size"][-1])

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"source": self.source, "kind": self.kind, "classes": len(self.classes), "input_size": self.input_size}


def refuse_text_run(run, what: str) -> None:
    """One clear line instead of an image pipeline failing on a run trained on texts."""
    if getattr(run, "kind", "image") == "text":
        raise TransferkitError(
            f"{run.dir}: a run trained on texts; {what} takes image runs only for now. "
            f"Label texts with `transferkit predict {run.dir} --text TEXT` (or .txt / CSV / JSONL files), or Run.predict in Python"
        )


class TorchPredictor(Predictor):
    """A run folder; the module comes from `Run.model` (the one way to get the trained model)."""

    kind = "torch"

    def __init__(self, run, what: str = "this command"):
        refuse_text_run(run, what)
        super().__init__(str(run.dir), run.classes, run.data_config, {"run": str(run.dir), "config": run.config.to_dict()})
        self.run = run

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        with torch.inference_mode():
            return self.run.model(x.contiguous(memory_format=torch.channels_last)).softmax(-1).float().numpy()


class OnnxPredictor(Predictor):
    """An exported ONNX file run with ONNX Runtime (CPU)."""

    kind = "onnx"

    def __init__(self, path: str | os.PathLike, session=None):
        ort = _onnxruntime()
        path = Path(path)
        if session is None:
            try:
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - any load failure means a bad or foreign file
                raise TransferkitError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); export it again with `transferkit export RUN_DIR`") from None
        raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if not raw:
            raise TransferkitError(f"{path}: an ONNX file without transferkit metadata (labels, preprocessing); export it with `transferkit export RUN_DIR --format onnx`")
        shape = session.get_outputs()[0].shape
        meta = checked_metadata(raw, path, shape[-1] if shape and isinstance(shape[-1], int) else None)
        super().__init__(str(path), meta["labels"], meta["preprocessing"], meta)
        self.session = session

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        arr = np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        return self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: arr})[0]


class TorchScriptPredictor(Predictor):
    """An exported TorchScript file (no transferkit or timm code needed to run the module)."""

    kind = "torchscript"

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        extra = {TS_EXTRA: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # noqa: BLE001
            raise TransferkitError(f"{path}: not a TorchScript file torch can load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        if not extra[TS_EXTRA]:
            raise TransferkitError(f"{path}: a TorchScript file without transferkit metadata; export it with `transferkit export RUN_DIR --format torchscript`")
        meta = checked_metadata(extra[TS_EXTRA], path)
        super().__init__(str(path), meta["labels"], meta["preprocessing"], meta)
        self.module = module.eval()

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        with torch.inference_mode():
            return self.module(x)[0].float().numpy()


MAX_LABELS = 100_000


def checked_metadata(raw, path: Path, n_outputs: int | None = None) -> dict:
    """An exported file's transferkit metadata, checked before anything is built from it: the
    labels are names (as many as the model has outputs), the preprocessing is in range."""
    from .run import _checked_data_config

    again = "export it again with `transferkit export RUN_DIR`"
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise TransferkitError(f"{path}: its transferkit metadata is damaged (not a JSON object); {again}")
    labels = meta.get("labels")
    if not (isinstance(labels, list) and 0 < len(labels) <= MAX_LABELS and all(isinstance(x, str) and x for x in labels)):
        raise TransferkitError(f"{path}: its metadata has no valid labels (a list of class names); {again}")
    if n_outputs is not None and n_outputs != len(labels):
        raise TransferkitError(f"{path}: its metadata names {len(labels)} labels but the model has {n_outputs} outputs; {again}")
    try:
        meta["preprocessing"] = _checked_data_config(meta.get("preprocessing"), path)
    except TransferkitError:
        raise TransferkitError(f"{path}: its preprocessing metadata is missing or out of range (input_size, mean, std, ...); {again}") from None
    return meta


def load_predictor(source, what: str = "this command") -> Predictor:
    """A predictor from a run folder, an `.onnx` file or a TorchScript `.pt` file (or a Predictor).
    `what` names the caller in the one-line refusal of text runs."""
    if isinstance(source, Predictor):
        return source
    from .run import Run

    if hasattr(source, "model") and hasattr(source, "classes") and hasattr(source, "dir"):
        return TorchPredictor(source, what)
    p = Path(source).expanduser()
    if p.is_dir():
        return TorchPredictor(Run.load(p), what)
    if not p.is_file():
        raise TransferkitError(f"{p}: no such run folder or model file; pass a folder written by `transferkit train` or a file written by `transferkit export`")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return OnnxPredictor(p)
    if suffix in (".pt", ".pth", ".torchscript"):
        return TorchScriptPredictor(p)
    raise TransferkitError(f"{p}: unknown model file type '{suffix}'; pass a run folder, a .onnx file or a TorchScript .pt file")


def _onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise TransferkitError('ONNX Runtime is not installed; pip install "transferkit[export]" (onnx, onnxruntime)') from None
    ort.set_default_logger_severity(3)  # errors only: no per-session warnings on stderr
    return ort
