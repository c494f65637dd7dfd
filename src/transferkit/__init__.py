"""transferkit: transfer learning studies from a folder of photos, in one command.

The public API; every CLI command is a thin call of one of these.
"""
from . import _compat  # noqa: F401  (must run before timm/torchvision are imported)
from .backbones import Backbone, create_backbone, list_backbones
from .compare import compare, list_presets, load_preset
from .config import TrainConfig
from .data import ImageDataset, Splits, check_dataset, list_datasets, load_dataset, make_splits
from .errors import TransferkitError
from .evaluate import evaluate
from .exporter import export
from .features import FeatureCache, extract_features
from . import train as _train_package  # noqa: F401  (loaded first: `transferkit.train` below is the function)
from .pipeline import train
from .bulk_predict import predict_files
from .predictor import Predictor, load_predictor
from .report import render_report, write_compare_report, write_run_report
from .run import Run

__version__ = "0.1.0"


def load_run(run_dir) -> Run:
    """Open a finished run folder (for `predict`, its metrics and config)."""
    return Run.load(run_dir)


def serve(model, host: str = "127.0.0.1", port: int = 8000, **limits) -> None:
    """Serve a run folder or exported model over HTTP (FastAPI on uvicorn); see `create_app`."""
    from .server import serve as _serve

    _serve(model, host, port, **limits)


def create_app(model, **limits):
    """The FastAPI app `serve` runs, for tests or mounting in another ASGI app."""
    from .server import create_app as _create_app

    return _create_app(model, **limits)


def predict(run_dir, inputs, top_k: int = 5) -> list[dict]:
    """Top-k labels for image files, folders or CSVs of paths, with a trained run."""
    return Run.load(run_dir).predict(inputs, top_k=top_k)


__all__ = [
    "Backbone",
    "FeatureCache",
    "ImageDataset",
    "Predictor",
    "Run",
    "Splits",
    "TrainConfig",
    "TransferkitError",
    "check_dataset",
    "compare",
    "create_app",
    "create_backbone",
    "evaluate",
    "export",
    "extract_features",
    "list_backbones",
    "list_datasets",
    "list_presets",
    "load_dataset",
    "load_predictor",
    "load_preset",
    "load_run",
    "make_splits",
    "predict",
    "predict_files",
    "serve",
    "render_report",
    "train",
    "write_compare_report",
    "write_run_report",
]
