"""Export a run's whole classifier (backbone + head, temperature and softmax included) to ONNX
or TorchScript, for images and texts.

The artifact carries its labels, its kind of input and its preprocessing as metadata (a text
model also gets its tokenizer files in a folder beside it), has dynamic batch (and token)
dimensions, and is written only after it passes a parity check against the in-framework model
(`Run.model`) on the run's real test items: max |p_export - p_torch| <= 1e-4 and identical
labels. A model card is written beside it; optionally an int8 ONNX whose accuracy and speed
against fp32 go into the card.
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
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
from .onnx_io import DEFAULT_OPSET, export_onnx_module, set_metadata
from .predictor import OUTPUT_NAMES, TS_EXTRA, OnnxPredictor, Predictor, TorchPredictor, TorchScriptPredictor
from .quantize import CALIBRATION_ITEMS
from .run import Run

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
PARITY_TOL = 1e-4  # max absolute difference of class probabilities, fp32 export vs torch


class _Classifier(nn.Module):
    """model inputs -> (probs, logits): what the exported file computes (label sets: each
    label's sigmoid in the graph; the thresholds are in the metadata)."""

    def __init__(self, model: nn.Module, sigmoid: bool = False):
        super().__init__()
        self.model, self.sigmoid = model, sigmoid

    def forward(self, *inputs):
        logits = self.model(*inputs)
        return (logits.sigmoid() if self.sigmoid else logits.softmax(-1)), logits


@dataclass
class Items:
    """Items to check on: `load(i)` gives the i-th raw input (a PIL image, a text)."""

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
    device: str = "cpu",
) -> ExportResult:
    """Export the run in `run_dir` to `out` (default RUN_DIR/export/model.onnx or model.pt).

    The file is written only if the parity check passes on the run's test items (or on
    `parity_inputs`: files, folders or tables of the run's kind, when the run's data is not on
    this machine), run on `device`; otherwise `TransferkitError` and nothing is written.
    `int8=True` (ONNX only) also writes `<name>.int8.onnx`. Returns the paths, the parity
    numbers and the int8 comparison.
    """
    from .loop.devices import choose

    if format not in FORMATS:
        raise TransferkitError(f"--format {format}: choose onnx or torchscript")
    if int8 and format != "onnx":
        raise TransferkitError("--int8 applies to ONNX exports only; add --format onnx")
    if format == "onnx" and not 7 <= int(opset) <= 21:
        raise TransferkitError(f"--opset {opset}: use an ONNX opset between 7 and 21 (default {DEFAULT_OPSET})")
    run = Run.load(run_dir)
    if not isinstance(run.model, nn.Module):
        raise TransferkitError(f"{run.dir}: a {run.config.strategy} model is not a neural network and has no ONNX/TorchScript export; the run folder itself predicts and serves (`transferkit predict {run.dir} ...`, `transferkit serve {run.dir}`)")
    out = Path(out) if out else run.dir / "export" / f"model{FORMATS[format]}"
    if out.is_dir():
        raise TransferkitError(f"--out {out}: is a folder; give a file name such as {out / ('model' + FORMATS[format])}")
    placement = choose(device, "fp32")  # parity is checked in fp32 on the device
    items = _parity_items(run, parity_inputs, max_parity_items)
    reference = TorchPredictor(run, placement, engine=False)  # the PyTorch module itself
    pre = run.preprocessor
    side_dir = out.parent / f"{out.stem}.tokenizer" if pre.side_files else None
    meta = build_metadata(run, format, opset if format == "onnx" else None, side_dir.name if side_dir else None)
    module = _Classifier(copy.deepcopy(run.model).to("cpu", memory_format=torch.contiguous_format), sigmoid=reference.thresholds is not None).eval()
    example = pre.example()

    tkio.remove_dead_temps(out)  # what killed exports to this path left
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.export-") as td:
        tmp = Path(td) / out.name
        if side_dir is not None:
            _copy_tokenizer(run, Path(td) / side_dir.name)
        if format == "onnx":
            _write_onnx(module, example, tmp, opset, meta, pre)
            candidate: Predictor = OnnxPredictor(tmp, placement=placement)
        else:
            _write_torchscript(module, example, tmp, meta)
            candidate = TorchScriptPredictor(tmp)
        parity = compare(reference, candidate, items, batch_size)
        parity["tolerance"] = tolerance
        parity["device"] = str(placement.device)
        if not (parity["max_abs_diff"] <= tolerance and parity["labels_identical"]):
            raise TransferkitError(
                f"{out}: not written: the exported model does not match the trained one on {parity['n']} {items.source} items "
                f"(max probability difference {parity['max_abs_diff']:.2e}, tolerance {tolerance:.0e}; {parity['label_mismatches']} labels differ). "
                f"Try another --opset, or report this with the run folder"
            )
        if side_dir is not None:  # the tokenizer first: a model file never names a missing folder
            tmp_side = out.parent / f".{side_dir.name}.{os.getpid()}.tmp"
            shutil.rmtree(tmp_side, ignore_errors=True)
            shutil.copytree(Path(td) / side_dir.name, tmp_side)
            shutil.rmtree(side_dir, ignore_errors=True)
            os.replace(tmp_side, side_dir)
        with tkio.atomic_path(out) as final_tmp:
            shutil.copyfile(tmp, final_tmp)
    result = ExportResult(out, format, out.parent / "model-card.md", parity, metadata=meta)
    if int8:
        result.int8 = _export_int8(run, out, meta, items, batch_size)
    write_model_card(run, result, items)
    return result


def _copy_tokenizer(run: Run, dest: Path) -> None:
    from .backbones.text import ENCODER_DIR

    src = run.dir / ENCODER_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "config.json":
            shutil.copyfile(f, dest / f.name)


def build_metadata(run: Run, format: str, opset: int | None, tokenizer: str | None = None) -> dict:
    """What the file says about itself: labels, kind of input, preprocessing, where it came from, its scores."""
    from ._version import __version__

    cfg, m = run.config, run.metrics
    dc = run.data_config
    test = m.get("test", {})
    pre = run.preprocessor
    meta = {
        "format_version": 2,
        "producer": f"transferkit {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "format": format,
        "opset": opset,
        "modality": run.kind,
        "labels": run.classes,
        "preprocessing": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dc.items()},
        "inputs": {n: ("float32 (batch, 3, H, W), RGB, resized, cropped and normalised" if n.startswith("image") else "int64 (batch, tokens)") for n in pre.input_names},
        "outputs": {OUTPUT_NAMES[0]: "class probabilities (softmax, calibrated), (batch, classes)", OUTPUT_NAMES[1]: "logits divided by the temperature, (batch, classes)"},
        "temperature": float(getattr(run.model, "temperature", torch.ones(())).item()),
        "tta": getattr(run.model, "views", "none"),  # test-time augmentation inside the graph (tta.TTA), or none
        "run": {"dir": str(run.dir), "data": cfg.data, "strategy": cfg.strategy, "backbone": cfg.backbone, "head": cfg.head, "seed": cfg.seed},
        "test_metrics": {k: test.get(k) for k in ("n", "accuracy", "macro_f1")},
    }
    if tokenizer:
        meta["tokenizer"] = tokenizer
    from .multilabel_run import thresholds_of

    t = thresholds_of(run.model)
    if t is not None:  # label sets: every label at or above its threshold is predicted
        meta.update(multilabel=True, thresholds=[float(x) for x in t], threshold_mode=(m.get("multilabel") or {}).get("thresholds", {}).get("mode"))
        meta["outputs"] = {OUTPUT_NAMES[0]: "each label's probability (sigmoid), (batch, labels); a label is predicted when it is >= its threshold (metadata `thresholds`)",
                           OUTPUT_NAMES[1]: "each label's logit, (batch, labels)"}
        meta["test_metrics"] = {k: test.get(k) for k in ("n", "accuracy", "macro_f1", "micro_f1", "mAP")}
    return meta


def _doc(meta: dict) -> str:
    labels = meta["labels"]
    return f"{meta['run']['strategy']} {meta['modality']} classifier on {meta['run']['backbone']}: {len(labels)} classes ({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})"


def _write_onnx(module: nn.Module, example: tuple, path: Path, opset: int, meta: dict, pre) -> None:
    import onnx

    export_onnx_module(module, example, path, opset, input_names=pre.input_names, output_names=OUTPUT_NAMES,
                       dynamic_axes={**pre.dynamic_axes(), **{n: {0: "batch"} for n in OUTPUT_NAMES}})
    model = onnx.load(str(path))
    set_metadata(model, meta, _doc(meta))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _write_torchscript(module: nn.Module, example: tuple, path: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                traced = torch.jit.trace(module, example, check_trace=False, strict=False)
        except Exception as exc:  # noqa: BLE001 - an architecture TorchScript cannot trace
            raise TransferkitError(f"this model cannot be traced to TorchScript ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); export it with --format onnx") from None
        torch.jit.save(traced, str(path), _extra_files={TS_EXTRA: json.dumps(meta)})


# --- the parity check ----------------------------------------------------------------------


def compare(reference: Predictor, candidate: Predictor, items: Items, batch_size: int = 32) -> dict:
    """Probabilities of both predictors on the same preprocessed items, in batches (the last
    one partial) and once with batch size 1, to exercise the dynamic dimensions."""
    from .progress import bar

    pre = reference.preprocessor
    ref, cand = [], []
    pbar = bar(len(items), f"checking the export against the {reference.kind} model on {items.source} items", reference.modality.unit, leave=False)
    try:
        for s in range(0, len(items), batch_size):
            batch = pre.batch([items.load(i) for i in range(s, min(s + batch_size, len(items)))])
            ref.append(reference.predict_proba(batch))
            cand.append(candidate.predict_proba(batch))
            pbar.update(len(ref[-1]))
    finally:
        pbar.close()
    ref, cand = np.concatenate(ref), np.concatenate(cand)
    single = candidate.predict_proba(pre.batch([items.load(0)]))
    diff = float(max(np.abs(ref - cand).max(), np.abs(single[0] - ref[0]).max()))
    if reference.thresholds is not None:  # label sets: the same labels at or above the thresholds
        t = reference.thresholds
        sets_differ = ((ref >= t) != (cand >= t)).any(1)
        mismatches = int(sets_differ.sum()) + int(((single[0] >= t) != (ref[0] >= t)).any())
        res = {"n": len(items), "source": items.source, "max_abs_diff": diff, "labels_identical": mismatches == 0, "label_mismatches": mismatches,
               "labels_agree": int((~sets_differ).sum()), "_proba": cand}
        return res
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
        from .modality import InputError

        given = [parity_inputs] if isinstance(parity_inputs, (str, os.PathLike)) else list(parity_inputs)
        refs = list(run.modality.iter_inputs(given, {"text_column": run.config.text_column}))[:limit]
        raws = []
        for r in refs:
            try:
                raws.append((r.id, run.preprocessor.load(r.payload)))
            except InputError:
                continue
        if not raws:
            raise TransferkitError(f"--parity-data {parity_inputs}: no usable {run.modality.unit}s found")
        return Items([i for i, _ in raws], lambda i: raws[i][1], source="given")
    items = split_items(run, "test", limit)
    if not len(items):
        raise TransferkitError(f"{run.dir}: the run has no test items to check the export on; pass --parity-data with a few {run.modality.unit}s")
    return items


def split_items(run: Run, split: str, limit: int | None = None) -> Items:
    """The run's `split` items (from splits.json), found again where the run's data was read from."""
    splits = tkio.read_json(run.dir / "splits.json")
    ids = list(splits.get(split, []))[:limit]
    labels = evaluated = None
    if split == "test" and (run.dir / "predictions.csv").is_file() and not run.config.multi_label:
        import csv

        with open(run.dir / "predictions.csv", newline="", encoding="utf-8") as fh:
            rows = {r["path"]: r for r in csv.DictReader(fh)}
        if all(i in rows for i in ids):
            index = {c: k for k, c in enumerate(run.classes)}
            labels = np.array([index.get(rows[i]["true"], -1) for i in ids])
            evaluated = [rows[i]["predicted"] for i in ids]
    if not ids:
        return Items([], lambda i: None, labels, evaluated, split)
    from .modality import load_dataset

    cfg = run.config
    try:
        sources = [s for s in dict.fromkeys([cfg.extra.get("data_path"), cfg.data]) if s]
        ds = None
        for src in sources:
            try:
                ds = load_dataset(src, check_images=False, data_root=cfg.data_root, text_column=cfg.text_column, label_column=cfg.label_column, multi_label=cfg.multi_label, label_sep=cfg.label_sep)
                break
            except TransferkitError:
                continue
        if ds is None:
            raise KeyError(cfg.data)
        where = {ds.display_path(i): i for i in range(len(ds))}
        idx = [where[i] for i in ids]
    except (TransferkitError, KeyError):
        raise TransferkitError(f"{run.dir}: the run's {split} items ({cfg.data}) are not on this machine; pass --parity-data with {run.modality.unit}s to check the export on") from None
    mod, dc = run.modality, run.data_config
    known = labels if labels is not None else (None if ds.multilabel else ds.labels[idx])
    return Items(ids, lambda i: mod.raw_item(ds, idx[i], dc), known, evaluated, split)


# --- int8 ------------------------------------------------------------------------------------


def _export_int8(run: Run, fp32_path: Path, meta: dict, items: Items, batch_size: int) -> dict:
    """int8 ONNX beside the fp32 one (the recipe is `quantize`'s): image models by static
    quantisation calibrated on training items only, text encoders by dynamic quantisation;
    accuracy, agreement and speed measured against the fp32 file on the same items."""
    import onnx

    from .quantize import CALIBRATION_BATCH, quantize_dynamic_int8, quantize_static_int8
    from .side_by_side import cpu_session, speeds

    pre = run.preprocessor
    static = pre.quantization == "static"
    out = fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    tkio.remove_dead_temps(out)
    calib = split_items(run, "train", None) if static else None
    pick = np.random.default_rng(run.config.seed).permutation(len(calib))[:CALIBRATION_ITEMS] if static else []
    chunks = [pick[s : s + CALIBRATION_BATCH] for s in range(0, len(pick), CALIBRATION_BATCH)]

    def batches():
        for b in chunks:
            yield pre.as_arrays(pre.batch([calib.load(int(i)) for i in b]))

    with tkio.atomic_path(out) as tmp:
        how = quantize_static_int8(fp32_path, tmp, batches, len(chunks), len(pick)) if static else quantize_dynamic_int8(fp32_path, tmp)
        model = onnx.load(str(tmp))
        set_metadata(model, dict(meta, quantization=how), _doc(meta))
        onnx.save(model, str(tmp))
        fp32, q = OnnxPredictor(fp32_path, session=cpu_session(fp32_path)), OnnxPredictor(tmp, session=cpu_session(tmp))
        cmp = compare(fp32, q, items, batch_size)
        speed = speeds({"fp32": fp32, "int8": q}, items)
    return {
        "path": str(out),
        "method": how,
        "calibration_items": len(pick),
        "n": cmp["n"],
        "agree_with_fp32": cmp["labels_agree"],
        "max_abs_diff": cmp["max_abs_diff"],
        "accuracy_fp32": cmp.get("accuracy_torch"),
        "accuracy_int8": cmp.get("accuracy_export"),
        "size_mb": {"fp32": fp32_path.stat().st_size / 1e6, "int8": out.stat().st_size / 1e6},
        "speed": speed,
    }


# --- the model card -------------------------------------------------------------------------


def write_model_card(run: Run, result: ExportResult, items: Items) -> Path:
    from .modelcard import model_card

    result.parity.pop("_proba", None)
    tkio.write_text(result.card, model_card(run, result, items))
    return result.card
