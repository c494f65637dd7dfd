"""A frozen-backbone run's backbone on the machine's engine for it, for prediction.

A probe (or a frozen body + head) never changes its backbone: the run's features are the
pretrained backbone's, which the machine's engine folder for it (`extra["engine_dir"]`,
features/engines.engine_dir) may already hold as an ONNX export, with the measured choice of
engine for this machine. When that choice is ONNX Runtime, a run folder predicts at extraction
speed by running the export for the features and the run's own head (and temperature) in
PyTorch on them, instead of the eager backbone.

Used only when everything says it is the same function: a probe or a frozen body + head (one
backbone or a feature ensemble), no test-time augmentation, on the CPU in fp32, the export's
input size equal to the batch's, and, on the first batch, the export's features equal to the
run's own backbone's on two of its items. Otherwise (another machine without the export, a
fine-tuned body, a GPU) the run predicts through its PyTorch module; the answers are the same
either way.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from . import io as tkio
from .features.engines import DECISION_FILE, ONNX_FILE, OnnxEngine, onnxruntime_available

FROZEN_BODY = ("probe", "head")  # strategies that never change the backbone
PARITY_ITEMS = 2  # items of the first batch run through both, to prove the export is the run's backbone
PARITY_TOL = 1e-3  # max |difference| of features, relative to their largest magnitude


def engine_file(edir, ran_on: str | None = None) -> Path | None:
    """The ONNX export of the backbone in engine folder `edir` (features/engines.engine_dir),
    when ONNX Runtime is its engine here: the choice measured there, or the engine the run's own
    extraction ran on (`ran_on`, e.g. `--engine onnx`); else None."""
    if not edir:
        return None
    path, decision = Path(edir) / ONNX_FILE, Path(edir) / DECISION_FILE
    if not path.is_file():
        return None
    chosen = ran_on
    if decision.is_file():
        try:
            chosen = tkio.read_json(decision).get("engine")
        except Exception:  # noqa: BLE001 - an unreadable or damaged choice: what the run ran on
            pass
    return path if chosen == "onnx" else None


def _bodies(model):
    """(timm bodies, input names or None for a single tensor) of a probe's model, or None."""
    from .models import FeatureEnsemble, TransferModel

    if type(model) is TransferModel:
        return [model.backbone], None
    if type(model) is FeatureEnsemble:
        return list(model.bodies), [f"image_{i}" for i in range(len(model.bodies))]
    return None


class EngineForward:
    """batch -> calibrated logits of a probe model, its backbone(s) on ONNX Runtime."""

    def __init__(self, model, engines: list, names: list[str] | None, bodies: list):
        self.model, self.engines, self.names, self.bodies = model, engines, names, bodies
        self.checked = False
        self.usable = True

    def _inputs(self, batch) -> list[torch.Tensor]:
        return [batch] if self.names is None else [batch[n] for n in self.names]

    def _same_as_torch(self, xs: list[torch.Tensor], feats: list[np.ndarray]) -> bool:
        with torch.inference_mode():
            for body, x, f in zip(self.bodies, xs, feats):
                ref = body.forward_head(body.forward_features(x[:PARITY_ITEMS].contiguous(memory_format=torch.channels_last)), pre_logits=True).float().numpy()
                if ref.shape != f[:PARITY_ITEMS].shape or np.abs(ref - f[:PARITY_ITEMS]).max() > PARITY_TOL * max(1.0, float(np.abs(ref).max())):
                    return False
        return True

    def __call__(self, batch) -> torch.Tensor | None:
        """Logits (N, C), or None when the export turned out not to be the run's backbone
        (then the caller runs the PyTorch module, and so does every later batch)."""
        if not self.usable:
            return None
        xs = self._inputs(batch)
        if any(tuple(x.shape[1:]) != tuple(e.session.get_inputs()[0].shape[1:]) for e, x in zip(self.engines, xs)):
            self.usable = False  # exported for another input size
            return None
        feats = [e(x) for e, x in zip(self.engines, xs)]
        if not self.checked:
            self.checked = True
            if not self._same_as_torch(xs, feats):
                self.usable = False
                warnings.warn("the cached backbone export does not match this run's backbone; predicting with PyTorch", RuntimeWarning, stacklevel=2)
                return None
        with torch.inference_mode():
            f = torch.from_numpy(np.concatenate(feats, axis=1) if len(feats) > 1 else feats[0])
            return self.model._calibrated(self.model.head(f))


def engine_forward(run, model, placement=None) -> EngineForward | None:
    """The fast path for `run` (its loaded `model`), or None where it does not apply."""
    if placement is not None and (placement.device.type != "cpu" or placement.precision != "fp32"):
        return None
    cfg = run.config
    if cfg.strategy not in FROZEN_BODY or run.kind != "image" or cfg.tta != "none" or not onnxruntime_available():
        return None
    found = _bodies(model)
    if found is None:
        return None
    bodies, names = found
    dirs = cfg.extra.get("engine_dirs") if names is not None else [cfg.extra.get("engine_dir")]
    if not isinstance(dirs, list) or len(dirs) != len(bodies):
        return None
    files = [engine_file(d, cfg.extra.get("engine")) for d in dirs]
    if any(f is None for f in files):
        return None
    engines = []
    for f in files:
        try:
            eng = OnnxEngine(None, f)
        except Exception:  # noqa: BLE001 - a damaged export: the PyTorch module answers
            return None
        engines.append(eng)
    return EngineForward(model, engines, names, bodies)


def probabilities(run, placement=None, engine: bool = True):
    """A function from a batch of the run's model inputs to class probabilities (N, C) (label
    sets: each label's sigmoid), through the engine path where it applies (`engine`), else the
    run's PyTorch module. Its `fast` attribute: the EngineForward used, or None."""
    from .model_io import predict_proba
    from .models import is_multilabel

    model = run.model
    fast = engine_forward(run, model, placement) if engine else None

    def proba(batch):
        logits = fast(batch) if fast is not None else None
        if logits is None:
            return predict_proba(model, batch, placement)
        return (logits.sigmoid() if is_multilabel(model) else logits.softmax(-1)).numpy()

    proba.fast = fast
    return proba
