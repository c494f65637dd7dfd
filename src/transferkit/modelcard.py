"""model-card.md: what an exported classifier is, what it was trained and measured on, how to
feed it, and where it should not be trusted."""
from __future__ import annotations

import math


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def _f(v, d=4) -> str:
    return "–" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)


def multilabel_metric_lines(test: dict, classes: list[str], meta: dict) -> list[str]:
    """The test numbers of a multi-label model and each label's threshold (chosen on validation)."""
    mode = (meta.get("threshold_mode") or "per_label").replace("_", "-")
    out = [f"Each {len(classes)} label is decided on its own: predicted when its probability is at or above its {mode} threshold, chosen on the validation split (F1-best) "
           "and stored in the file's metadata (`thresholds`).", "",
           f"n = {test['n']}: macro-F1 **{test['f1_macro']:.4f}**, micro-F1 {test['f1_micro']:.4f}, sample-F1 {test['f1_samples']:.4f}, "
           f"mAP {_f(test.get('mean_average_precision'))}, subset accuracy {test['subset_accuracy']:.4f}, Hamming loss {test['hamming_loss']:.4f}.", "",
           "| label | threshold | precision | recall | F1 | AP | support |", "|---|---:|---:|---:|---:|---:|---:|"]
    for c in classes:
        pl = test["per_label"][c]
        out.append(f"| {c} | {pl['threshold']:.3f} | {pl['precision']:.3f} | {pl['recall']:.3f} | {pl['f1']:.3f} | {_f(pl['ap'])} | {pl['support']} |")
    return out


def model_card(run, result, items) -> str:
    cfg, m = run.config, run.metrics
    meta, par = result.metadata, result.parity
    data = m.get("data", {})
    test = m.get("test", {})
    classes = run.classes
    dc = run.data_config
    mod = run.modality
    unit = mod.unit
    name = result.path.name
    lines = [
        f"# Model card: {data.get('name', cfg.data)} {unit} classifier ({cfg.backbone}, {cfg.strategy})",
        "",
        f"`{name}` ({result.format}{', opset ' + str(meta['opset']) if meta.get('opset') else ''}, {result.path.stat().st_size / 1e6:.1f} MB) "
        f"was exported by {meta['producer']} on {meta['created']} from the run folder `{run.dir}`. "
        f"It is the whole classifier: the {cfg.backbone} backbone and the trained {cfg.head} head, softmax included.",
        "",
        "## What it does",
        "",
        f"{mod.what_it_classifies(len(classes))}: " + ", ".join(f"`{c}`" for c in classes) + ".",
        "",
        f"Probabilities are calibrated by temperature scaling (T = {meta.get('temperature', 1.0):.3f}, fitted on the validation split) inside the file."
        if abs(float(meta.get("temperature", 1.0)) - 1.0) > 1e-9 else "Probabilities are the model's softmax, not recalibrated (the run used --calibrate none, or had no validation split).",
        "",
        (f"Test-time augmentation ({meta['tta']}) is part of the exported graph: each input's probabilities are the average over its views."
         if meta.get("tta", "none") != "none" else "No test-time augmentation: each input is predicted once."),
        "",
        "## Data",
        "",
        f"- Source: `{cfg.data}` ({data.get('items', '?')} {unit}s). Classes and {unit}s per class: "
        + ", ".join(f"{c} {n}" for c, n in zip(classes, [sum(x) for x in zip(*data["class_counts"].values())] if data.get("class_counts") else [])),
        f"- Split: stratified, stable per item (a hash of the seed and the item's bytes), seed {cfg.seed}: "
        + ", ".join(f"{k} {v}" for k, v in data.get("split_sizes", {}).items())
        + ". The split is saved in the run folder (`splits.json`).",
        f"- Backbone weights: {cfg.extra.get('weights_source', '?')} ({'pretrained' if cfg.pretrained else 'random initialisation'}).",
        "",
        "## Metrics (held-out test split)",
        "",
    ]
    if test.get("multilabel"):
        lines += multilabel_metric_lines(test, classes, meta)
    elif test.get("n"):
        lo, hi = wilson(round(test["accuracy"] * test["n"]), test["n"])
        lines += [
            f"Accuracy **{test['accuracy']:.4f}** (95% interval {lo:.3f}–{hi:.3f}, n = {test['n']}), macro-F1 {test['macro_f1']:.4f}, log-loss {test.get('log_loss', float('nan')):.4f}.",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for c in classes:
            pc = test["per_class"][c]
            lines.append(f"| {c} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    else:
        lines.append("The run has no test split; no held-out metric is available.")
    lines += [
        "",
        "## Parity with the trained model",
        "",
        f"Checked by the export itself on {par['n']} {'of the run’s test' if par['source'] == 'test' else 'given'} {unit}s, batched and at batch size 1, on {par.get('device', 'cpu')}: "
        f"max |p_export − p_torch| = {par['max_abs_diff']:.2e} (tolerance {par['tolerance']:.0e}), "
        f"predicted labels {'identical' if par['labels_identical'] else 'NOT identical'}"
        + (f"; {par['agree_with_evaluation']} of {par['n']} labels equal those recorded at evaluation (`predictions.csv`)" if "agree_with_evaluation" in par else "")
        + ".",
    ]
    q = result.int8
    if q:
        sp = q["speed"]
        lines += [
            "",
            "## int8 variant",
            "",
            f"`{q['path'].rsplit('/', 1)[-1]}`: {q.get('method', 'int8 static quantisation')} with ONNX Runtime. "
            f"On the {q['n']} test {unit}s its label equals fp32's for {q['agree_with_fp32']} of them (max probability difference {q['max_abs_diff']:.3f}). "
            f"Speed is model time only on this machine's CPU ({sp['fp32']['threads']} threads), prepared inputs in memory.",
            "",
            f"| variant | size | test accuracy | ms / {unit} (batch 1) | {unit}s / s (batch 32) |",
            "|---|---:|---:|---:|---:|",
            f"| fp32 | {q['size_mb']['fp32']:.1f} MB | {_f(q['accuracy_fp32'])} | {sp['fp32']['ms_per_image_batch1']:.1f} | {sp['fp32']['images_per_s_batch32']:.1f} |",
            f"| int8 | {q['size_mb']['int8']:.1f} MB | {_f(q['accuracy_int8'])} | {sp['int8']['ms_per_image_batch1']:.1f} | {sp['int8']['images_per_s_batch32']:.1f} |",
        ]
        ratio = {b: sp["int8"][k] / sp["fp32"][k] if sp["fp32"][k] else float("nan") for b, k in (("32", "images_per_s_batch32"), ("1", "images_per_s_batch1"))} if "images_per_s_batch1" in sp["fp32"] else None
        faster = f" It runs at {ratio['32']:.2f}× fp32's throughput at batch 32 and {ratio['1']:.2f}× at batch 1 (medians of alternating runs)." if ratio else ""
        if q["accuracy_int8"] is not None and q["accuracy_fp32"] is not None:
            drop = q["accuracy_fp32"] - q["accuracy_int8"]
            said = f"int8 costs {100 * drop:.2f} accuracy points on this model ({_f(q['accuracy_fp32'])} → {_f(q['accuracy_int8'])} on {q['n']} test {unit}s)." if drop > 0 else f"int8 costs no accuracy on this model ({_f(q['accuracy_fp32'])} fp32, {_f(q['accuracy_int8'])} int8 on {q['n']} test {unit}s)."
            lines += ["", (f"**{said}{faster} Prefer the fp32 file unless the speed matters more.**" if drop > 0.005 else said + faster)]
        else:
            lines += ["", f"Accuracy was not measured (the check items have no labels); labels agree with fp32 on {q['agree_with_fp32']} of {q['n']}.{faster}"]
    lines += [
        "",
        "## Input and output",
        "",
        *mod.card_input_lines(dc, meta),
        ("- Outputs: `probs` (each label's sigmoid probability, batch × labels) and `logits`. A label is predicted when its probability is at or above its threshold "
         "(metadata `thresholds`, in label order; the table above); an input may get several labels or none. Labels are in the metadata (`labels`), in output order."
         if meta.get("multilabel") else
         "- Outputs: `probs` (calibrated softmax probabilities, batch × classes) and `logits` (divided by the temperature). Labels are in the metadata (`labels`), in output order."),
        "",
        "```",
        "transferkit predict " + name + " " + mod.example_input + " --out labels.csv      # same labels as the run folder",
        "transferkit serve " + name + "                                # HTTP API and a page to try it",
        "```",
        "",
        "## Intended use",
        "",
        f"Sorting or pre-labelling {unit}s into these {len(classes)} classes when they look like the training data "
        "(same kinds of subjects and sources), with a person reviewing low-confidence answers.",
        "",
        "## Limits",
        "",
        f"- It always answers with one of its {len(classes)} classes: a {unit} of something else still gets a label, often with high confidence. "
        "There is no 'none of these' output; check the confidence and keep a human in the loop.",
        f"- The metrics come from a held-out split of the same source; {unit}s from another source are likely to score lower. Measure on your own data before relying on it.",
        f"- With {test.get('n', 0)} test {unit}s the accuracy is known only to the interval above; small per-class supports make per-class numbers noisy.",
        f"- It inherits the biases of its pretrained backbone and of the training {unit}s.",
        "- Not for decisions about people, medical, legal or safety-critical use.",
        "",
    ]
    return "\n".join(lines)
