"""A trained model to and from a run folder's `model.safetensors`, for every strategy and kind
of data: the weights as safetensors, the model's spec (models.py) in the file's metadata.

Loading executes nothing from the folder: the spec is JSON, the weights safetensors, and the
shapes the spec implies are checked on the meta device against the file's own header before
anything is allocated (a hostile config cannot make us allocate more than the file holds). Run
folders written before specs rebuild from what they have (the modality's `legacy_spec`)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import io as tkio
from .errors import TransferkitError

MODEL_FILE = "model.safetensors"
SPEC_KEY = "transferkit_model"  # safetensors metadata: JSON spec of the architecture (models.build_model)
OPTIONAL_KEYS = ("temperature",)  # entries older weight files do not have (filled with their default)


def save_model(folder: Path, model, info: dict, backbone=None) -> None:
    """`folder/model.safetensors` (and what the model needs beside it: a tf-idf vocabulary, a
    tokenizer): weights, and the spec in the metadata so any kind reloads."""
    folder = Path(folder)
    if not isinstance(model, torch.nn.Module):  # a scikit-learn-style model saves itself (tfidf)
        model.save(folder, MODEL_FILE)
        return
    from safetensors.torch import save_file

    meta = {k: str(v) for k, v in info.items() if k in ("head", "hidden", "dim", "n_classes", "power")}
    spec = getattr(model, "spec", None)
    if spec:
        meta[SPEC_KEY] = json.dumps(spec)
    with tkio.atomic_path(folder / MODEL_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    if backbone is not None:
        backbone.save_files(folder)


def safetensors_header(path: Path) -> tuple[dict, dict]:
    """(metadata, {tensor name: shape}) of a safetensors file, read from its header only, so
    shapes can be checked before anything is allocated; a damaged file is a one-line error."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}, {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise TransferkitError(f"{path}: not a valid safetensors file ({type(exc).__name__}: {str(exc)[:160]}); train again to rebuild it") from None


def load_model(folder: Path, cfg, n_classes: int, modality):
    """The run's trained model, rebuilt from its spec and loaded, in eval mode."""
    from safetensors.torch import load_file

    from .models import build_model

    path = Path(folder) / MODEL_FILE
    meta, shapes = safetensors_header(path)
    if meta.get("head") == "tfidf-logreg":
        from .tfidf import TfidfModel

        try:
            return TfidfModel.load(Path(folder), MODEL_FILE)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TransferkitError(f"{folder}: the tf-idf model cannot be read ({type(exc).__name__}: {str(exc)[:160]}); train again to rebuild the run folder") from None
    bad = f"{path}: the model description in its metadata is not one this transferkit version builds"
    if SPEC_KEY in meta:
        try:
            spec = json.loads(meta[SPEC_KEY])
        except ValueError:
            raise TransferkitError(f"{bad} (not JSON); train again to rebuild the run folder") from None
    else:
        spec = modality.legacy_spec(meta, shapes, path)
    try:
        spec = _completed(spec, cfg, n_classes)
        with torch.device("meta"):  # shapes only: nothing allocated until the file is known to fit
            expected = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
    except TransferkitError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
        raise TransferkitError(f"{bad} ({type(exc).__name__}: {str(exc)[:160]}); train again to rebuild the run folder") from None
    have = {k: v for k, v in shapes.items()}
    for k in OPTIONAL_KEYS:
        if k in expected and k not in have:
            have[k] = expected[k]
    if expected != have:
        diff = sorted(set(expected.items()) ^ set(have.items()))[:2]
        raise TransferkitError(f"{path}: weights do not fit a {cfg.backbone} with {n_classes} classes (first differences: {diff}); the run folder is damaged or mixed")
    model = build_model(spec)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:  # noqa: BLE001
        raise TransferkitError(f"{path}: weights do not fit the run's model ({str(exc).splitlines()[0][:200]})") from None
    model.eval()
    if modality.channels_last:
        model.to(memory_format=torch.channels_last)
    if spec.get("tta", "none") != "none":  # test-time augmentation: part of the model, so predict, serve and export apply it
        from .tta import TTA

        model = TTA(model, spec["tta"]).eval()
        model.spec = spec
    return model


def _completed(spec: dict, cfg, n_classes: int) -> dict:
    """The spec with what the run folder knows for sure: its backbone and its classes."""
    if not isinstance(spec, dict) or (spec.get("kind") in ("transfer", "text_transfer", "feature_ensemble") and not isinstance(spec.get("head"), dict)):
        raise TypeError("not a mapping with a head")
    if spec.get("kind") == "transfer":
        from .backbones.image import resolve_arch

        spec = {**spec, "backbone": cfg.backbone, "arch": resolve_arch(cfg.backbone)}  # the run's config names the backbone; the file's shapes must fit it
    if spec.get("kind") == "feature_ensemble":
        from .backbones.ensemble import parse_members
        from .backbones.image import resolve_arch

        names = [n for n, _ in parse_members(cfg.backbone)]
        if len(names) != len(spec.get("members", [])):
            raise ValueError(f"the run's backbone {cfg.backbone} has {len(names)} members, its weights file {len(spec.get('members', []))}")
        spec = {**spec, "members": [{"backbone": n, "arch": resolve_arch(n)} for n in names]}
    if spec.get("kind") in ("transfer", "text_transfer", "feature_ensemble"):
        return {**spec, "head": {**spec["head"], "dim": None, "n_classes": n_classes}}
    if spec.get("kind") == "run_ensemble":
        for m in spec["members"]:
            n = m.get("n_classes", (m.get("head") or {}).get("n_classes"))
            if n is not None and n != n_classes:
                raise ValueError(f"a member with {n} outputs for {n_classes} labels")
        return spec
    if "n_classes" in spec and spec["n_classes"] != n_classes:
        raise ValueError(f"{spec['n_classes']} outputs for {n_classes} labels")
    return spec


def predict_proba(model, batch, placement=None) -> "np.ndarray":  # noqa: F821
    """Class probabilities of `model` (a torch module, or a tf-idf model) for one batch (label
    sets: each label's probability, sigmoid of its logit)."""
    import numpy as np

    from .loop.devices import to_device
    from .loop.loop import forward

    if not isinstance(model, torch.nn.Module):
        return np.asarray(model.predict_proba(batch), dtype=np.float64)
    device = placement.device if placement is not None else torch.device("cpu")
    with torch.inference_mode(), (placement.autocast() if placement is not None else _null()):
        logits = forward(model, to_device(batch, device), channels_last=isinstance(batch, torch.Tensor) and batch.ndim == 4)
    from .models import is_multilabel

    return (logits.float().sigmoid() if is_multilabel(model) else logits.float().softmax(-1)).cpu().numpy()


def _null():
    from contextlib import nullcontext

    return nullcontext()
