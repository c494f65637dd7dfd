"""ONNX in and out, in one place (a leaf): the one export path (classifiers for `export`,
backbones for the extraction engine), the metadata an exported file carries, and a guard that
refuses files whose tensors live in external data files (a model must be one self-contained
file: ONNX Runtime would otherwise open whatever paths the file names)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from .errors import TransferkitError

DEFAULT_OPSET = 17  # ONNX Runtime >= 1.14 and every current runtime run opset 17
META_KEY = "transferkit"  # metadata_props key holding the metadata (JSON)


def export_onnx_module(module, example: tuple, path, opset: int = DEFAULT_OPSET, input_names=("image",), output_names=("probs", "logits"), dynamic_axes: dict | None = None) -> None:
    """Trace `module` on the `example` inputs into an ONNX file at `path`, constants folded.
    `dynamic_axes` default: the batch dimension of every input and output."""
    import torch

    axes = dynamic_axes or {n: {0: "batch"} for n in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            module,
            tuple(example),
            str(path),
            dynamo=False,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=int(opset),
            do_constant_folding=True,
        )


def set_metadata(model, meta: dict, doc: str = "") -> None:
    """Put transferkit's metadata (labels, preprocessing, provenance) into an onnx.ModelProto."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update({META_KEY: json.dumps(meta), "labels": json.dumps(meta["labels"]), "preprocessing": json.dumps(meta["preprocessing"])})
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    model.producer_name, model.producer_version = "transferkit", meta["producer"].split()[-1]
    if doc:
        model.doc_string = doc


def refuse_external_data(path: Path) -> None:
    """Refuse an ONNX file that keeps tensors in external files (checked from the protobuf,
    without loading those files)."""
    try:
        import onnx
        from onnx.external_data_helper import uses_external_data
    except ImportError:
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - not a readable ONNX protobuf
        raise TransferkitError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); export it again with `transferkit export RUN_DIR`") from None
    for t in model.graph.initializer:
        if uses_external_data(t):
            where = next((e.value for e in t.external_data if e.key == "location"), "?")
            raise TransferkitError(f"{path}: keeps tensor '{t.name}' in an external file ({where}); transferkit loads only self-contained ONNX files: export it again with `transferkit export RUN_DIR`")
