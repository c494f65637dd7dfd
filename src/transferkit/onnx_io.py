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


def _tensors(graph, where: str = ""):
    """(what, TensorProto) for every tensor a graph holds: initializers, sparse initializers,
    and tensor attributes of its nodes (Constant values), subgraphs (If/Loop/Scan bodies) included."""
    for t in graph.initializer:
        yield f"{where}tensor '{t.name}'", t
    for st in graph.sparse_initializer:
        yield f"{where}sparse tensor '{st.values.name}'", st.values
        yield f"{where}sparse tensor '{st.values.name}' (indices)", st.indices
    for node in graph.node:
        for a in node.attribute:
            here = f"{where}node '{node.name or node.op_type}' attribute '{a.name}'"
            if a.HasField("t"):
                yield here, a.t
            if a.HasField("sparse_tensor"):
                yield here, a.sparse_tensor.values
                yield here, a.sparse_tensor.indices
            for t in a.tensors:
                yield here, t
            if a.HasField("g"):
                yield from _tensors(a.g, here + ": ")
            for g in a.graphs:
                yield from _tensors(g, here + ": ")


def refuse_external_data(path: Path) -> None:
    """Refuse an ONNX file that keeps any tensor (an initializer, a Constant's value, one in a
    subgraph or a function) in an external file, checked from the protobuf without opening
    those files: transferkit's own guard, so ONNX Runtime never resolves a path a downloaded
    file names (`../secret.bin`, an absolute path)."""
    try:
        import onnx
    except ImportError:
        raise TransferkitError(f"{path}: checking an ONNX file needs the onnx package; pip install \"transferkit[export]\" (onnx, onnxruntime)") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - not a readable ONNX protobuf
        raise TransferkitError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); export it again with `transferkit export RUN_DIR`") from None
    graphs = [("", model.graph)] + [(f"function '{f.name}': ", f) for f in model.functions]
    for where, g in graphs:
        found = _tensors(g, where) if hasattr(g, "initializer") else ((f"{where}node '{n.name or n.op_type}' attribute '{a.name}'", t) for n in g.node for a in n.attribute for t in ([a.t] if a.HasField("t") else []) + list(a.tensors))
        for what, t in found:
            if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
                loc = next((e.value for e in t.external_data if e.key == "location"), "?")
                raise TransferkitError(f"{path}: keeps {what} in an external file ({loc}); transferkit loads only self-contained ONNX files: export it again with `transferkit export RUN_DIR`")
