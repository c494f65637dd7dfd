"""transferkit: transfer learning studies from a folder of photos or a table of texts, in one command.

The public API; every CLI command is a thin call of one of these. Names load on first use
(PEP 562), so `import transferkit` and `transferkit --help` stay fast.
"""
from __future__ import annotations

import importlib

from . import _compat
from ._version import __version__

_compat.install()  # the torchvision fix, applied when something first imports torchvision

# public name -> "module:attribute" (relative to this package)
_API = {
    "Backbone": "backbones:Backbone",
    "TextBackbone": "backbones:TextBackbone",
    "FeatureCache": "features:FeatureCache",
    "ImageDataset": "data:ImageDataset",
    "TextDataset": "data:TextDataset",
    "Predictor": "predictor:Predictor",
    "Run": "run:Run",
    "Splits": "data:Splits",
    "TrainConfig": "config:TrainConfig",
    "TransferkitError": "errors:TransferkitError",
    "audit_data": "trust:audit_dataset",
    "check_dataset": "data:check_dataset",
    "compare": "comparison:compare",
    "create_app": "server:create_app",
    "create_backbone": "backbones:create_backbone",
    "create_text_backbone": "backbones:create_text_backbone",
    "evaluate": "metrics:evaluate",
    "export": "exporter:export",
    "extract_features": "features:extract_features",
    "list_backbones": "backbones:list_backbones",
    "list_datasets": "data:list_datasets",
    "list_presets": "comparison:list_presets",
    "load_dataset": "modality:load_dataset",
    "load_predictor": "predictor:load_predictor",
    "load_preset": "comparison:load_preset",
    "make_splits": "data:make_splits",
    "predict_files": "bulk_predict:predict_files",
    "render_report": "report:render_report",
    "serve": "server:serve",
    "train": "pipeline:train",
    "tune": "tuning:tune",
    "write_compare_report": "report:write_compare_report",
    "write_run_report": "report:write_run_report",
}


def load_run(run_dir):
    """Open a finished run folder (for `predict`, its metrics and config)."""
    from .run import Run

    return Run.load(run_dir)


def list_strategies(modality: str | None = None) -> dict[str, dict]:
    """The strategies (of one modality, or all): name -> what it does and which data it takes."""
    from .strategies.registry import STRATEGIES

    return {n: {"summary": s.summary, "modalities": list(s.modalities), "baseline": s.baseline}
            for n, s in STRATEGIES.items() if modality is None or modality in s.modalities}


def predict(model, inputs, top_k: int = 5) -> list[dict]:
    """Top-k labels with a run folder or an exported .onnx / TorchScript file, for inputs of
    its kind: image files, folders or tables of paths; or texts (each `str` is a text), .txt
    files and tables of texts for a text model."""
    from .predictor import load_predictor

    pred = load_predictor(model)
    refs = pred.modality.iter_inputs(list(inputs), {"strings_are_texts": True, "text_column": pred.meta.get("config", {}).get("text_column")})
    return list(pred.predict_refs(refs, top_k))


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name].split(":")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = sorted([*_API, "list_strategies", "load_run", "predict", "__version__"])
