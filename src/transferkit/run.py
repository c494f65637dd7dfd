"""A finished run folder as an object: its config, labels, metrics, the model and its
preprocessing, and predictions for any inputs of its kind (images or texts)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from . import io as tkio
from .config import TrainConfig
from .errors import TransferkitError
from .model_io import MODEL_FILE, load_model


@dataclass
class Run:
    """A run folder: `Run.load(dir)`; `run.predict(inputs)`; `run.metrics`, `run.classes`."""

    dir: Path
    config: TrainConfig
    classes: list[str]
    metrics: dict
    _model: object | None = field(default=None, repr=False)
    _pre: object | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "Run":
        """Open a run folder. Nothing in it is executed: JSON files and safetensors weights
        only, each checked, and a damaged or foreign folder gives a one-line error."""
        from . import modality as modalities

        d = Path(run_dir)
        for f in ("config.json", "labels.json", MODEL_FILE):
            if not (d / f).is_file():
                raise TransferkitError(f"{d}: not a finished run folder (no {f}); pass the folder `transferkit train` wrote")
        raw = read_json(d / "config.json", dict)
        try:
            cfg = TrainConfig.from_dict(raw)
        except TypeError as exc:
            raise TransferkitError(f"{d / 'config.json'}: not a transferkit run config ({exc})") from None
        if not isinstance(cfg.backbone, str) or not isinstance(cfg.extra, dict):
            raise TransferkitError(f"{d / 'config.json'}: 'backbone' must be a name and 'extra' an object")
        kind = cfg.extra.get("kind", "image")
        if kind not in modalities.MODALITIES:
            raise TransferkitError(f"{d / 'config.json'}: extra.kind must be one of {', '.join(modalities.MODALITIES)}, not {kind!r}")
        cfg.extra["data_config"] = modalities.get(kind).check_data_config(cfg.extra.get("data_config"), d / "config.json")
        classes = read_json(d / "labels.json", dict).get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise TransferkitError(f"{d / 'labels.json'}: 'classes' must be a non-empty list of names")
        metrics = read_json(d / "metrics.json", dict) if (d / "metrics.json").exists() else {}
        return cls(d, cfg, classes, metrics)

    @property
    def data_config(self) -> dict:
        return self.config.extra["data_config"]

    @property
    def kind(self) -> str:
        """What the run was trained on, so what it predicts: a modality name ('image', 'text')."""
        return self.config.extra.get("kind", "image")

    @property
    def modality(self):
        from . import modality as modalities

        return modalities.get(self.kind)

    @property
    def model(self):
        """The trained network (logits out; a tf-idf model for tfidf runs), whatever strategy trained it."""
        if self._model is None:
            self._model = load_model(self.dir, self.config, len(self.classes), self.modality)
        return self._model

    @property
    def thresholds(self):
        """Label sets: each label's decision threshold (L,), chosen on validation; None for one label per item."""
        from .multilabel_run import thresholds_of

        return thresholds_of(self.model) if self.config.multi_label else None

    @property
    def preprocessor(self):
        """Raw inputs -> model inputs, as the run trained on them (transforms or its tokenizer)."""
        if self._pre is None:
            from .backbones.text import ENCODER_DIR

            self._pre = self.modality.preprocessor(self.data_config, self.dir / ENCODER_DIR)
        return self._pre

    def predict(self, inputs: Iterable, top_k: int = 5, batch_size: int = 32) -> list[dict]:
        """Top-k labels per input. Image runs: image files, folders, tables of paths. Text
        runs: each `str` is a text to classify; `pathlib.Path` inputs are files (.txt, folders
        of them, or CSV/TSV/JSONL with a text column) whose texts are read."""
        opts = {"strings_are_texts": True, "text_column": self.config.text_column}
        refs = list(self.modality.iter_inputs([x for x in inputs], opts))
        return list(self.predict_iter(refs, top_k, batch_size))

    def predict_iter(self, refs, top_k: int = 5, batch_size: int = 32) -> Iterator[dict]:
        """Stream one dict per input ref: {'path', 'labels', 'probs', 'error'} (error '' when fine)."""
        from .modality import InputError
        from .run_engine import probabilities
        from .topk import predict_refs

        yield from predict_refs(probabilities(self), self.preprocessor, self.classes, refs, top_k, batch_size, InputError, self.thresholds)  # the path `predict RUN` takes


def read_json(path: Path, kind: type):
    try:
        obj = tkio.read_json(path)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise TransferkitError(f"{path}: damaged or not JSON ({type(exc).__name__}: {str(exc)[:120]}); train again to rebuild the run folder") from None
    if not isinstance(obj, kind):
        raise TransferkitError(f"{path}: expected a JSON {kind.__name__}, found {type(obj).__name__}")
    return obj


__all__ = ["Run", "read_json"]
