"""int8 ONNX from an fp32 classifier file: the recipe, in one place (`exporter` measures it).

Images get static quantisation: activation ranges calibrated on training items, weights int8
per output channel, QDQ format. Two steps decide whether that keeps the accuracy (measured on
a flowers5 EfficientNet-Lite0 probe, 659 test photos; BENCHMARKS.md):
- `fold_shapes`: timm's TF-ported EfficientNets use "same" padding, exported as Shape -> Gather
  -> arithmetic -> Pad subgraphs that compute the padding at run time. At a fixed image size the
  padding is a constant, so it is folded (and ONNX Runtime then fuses the Pad into its Conv);
  left in place, every Pad gets its own quantise/dequantise pair on a tensor that is then only
  padded, and the recipe is harder for ONNX Runtime to fuse.
- Percentile calibration (99.99th percentile of |activation|) on a few hundred training items
  instead of MinMax on 64: a min/max range is set by the rarest outlier, which wastes most of
  the 256 levels of a ReLU6 network's wide activations.
Texts (transformer MatMuls) get dynamic quantisation: int8 weights, activations per batch.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterable

CALIBRATION_ITEMS = 256  # training items that calibrate the activation ranges
CALIBRATION_BATCH = 16  # items per calibration batch; histograms are merged batch by batch
PERCENTILE = 99.99  # of |activation|, the top of each calibrated range


def fold_shapes(src: str | os.PathLike, dst: str | os.PathLike, rounds: int = 16) -> int:
    """Copy `src` to `dst` with every size lookup of a fixed dimension (Shape -> Gather of a
    dimension that shape inference knows) replaced by its value and the arithmetic on it
    folded (ONNX Runtime's basic graph optimisations, which also fuse constant Pads into
    Convs). The batch dimension stays dynamic. Returns how many lookups were folded."""
    import onnx
    import onnxruntime as ort

    total = 0
    with tempfile.TemporaryDirectory() as td:
        cur = str(src)
        for r in range(rounds):  # each round makes the next tensor's spatial size known
            model = onnx.load(cur)
            n = _constant_lookups(model)
            if n == 0:
                break
            total += n
            a, cur = os.path.join(td, f"lookups{r}.onnx"), os.path.join(td, f"folded{r}.onnx")
            onnx.save(model, a)
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable ONNX ops only
            so.optimized_model_filepath = cur
            so.log_severity_level = 3
            ort.InferenceSession(a, so, providers=["CPUExecutionProvider"])
        model = onnx.load(cur)
        _drop_dead_nodes(model)
        onnx.save(model, str(dst))
    return total


def _constant_lookups(model) -> int:
    """Replace, in place, Gather(Shape(x), k) with a constant where dimension k of x is known."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    g = onnx.shape_inference.infer_shapes(model).graph
    dims = {}
    for vi in [*g.value_info, *g.input, *g.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    shape_of = {}
    for node in model.graph.node:
        if node.op_type == "Shape":  # ONNX Runtime's optimiser writes Shape(start=k) for shape[k:]
            att = {a.name: a.i for a in node.attribute}
            shape_of[node.output[0]] = (node.input[0], att.get("start", 0), att.get("end"))
    nodes, folded = [], 0
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[0] in shape_of and node.input[1] in consts:
            name, start, end = shape_of[node.input[0]]
            d = dims.get(name)
            d = d[start:end] if d is not None else None
            idx = consts[node.input[1]].astype(np.int64)
            if d and all(-len(d) <= int(i) < len(d) and d[int(i)] for i in idx.flatten()):
                val = np.array([d[int(i)] for i in idx.flatten()], dtype=np.int64).reshape(idx.shape)
                nodes.append(helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(val)))
                folded += 1
                continue
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return folded


def _drop_dead_nodes(model) -> None:
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        keep = [n for n in model.graph.node if any(o in used for o in n.output)]
        if len(keep) == len(model.graph.node):
            return
        del model.graph.node[:]
        model.graph.node.extend(keep)


def quantize_static_int8(fp32: str | os.PathLike, out: str | os.PathLike, batches: Callable[[], Iterable[dict]], n_batches: int, n_items: int) -> str:
    """Static int8 of `fp32` into `out`, calibrated on `batches()` (numpy inputs by name, one
    dict per batch, `n_batches` of them, `n_items` items in all). Returns what was done, in words."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """Batches in ranges: ONNX Runtime collects (and merges histograms of) one range of
        batches at a time, so memory holds one batch's activations, not all of them."""

        def __init__(self):
            self.all = None
            self.it = iter(())

        def __len__(self):
            return n_batches

        def set_range(self, start_index: int, end_index: int):
            if self.all is None:
                self.all = iter(batches())
            self.it = iter([next(self.all) for _ in range(start_index, end_index)])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as td, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folded, pre = Path(td) / "folded.onnx", Path(td) / "pre.onnx"
        fold_shapes(fp32, folded)
        quant_pre_process(str(folded), str(pre), skip_symbolic_shape=True, skip_optimization=True)
        quantize_static(
            str(pre), str(out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": PERCENTILE, "CalibStridedMinMax": 1},
        )
    return f"int8 static QDQ (per-channel int8 weights, uint8 activations), ranges at the {PERCENTILE}th percentile of |activation| over {n_items} training items, fixed-size shape arithmetic folded"


def quantize_dynamic_int8(fp32: str | os.PathLike, out: str | os.PathLike) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as td, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True)
    return "int8 dynamic quantisation (int8 weights, activations quantised per batch)"
