"""Export a run's whole classifier (backbone + head, softmax included) to ONNX or TorchScript.

The artifact carries its labels and preprocessing as metadata, has a dynamic batch size, and
is written only after it passes a parity check against the in-framework model (`Run.model`)
on the run's real test images: max |p_export - p_torch| <= 1e-4 and identical labels. A
model card is written beside it; optionally an int8 ONNX (static QDQ quantisation with ONNX
Runtime) whose accuracy and speed against fp32 go into the card.
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import io as tkio
from .errors import TransferkitError
from .predictor import INPUT_NAME, META_KEY, OUTPUT_NAMES, TS_EXTRA, OnnxPredictor, Predictor, TorchPredictor, TorchScriptPredictor, make_transform, refuse_text_run
from .run import Run

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_OPSET = 17  # ONNX Runtime >= 1.14 and every current runtime run opset 17
PARITY_TOL = 1e-4  # max absolute difference of class probabilities, fp32 export vs torch
CALIBRATION_ITEMS = 64  # training images that calibrate the int8 activation ranges


class _Classifier(nn.Module):
    """images (N, 3, H, W) -> (probs, logits): what the exported file computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        logits = self.model(image)
        return logits.softmax(-1), logits


@dataclass
class Items:
    """Images to check on: `load(i)` gives the i-th as a PIL image."""

    ids: list[str]
    load: Callable
    labels: np.ndarray | None = None  # true class index per item, when known
    evaluated: list[str] | None = None  # label the run predicted at evaluation (predictions.csv)
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ExportResult:
    path: Path
    format: str
    card: Path
    parity: dict
    int8: dict | None = None
    metadata: dict = field(default_factory=dict)


def export(
    run_dir,
    format: str = "onnx",
    out=None,
    *,
    opset: int = DEFAULT_OPSET,
    int8: bool = False,
    parity_inputs=None,
    max_parity_items: int | None = None,
    tolerance: float = PARITY_TOL,
    batch_size: int = 32,
) -> ExportResult:
    """Export the run in `run_dir` to `out` (default RUN_DIR/export/model.onnx or model.pt).

    The file is written only if the parity check passes on the run's test images (or on
    `parity_inputs`: image files, folders or CSVs, when the run's data is not on this machine);
    otherwise `TransferkitError` and nothing is written. `int8=True` (ONNX only) also writes
    `<name>.int8.onnx`. Returns the paths, the parity numbers and the int8 comparison.
    """
    if format not in FORMATS:
        raise TransferkitError(f"--format {format}: choose onnx or torchscript")
    if int8 and format != "onnx":
        raise TransferkitError("--int8 applies to ONNX exports only; add --format onnx")
    if format == "onnx" and not 7 <= int(opset) <= 21:
        raise TransferkitError(f"--opset {opset}: use an ONNX opset between 7 and 21 (default {DEFAULT_OPSET})")
    run = Run.load(run_dir)
    refuse_text_run(run, "export")
    out = Path(out) if out else run.dir / "export" / f"model{FORMATS[format]}"
    if out.is_dir():
        raise TransferkitError(f"--out {out}: is a folder; give a file name such as {out / ('model' + FORMATS[format])}")
    items = _parity_items(run, parity_inputs, max_parity_items)
    reference = TorchPredictor(run)
    meta = build_metadata(run, format, opset if format == "onnx" else None)
    module = _Classifier(copy.deepcopy(run.model).to(memory_format=torch.contiguous_format)).eval()
    size = reference.input_size
    example = torch.zeros(2, 3, size, size)

    tkio.remove_dead_temps(out)  # what killed exports to this path left
    with tkio.atomic_path(out) as tmp:
        if format == "onnx":
            _write_onnx(module, example, tmp, opset, meta)
            candidate: Predictor = OnnxPredictor(tmp)
        else:
            _write_torchscript(module, example, tmp, meta)
            candidate = TorchScriptPredictor(tmp)
        parity = compare(reference, candidate, items, batch_size)
        parity["tolerance"] = tolerance
        if not (parity["max_abs_diff"] <= tolerance and parity["labels_identical"]):
            raise TransferkitError(
                f"{out}: not written: the exported model does not match the trained one on {parity['n']} {items.source} images "
                f"(max probability difference {parity['max_abs_diff']:.2e}, tolerance {tolerance:.0e}; {parity['label_mismatches']} labels differ). "
                f"Try another --opset, or report this with the run folder"
            )
    result = ExportResult(out, format, out.parent / "model-card.md", parity, metadata=meta)
    if int8:
        result.int8 = _export_int8(run, out, meta, items, batch_size)
    write_model_card(run, result, items)
    return result


def build_metadata(run: Run, format: str, opset: int | None) -> dict:
    """What the file says about itself: labels, preprocessing, where it came from, its scores."""
    from . import __version__

    cfg, m = run.config, run.metrics
    dc = run.data_config
    test = m.get("test", {})
    return {
        "format_version": 1,
        "producer": f"transferkit {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "format": format,
        "opset": opset,
        "labels": run.classes,
        "preprocessing": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dc.items()},
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, int(dc["input_size"][1]), int(dc["input_size"][2])], "dtype": "float32", "layout": "NCHW, RGB"},
        "outputs": {OUTPUT_NAMES[0]: "class probabilities (softmax), (batch, classes)", OUTPUT_NAMES[1]: "logits, (batch, classes)"},
        "run": {"dir": str(run.dir), "data": cfg.data, "strategy": cfg.strategy, "backbone": cfg.backbone, "head": cfg.head, "seed": cfg.seed},
        "test_metrics": {k: test.get(k) for k in ("n", "accuracy", "macro_f1")},
    }


def export_onnx_module(module: nn.Module, example: torch.Tensor, path, opset: int = DEFAULT_OPSET, input_names=(INPUT_NAME,), output_names=OUTPUT_NAMES) -> None:
    """Trace `module` on `example` into an ONNX file at `path`: batch dimension dynamic, constants
    folded. The one ONNX export path (classifiers here, backbones for the extraction engine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={n: {0: "batch"} for n in (*input_names, *output_names)},
            opset_version=int(opset),
            do_constant_folding=True,
        )


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int, meta: dict) -> None:
    import onnx

    export_onnx_module(module, example, path, opset)
    model = onnx.load(str(path))
    _set_onnx_metadata(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _set_onnx_metadata(model, meta: dict) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props.update({META_KEY: json.dumps(meta), "labels": json.dumps(meta["labels"]), "preprocessing": json.dumps(meta["preprocessing"])})
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    model.producer_name, model.producer_version = "transferkit", meta["producer"].split()[-1]
    model.doc_string = f"{meta['run']['strategy']} classifier on {meta['run']['backbone']}: {len(meta['labels'])} classes ({', '.join(meta['labels'][:10])}{', ...' if len(meta['labels']) > 10 else ''})"


def _write_torchscript(module: nn.Module, example: torch.Tensor, path: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TS_EXTRA: json.dumps(meta)})


# --- the parity check ----------------------------------------------------------------------


def compare(reference: Predictor, candidate: Predictor, items: Items, batch_size: int = 32) -> dict:
    """Probabilities of both predictors on the same preprocessed images, in batches (the last
    one partial) and once with batch size 1, to exercise the dynamic batch dimension."""
    tf = reference.transform
    ref, cand = [], []
    for s in range(0, len(items), batch_size):
        x = torch.stack([tf(items.load(i)) for i in range(s, min(s + batch_size, len(items)))])
        ref.append(reference.predict_proba(x))
        cand.append(candidate.predict_proba(x))
    ref, cand = np.concatenate(ref), np.concatenate(cand)
    single = candidate.predict_proba(tf(items.load(0))[None])
    diff = float(max(np.abs(ref - cand).max(), np.abs(single[0] - ref[0]).max()))
    mismatches = int((ref.argmax(1) != cand.argmax(1)).sum()) + int(single[0].argmax() != ref[0].argmax())
    res = {"n": len(items), "source": items.source, "max_abs_diff": diff, "labels_identical": mismatches == 0, "label_mismatches": mismatches}
    res["labels_agree"] = int((ref.argmax(1) == cand.argmax(1)).sum())
    if items.labels is not None:
        res["accuracy_torch"] = float((ref.argmax(1) == items.labels).mean())
        res["accuracy_export"] = float((cand.argmax(1) == items.labels).mean())
    if items.evaluated is not None:
        names = [reference.classes[i] for i in cand.argmax(1)]
        res["agree_with_evaluation"] = int(sum(a == b for a, b in zip(names, items.evaluated)))
    res["_proba"] = cand  # for the int8 comparison; dropped before writing anywhere
    return res


def _parity_items(run: Run, parity_inputs, limit: int | None) -> Items:
    if parity_inputs:
        from .data.images import open_rgb
        from .run import expand_inputs

        paths = expand_inputs([parity_inputs] if isinstance(parity_inputs, (str, os.PathLike)) else parity_inputs)[:limit]
        if not paths:
            raise TransferkitError(f"--parity-data {parity_inputs}: no images found")
        hint = _hint(run)
        return Items(paths, lambda i: open_rgb(paths[i], hint), source="given")
    items = split_items(run, "test", limit)
    if not len(items):
        raise TransferkitError(f"{run.dir}: the run has no test items to check the export on; pass --parity-data with a few images")
    return items


def _hint(run: Run) -> int:
    from .features.extract import resize_hint_for

    return resize_hint_for(run.data_config)


def split_items(run: Run, split: str, limit: int | None = None) -> Items:
    """The run's `split` items (from splits.json), found where the run's data was read from."""
    splits = tkio.read_json(run.dir / "splits.json")
    ids = list(splits.get(split, []))[:limit]
    labels = evaluated = None
    if split == "test" and (run.dir / "predictions.csv").is_file():
        import csv

        with open(run.dir / "predictions.csv", newline="", encoding="utf-8") as fh:
            rows = {r["path"]: r for r in csv.DictReader(fh)}
        if all(i in rows for i in ids):
            index = {c: k for k, c in enumerate(run.classes)}
            labels = np.array([index.get(rows[i]["true"], -1) for i in ids])
            evaluated = [rows[i]["predicted"] for i in ids]
    if not ids:
        return Items([], lambda i: None, labels, evaluated, split)
    from .data.images import open_rgb

    hint = _hint(run)
    data = Path(run.config.data).expanduser()
    roots = [data] if data.is_dir() else [data.parent] if data.is_file() else []
    for root in roots:
        paths = [i if os.path.isabs(i) else str(root / i) for i in ids]
        if all(os.path.isfile(p) for p in paths):
            return Items(ids, lambda i, paths=paths: open_rgb(paths[i], hint), labels, evaluated, f"{split}")
    try:  # built-in datasets (arrays) and sources whose paths moved: load the source again
        from .data import load_dataset

        ds = load_dataset(run.config.data)
        where = {ds.display_path(i): i for i in range(len(ds))}
        idx = [where[i] for i in ids]
    except (TransferkitError, KeyError):
        raise TransferkitError(
            f"{run.dir}: the run's {split} images ({run.config.data}) are not on this machine; pass --parity-data with images to check the export on"
        ) from None
    return Items(ids, lambda i: ds.load(idx[i], hint), labels if labels is not None else ds.labels[idx], evaluated, split)


# --- int8 ------------------------------------------------------------------------------------


def _export_int8(run: Run, fp32_path: Path, meta: dict, items: Items, batch_size: int) -> dict:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on training images; its
    accuracy, agreement and speed measured against the fp32 file."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib = split_items(run, "train", None)
    if len(calib) == 0:
        calib = items
    pick = np.random.default_rng(run.config.seed).permutation(len(calib))[:CALIBRATION_ITEMS]
    tf = make_transform(run.data_config)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([pick[s : s + 8] for s in range(0, len(pick), 8)])

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {INPUT_NAME: torch.stack([tf(calib.load(int(i))) for i in b]).numpy()}

    out = fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    tkio.remove_dead_temps(out)
    with tempfile.TemporaryDirectory() as td, tkio.atomic_path(out) as tmp:
        pre = Path(td) / "pre.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        model = onnx.load(str(tmp))
        _set_onnx_metadata(model, dict(meta, quantization=f"int8 static QDQ, per-channel weights, calibrated on {len(pick)} training images"))
        onnx.save(model, str(tmp))
        fp32, q = OnnxPredictor(fp32_path), OnnxPredictor(tmp)
        cmp = compare(fp32, q, items, batch_size)
        speed = {"fp32": _speed(fp32, items), "int8": _speed(q, items)}
    res = {
        "path": str(out),
        "calibration_items": len(pick),
        "n": cmp["n"],
        "agree_with_fp32": cmp["labels_agree"],
        "max_abs_diff": cmp["max_abs_diff"],
        "accuracy_fp32": cmp.get("accuracy_torch"),
        "accuracy_int8": cmp.get("accuracy_export"),
        "size_mb": {"fp32": fp32_path.stat().st_size / 1e6, "int8": out.stat().st_size / 1e6},
        "speed": speed,
    }
    return res


def _speed(pred: Predictor, items: Items, n: int = 64) -> dict:
    """Model time only (preprocessed tensors in memory): ms per image at batch 1, images/s at batch 32."""
    tf = pred.transform
    k = min(n, len(items))
    x = torch.stack([tf(items.load(i)) for i in range(k)])
    pred.predict_proba(x[:1])  # warm-up
    t0 = time.perf_counter()
    for i in range(min(16, k)):
        pred.predict_proba(x[i : i + 1])
    b1 = (time.perf_counter() - t0) / min(16, k)
    pred.predict_proba(x[:32])
    t0 = time.perf_counter()
    for s in range(0, k, 32):
        pred.predict_proba(x[s : s + 32])
    b32 = k / (time.perf_counter() - t0)
    return {"ms_per_image_batch1": b1 * 1000, "images_per_s_batch32": b32, "threads": torch.get_num_threads()}


# --- the model card -------------------------------------------------------------------------


def write_model_card(run: Run, result: ExportResult, items: Items) -> Path:
    from .modelcard import model_card

    result.parity.pop("_proba", None)
    tkio.write_text(result.card, model_card(run, result, items))
    return result.card
