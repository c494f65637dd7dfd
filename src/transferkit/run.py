"""A finished run folder as an object: its config, labels, metrics and a model that predicts."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from . import io as tkio
from .config import TrainConfig
from .data.images import IMAGE_EXTENSIONS, ImageDecodeError, open_rgb
from .errors import TransferkitError
from .heads import build_head
from .model import TransferModel
from .text_run import ENCODER_DIR, save_text_encoder, snippet  # noqa: F401  (re-exported for the pipeline)

MODEL_FILE = "model.safetensors"


def save_model(path: Path, model: TransferModel, head_info: dict) -> None:
    from safetensors.torch import save_file

    meta = {k: str(v) for k, v in head_info.items() if k in ("head", "hidden", "dim", "n_classes")}
    with tkio.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


@dataclass
class Run:
    """A run folder: `Run.load(dir)`; `run.predict(paths)`; `run.metrics`, `run.classes`."""

    dir: Path
    config: TrainConfig
    classes: list[str]
    metrics: dict
    _model: TransferModel | None = None
    _data_config: dict | None = None

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "Run":
        d = Path(run_dir)
        for f in ("config.json", "labels.json", MODEL_FILE):
            if not (d / f).is_file():
                raise TransferkitError(f"{d}: not a finished run folder (no {f}); pass the folder `transferkit train` wrote")
        cfg = TrainConfig.from_dict(tkio.read_json(d / "config.json"))
        classes = tkio.read_json(d / "labels.json")["classes"]
        metrics = tkio.read_json(d / "metrics.json") if (d / "metrics.json").exists() else {}
        return cls(d, cfg, classes, metrics)

    _tokenizer: object | None = None

    @property
    def data_config(self) -> dict:
        return self.config.extra["data_config"]

    @property
    def kind(self) -> str:
        """'image' or 'text': what the run was trained on, so what it predicts."""
        return self.config.extra.get("kind", "image")

    @property
    def model(self) -> TransferModel:
        if self._model is None:
            if self.kind == "text":
                from .text_run import load_text_model

                self._model, self._tokenizer = load_text_model(self.dir, self.config, len(self.classes), MODEL_FILE)
            else:
                self._model = _load_model(self.dir / MODEL_FILE, self.config, len(self.classes))
        return self._model

    def predict(self, inputs: Iterable[str | os.PathLike], top_k: int = 5, batch_size: int = 32, progress: bool = False) -> list[dict]:
        """Top-k labels per input.

        Image runs: image files (folders and CSVs of paths are expanded). Text runs: each `str`
        is a text to classify; `pathlib.Path` inputs are files (.txt, folders of them, or
        CSV/TSV/JSONL with a text column) whose texts are read."""
        if self.kind == "text":
            from .text_run import read_text_inputs

            flat: list[tuple[str, str]] = []
            for i, x in enumerate(inputs):  # the caller's order: texts as given, files expanded in place
                flat += [(f"text[{i}]", x)] if isinstance(x, str) else read_text_inputs([x], self.config.text_column)
            return list(self.predict_text_iter(flat, top_k, batch_size))
        return list(self.predict_iter(expand_inputs(inputs), top_k, batch_size, progress))

    def predict_text_iter(self, items: list[tuple[str, str]], top_k: int = 5, batch_size: int = 32) -> Iterator[dict]:
        """Stream one dict per (id, text): {'path', 'labels', 'probs', 'error'}."""
        from .text_run import predict_text_iter

        model = self.model
        max_length = int(self.config.max_length or self.data_config.get("max_length") or 512)
        return predict_text_iter(model, self._tokenizer, max_length, self.classes, items, top_k, batch_size)

    def predict_iter(self, paths: list[str], top_k: int = 5, batch_size: int = 32, progress: bool = False) -> Iterator[dict]:
        """Stream one dict per path: {'path', 'labels', 'probs', 'error'} (error '' when fine)."""
        from tqdm.auto import tqdm

        if self.kind == "text":
            from .text_run import read_text_inputs

            yield from self.predict_text_iter(read_text_inputs(paths, self.config.text_column), top_k, batch_size)
            return

        from .features.extract import default_workers

        model = self.model
        k = min(top_k, len(self.classes))
        loader = torch.utils.data.DataLoader(
            _PathImages(paths, self.data_config), batch_size=batch_size, num_workers=default_workers(len(paths)), collate_fn=_collate
        )
        bar = tqdm(total=len(paths), desc="predicting", unit="img", disable=not progress)
        with torch.inference_mode():
            for x, ok_idx, errors in loader:
                probs = model(x.contiguous(memory_format=torch.channels_last)).softmax(-1).numpy() if len(ok_idx) else np.zeros((0, len(self.classes)))
                rows = {i: p for i, p in zip(ok_idx, probs)}
                for i in sorted(list(rows) + list(errors)):
                    if i in errors:
                        yield {"path": paths[i], "labels": [], "probs": [], "error": errors[i]}
                    else:
                        top = np.argsort(-rows[i])[:k]
                        yield {"path": paths[i], "labels": [self.classes[t] for t in top], "probs": [float(rows[i][t]) for t in top], "error": ""}
                bar.update(len(ok_idx) + len(errors))
        bar.close()


def _load_model(path: Path, cfg: TrainConfig, n_classes: int) -> TransferModel:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .backbones.registry import _resolve_arch, _timm

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    backbone = _timm().create_model(_resolve_arch(cfg.backbone), pretrained=False)
    head = build_head(meta.get("head", "linear"), int(backbone.num_features), n_classes, int(meta.get("hidden", cfg.hidden)))
    model = TransferModel(backbone, head)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise TransferkitError(f"{path}: weights do not fit the run's model ({str(exc).splitlines()[0][:200]})") from None
    return model.eval().to(memory_format=torch.channels_last)


class _PathImages(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], data_config: dict):
        import timm.data

        from .features.extract import resize_hint_for

        self.paths = paths
        self.transform = timm.data.create_transform(**data_config, is_training=False)
        self.hint = resize_hint_for(data_config)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.transform(open_rgb(self.paths[i], self.hint)), i, None
        except ImageDecodeError as exc:
            return None, i, str(exc)


def _collate(batch):
    ok = [(x, i) for x, i, e in batch if e is None]
    errors = {i: e for _, i, e in batch if e is not None}
    x = torch.stack([x for x, _ in ok]) if ok else torch.zeros(0)
    return x, [i for _, i in ok], errors


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given; folders expanded to the image files under them; CSVs to their path column."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.suffix.lower() == ".csv" and p.is_file():
            with open(p, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
            col = next((c for c in (rows[0].keys() if rows else []) if c.strip().lower() in ("path", "file", "filename", "image")), None)
            if col is None:
                raise TransferkitError(f"{p}: needs a 'path' column listing the images to predict")
            out += [str(p.parent / r[col]) if not os.path.isabs(r[col]) else r[col] for r in rows]
        else:
            out.append(str(p))
    return out
