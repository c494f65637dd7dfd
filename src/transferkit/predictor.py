"""One interface over every form a trained classifier takes: a run folder (torch, via
`Run.model`), an exported ONNX file or an exported TorchScript file — for images and texts.

A predictor knows its labels, its modality and its preprocessing (`preprocessor`: raw inputs
-> model inputs) and maps a batch of model inputs to class probabilities (N, C);
`predict_files`, `serve`, `Run.predict` and the export parity check all go through it, so the
forms give the same answers by construction."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import TransferkitError
from .onnx_io import META_KEY, refuse_external_data

TS_EXTRA = "transferkit.json"  # TorchScript extra file holding the metadata (JSON)
OUTPUT_NAMES = ("probs", "logits")  # (batch, classes) each
MAX_LABELS = 100_000


class Predictor:
    """Labels + modality + preprocessing + a function from a model-input batch to probabilities."""

    kind = "?"

    def __init__(self, source: str, classes: list[str], data_config: dict, modality, preprocessor, meta: dict | None = None):
        self.source = source  # the run folder or model file it was loaded from
        self.classes = list(classes)
        self.data_config = dict(data_config)
        self.modality = modality
        self.preprocessor = preprocessor
        self.meta = meta or {}  # everything the artifact says about itself (run, metrics, ...)
        t = self.meta.get("thresholds") if self.meta.get("multilabel") else None
        self.thresholds = None if t is None else np.asarray(t, dtype=np.float64)  # label sets: (L,) decision thresholds; None: one label per input

    @property
    def input_size(self) -> int | None:
        size = self.data_config.get("input_size")
        return int(size[-1]) if size else None

    def predict_proba(self, batch) -> np.ndarray:
        raise NotImplementedError

    def predict_items(self, raws: list) -> np.ndarray:
        """Probabilities for raw inputs (decoded images, texts)."""
        if not raws:
            return np.zeros((0, len(self.classes)), np.float32)
        return self.predict_proba(self.preprocessor.batch(raws))

    def predict_refs(self, refs, top_k: int = 5, batch_size: int = 32):
        """One row per input ref ({'path', 'labels', 'probs', 'error'}), streamed in batches."""
        from .modality import InputError
        from .topk import predict_refs

        return predict_refs(self.predict_proba, self.preprocessor, self.classes, refs, top_k, batch_size, InputError, self.thresholds)

    def describe(self) -> dict:
        return {"source": self.source, "kind": self.kind, "modality": self.modality.name, "classes": len(self.classes), "input_size": self.input_size,
                "multilabel": self.thresholds is not None}


class TorchPredictor(Predictor):
    """A run folder; the module comes from `Run.model` (the one way to get the trained model).
    A frozen-backbone run (probe, head) runs its backbone on the machine's ONNX export of it
    when ONNX Runtime is the engine chosen there (run_engine.py);
    `engine=False`: always the PyTorch module (the export's parity reference)."""

    kind = "torch"

    def __init__(self, run, placement=None, engine: bool = True):
        super().__init__(str(run.dir), run.classes, run.data_config, run.modality, run.preprocessor, {"run": str(run.dir), "config": run.config.to_dict()})
        self.run, self.placement = run, placement
        self.thresholds = run.thresholds
        if placement is not None and isinstance(run.model, torch.nn.Module):
            run.model.to(placement.device)
        from .run_engine import probabilities

        self._proba = probabilities(run, placement, engine)
        self.fast = self._proba.fast  # a frozen backbone on the machine's ONNX export of it, when there is one

    def predict_proba(self, batch) -> np.ndarray:
        if len(batch) == 0 or (isinstance(batch, dict) and not len(next(iter(batch.values())))):
            return np.zeros((0, len(self.classes)), np.float32)
        return self._proba(batch)


class OnnxPredictor(Predictor):
    """An exported ONNX file run with ONNX Runtime (the CUDA provider on a GPU placement)."""

    kind = "onnx"

    def __init__(self, path: str | os.PathLike, session=None, placement=None):
        ort = _onnxruntime()
        path = Path(path)
        if session is None:
            refuse_external_data(path)
            from .features.engines import ort_providers, session_options

            try:
                session = ort.InferenceSession(str(path), session_options(), providers=ort_providers(placement.device if placement is not None else None))
            except TransferkitError:
                raise
            except Exception as exc:  # noqa: BLE001 - any load failure means a bad or foreign file
                raise TransferkitError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); export it again with `transferkit export RUN_DIR`") from None
        raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if not raw:
            raise TransferkitError(f"{path}: an ONNX file without transferkit metadata (labels, preprocessing); export it with `transferkit export RUN_DIR --format onnx`")
        shape = session.get_outputs()[0].shape
        meta, modality = checked_metadata(raw, path, shape[-1] if shape and isinstance(shape[-1], int) else None)
        super().__init__(str(path), meta["labels"], meta["preprocessing"], modality, exported_preprocessor(modality, meta, path), meta)
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]

    def predict_proba(self, batch) -> np.ndarray:
        arrays = self.preprocessor.as_arrays(batch)
        if not len(next(iter(arrays.values()))):
            return np.zeros((0, len(self.classes)), np.float32)
        return self.session.run([OUTPUT_NAMES[0]], {k: arrays[k] for k in self.inputs})[0]


class TorchScriptPredictor(Predictor):
    """An exported TorchScript file (no transferkit, timm or transformers code needed to run the module)."""

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
        meta, modality = checked_metadata(extra[TS_EXTRA], path)
        super().__init__(str(path), meta["labels"], meta["preprocessing"], modality, exported_preprocessor(modality, meta, path), meta)
        self.module = module.eval()

    def predict_proba(self, batch) -> np.ndarray:
        args = tuple(batch[k] for k in self.preprocessor.input_names) if isinstance(batch, dict) else (batch,)
        if not len(args[0]):
            return np.zeros((0, len(self.classes)), np.float32)
        with torch.inference_mode():
            return self.module(*args)[0].float().numpy()


def exported_preprocessor(modality, meta: dict, path: Path):
    """The preprocessing an exported file names: its data config, and for texts the tokenizer
    folder written beside it (metadata `tokenizer`, relative to the file)."""
    files = None
    if meta.get("tokenizer"):
        files = (path.parent / meta["tokenizer"]).resolve()
        if path.parent.resolve() not in files.parents:
            raise TransferkitError(f"{path}: its metadata names a tokenizer folder outside the file's folder ({meta['tokenizer']}); export it again")
    return modality.preprocessor(meta["preprocessing"], files)


def checked_metadata(raw, path: Path, n_outputs: int | None = None) -> tuple[dict, object]:
    """An exported file's transferkit metadata, checked before anything is built from it: the
    labels are names (as many as the model has outputs), the modality is known, the
    preprocessing is in range. Returns (metadata, modality)."""
    from . import modality as modalities

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
    if meta.get("multilabel"):
        t = meta.get("thresholds")
        if not (isinstance(t, list) and len(t) == len(labels) and all(isinstance(x, (int, float)) and 0.0 <= x <= 1.0 for x in t)):
            raise TransferkitError(f"{path}: its metadata says multi-label but has no valid thresholds (one probability per label); {again}")
    kind = meta.get("modality", "image")
    if kind not in modalities.MODALITIES:
        raise TransferkitError(f"{path}: its metadata names an unknown kind of input ({kind!r}); {again}")
    modality = modalities.get(kind)
    try:
        meta["preprocessing"] = modality.check_data_config(meta.get("preprocessing"), path)
    except TransferkitError:
        raise TransferkitError(f"{path}: its preprocessing metadata is missing or out of range; {again}") from None
    return meta, modality


def load_predictor(source, placement=None) -> Predictor:
    """A predictor from a run folder, an `.onnx` file or a TorchScript `.pt` file (or a Predictor).
    `placement` (loop.devices.choose): where torch and ONNX Runtime run it (default: the CPU)."""
    if isinstance(source, Predictor):
        return source
    from .run import Run

    if hasattr(source, "model") and hasattr(source, "classes") and hasattr(source, "dir"):
        return TorchPredictor(source, placement)
    p = Path(source).expanduser()
    if p.is_dir():
        return TorchPredictor(Run.load(p), placement)
    if not p.is_file():
        raise TransferkitError(f"{p}: no such run folder or model file; pass a folder written by `transferkit train` or a file written by `transferkit export`")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return OnnxPredictor(p, placement=placement)
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
