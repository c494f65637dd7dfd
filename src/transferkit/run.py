"""A finished run folder as an object: its config, labels, metrics and a model that predicts."""
from __future__ import annotations

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
from .text_run import ENCODER_DIR, save_text_encoder, snippet  # noqa: F401  (re-exported for the pipeline)

MODEL_FILE = "model.safetensors"


SPEC_KEY = "transferkit_model"  # safetensors metadata: JSON spec of the architecture (model.build_model)


def save_model(path: Path, model: torch.nn.Module, head_info: dict) -> None:
    """Weights as safetensors; the metadata holds the model's spec so any kind reloads."""
    import json

    from safetensors.torch import save_file

    meta = {k: str(v) for k, v in head_info.items() if k in ("head", "hidden", "dim", "n_classes", "power")}
    spec = getattr(model, "spec", None)
    if spec:
        meta[SPEC_KEY] = json.dumps(spec)
    with tkio.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


@dataclass
class Run:
    """A run folder: `Run.load(dir)`; `run.predict(paths)`; `run.metrics`, `run.classes`."""

    dir: Path
    config: TrainConfig
    classes: list[str]
    metrics: dict
    _model: torch.nn.Module | None = None
    _data_config: dict | None = None

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "Run":
        """Open a run folder. Nothing in it is executed: JSON files and safetensors weights
        only, each checked, and a damaged or foreign folder gives a one-line error."""
        d = Path(run_dir)
        for f in ("config.json", "labels.json", MODEL_FILE):
            if not (d / f).is_file():
                raise TransferkitError(f"{d}: not a finished run folder (no {f}); pass the folder `transferkit train` wrote")
        raw = _read_json(d / "config.json", dict)
        try:
            cfg = TrainConfig.from_dict(raw)
        except TypeError as exc:
            raise TransferkitError(f"{d / 'config.json'}: not a transferkit run config ({exc})") from None
        if not isinstance(cfg.backbone, str) or not isinstance(cfg.extra, dict):
            raise TransferkitError(f"{d / 'config.json'}: 'backbone' must be a name and 'extra' an object")
        kind = cfg.extra.get("kind", "image")
        if kind not in ("image", "text"):
            raise TransferkitError(f"{d / 'config.json'}: extra.kind must be 'image' or 'text', not {kind!r}")
        check = _checked_text_config if kind == "text" else _checked_data_config
        cfg.extra["data_config"] = check(cfg.extra.get("data_config"), d / "config.json")
        classes = _read_json(d / "labels.json", dict).get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise TransferkitError(f"{d / 'labels.json'}: 'classes' must be a non-empty list of names")
        metrics = _read_json(d / "metrics.json", dict) if (d / "metrics.json").exists() else {}
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
    def model(self) -> torch.nn.Module:
        """The trained network (logits out), whatever strategy trained it."""
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


def _read_json(path: Path, kind: type):
    try:
        obj = tkio.read_json(path)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise TransferkitError(f"{path}: damaged or not JSON ({type(exc).__name__}: {str(exc)[:120]}); train again to rebuild the run folder") from None
    if not isinstance(obj, kind):
        raise TransferkitError(f"{path}: expected a JSON {kind.__name__}, found {type(obj).__name__}")
    return obj


_INTERPOLATIONS = {"nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"}
_CROP_MODES = {"center", "squash", "border"}


def _checked_data_config(dc, where: Path) -> dict:
    """The preprocessing a run recorded, checked field by field (it drives timm's transform)."""
    try:
        size = tuple(int(v) for v in dc["input_size"])
        mean, std = tuple(float(v) for v in dc["mean"]), tuple(float(v) for v in dc["std"])
        out = {
            "input_size": size,
            "interpolation": str(dc.get("interpolation", "bilinear")),
            "mean": mean,
            "std": std,
            "crop_pct": float(dc.get("crop_pct", 1.0)),
            "crop_mode": str(dc.get("crop_mode", "center")),
        }
        ok = (
            len(size) == 3 and size[0] == 3 and all(8 <= v <= 4096 for v in size[1:])
            and len(mean) == len(std) == 3 and all(v > 0 for v in std)
            and out["interpolation"] in _INTERPOLATIONS and out["crop_mode"] in _CROP_MODES
            and 0.05 <= out["crop_pct"] <= 2.0
        )
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise TransferkitError(f"{where}: extra.data_config is missing or out of range (input_size, mean, std, interpolation, crop_pct, crop_mode); train again to rebuild the run folder")
    return out


def _checked_text_config(dc, where: Path) -> dict:
    """A text run's input settings: tokens kept per text (a tfidf run has none)."""
    if not isinstance(dc, dict) or dc.get("kind") != "text":
        raise TransferkitError(f"{where}: extra.data_config of a text run must say kind 'text'; train again to rebuild the run folder")
    n = dc.get("max_length")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 4 <= n <= 1_000_000):
        raise TransferkitError(f"{where}: extra.data_config.max_length {n!r} is out of range (4 to 1,000,000 tokens); train again to rebuild the run folder")
    return dict(dc)


def safetensors_header(path: Path) -> tuple[dict, dict]:
    """(metadata, {tensor name: shape}) of a safetensors file, read from its header only, so
    shapes can be checked before anything is allocated; a damaged file is a one-line error."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}, {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise TransferkitError(f"{path}: not a valid safetensors file ({type(exc).__name__}: {str(exc)[:160]}); train again to rebuild it") from None


def _load_model(path: Path, cfg: TrainConfig, n_classes: int) -> torch.nn.Module:
    """Build the run's model and load its safetensors weights, checked against the file's own
    header first: shapes come from the file, so a hostile config cannot make us allocate more
    than the file holds. The architecture comes from the spec in the file's metadata (any
    strategy's model), its backbone from the run's config; older runs (no spec) are probes."""
    import json

    from safetensors.torch import load_file

    from .backbones.registry import _resolve_arch
    from .model import build_model

    meta, shapes = safetensors_header(path)
    bad = f"{path}: the model description in its metadata is not one this transferkit version builds"
    if SPEC_KEY in meta:
        try:
            spec = json.loads(meta[SPEC_KEY])
        except ValueError:
            raise TransferkitError(f"{bad} (not JSON); train again to rebuild the run folder") from None
    else:  # run folders written before specs: a timm backbone (classifier kept) + a probe head
        kind = meta.get("head", "linear")
        head_shapes = {k[len("head.") :]: v for k, v in shapes.items() if k.startswith("head.")}
        if kind == "mlp" and len(head_shapes.get("0.weight", ())) == 2:
            hidden = head_shapes["0.weight"][0]
        elif kind == "linear":
            hidden = 1
        else:
            raise TransferkitError(f"{path}: unknown or malformed head ({kind!r}); train again to rebuild the run folder")
        spec = {"kind": "transfer", "classifier_reset": False, "head": {"kind": kind, "hidden": hidden}}
    try:
        if not isinstance(spec, dict) or (spec.get("kind") == "transfer" and not isinstance(spec.get("head"), dict)):
            raise TypeError("not a mapping")
        if spec.get("kind") == "transfer":  # the backbone is the run's; n_classes its labels'
            spec = {**spec, "backbone": cfg.backbone, "arch": _resolve_arch(cfg.backbone)}
            spec["head"] = {**spec["head"], "dim": None, "n_classes": n_classes}
        elif "n_classes" in spec and spec["n_classes"] != n_classes:
            raise ValueError(f"{spec['n_classes']} outputs for {n_classes} labels")
        with torch.device("meta"):  # shapes only: nothing allocated until the file is known to fit
            expected = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TransferkitError(f"{bad} ({type(exc).__name__}: {str(exc)[:160]}); train again to rebuild the run folder") from None
    if expected != shapes:
        diff = sorted(set(expected.items()) ^ set(shapes.items()))[:2]
        raise TransferkitError(f"{path}: weights do not fit a {cfg.backbone} with {n_classes} classes (first differences: {diff}); the run folder is damaged or mixed")
    model = build_model(spec)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:  # noqa: BLE001
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


def iter_inputs(inputs: Iterable[str | os.PathLike], data_root: str | os.PathLike | None = None) -> Iterator[str]:
    """Image paths, lazily: files as given; folders walked in sorted order (image files only,
    hidden files and folders skipped, symlinked folders not followed); CSVs row by row from
    their path column.

    Paths inside a CSV follow the training rule: relative to `data_root` (default: the CSV's
    folder) and inside it, or the CSV is refused.
    """
    from .data.sources import PATH_COLUMNS, read_csv_rows, within

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."):
                        yield os.path.join(dirpath, f)
        elif p.suffix.lower() in (".csv", ".tsv") and p.is_file():
            header, rows = read_csv_rows(p)
            col = next((h for h in header if h and h.strip().lower() in PATH_COLUMNS), None)
            if col is None:
                raise TransferkitError(f"{p}: needs a 'path' column listing the images to predict; found {header}")
            root = Path(data_root).expanduser() if data_root else p.parent
            for n, r in rows:
                listed = (r.get(col) or "").strip()
                if not listed:
                    continue  # a blank row names nothing to predict
                full = within(root, listed)
                if full is None:
                    raise TransferkitError(f"{p}: line {n}: '{listed}' is outside {os.path.abspath(root)}; paths in a CSV must stay inside its folder; pass --data-root DIR to allow another folder")
                yield str(full)
        else:
            yield str(p)


def expand_inputs(inputs: Iterable[str | os.PathLike], data_root: str | os.PathLike | None = None) -> list[str]:
    """All of `iter_inputs` as a list."""
    return list(iter_inputs(inputs, data_root))
