"""`train()`: data -> split -> checks -> strategy -> evaluation -> a complete run folder."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

from . import io as tkio
from .backbones import DEFAULT_BACKBONE, create_backbone
from .backbones.text import DEFAULT_TEXT_BACKBONE, cache_safe_name, create_text_backbone
from .config import NO_BACKBONE, TRAINED, TrainConfig
from .data import check_dataset, load_dataset, make_splits
from .errors import TransferkitError
from .evaluate import evaluate
from .log import log
from .memory import PeakMemory, process_peak_mb
from .report import write_markdown_report, write_run_report
from .rundir import RunFolder, check_target
from .run import ENCODER_DIR, MODEL_FILE, Run, save_model, save_text_encoder, snippet
from .strategies import Context, strategy_func
from .tfidf import TfidfModel

# options that may differ from the interrupted run when resuming it
RESUME_MAY_CHANGE = ("epochs", "patience", "cache_dir", "workers")


def default_out(cfg: TrainConfig) -> str:
    data = Path(cfg.data).name or cfg.data
    tail = f"-{cache_safe_name(cfg.backbone)}" if cfg.backbone and cfg.backbone != "none" else ""
    return str(Path("runs") / f"{Path(data).stem}-{cfg.strategy}{tail}")


def checkpoint_dir_for(run_dir: str | Path) -> Path:
    """Where an unfinished run keeps its training state: beside the run folder, hidden."""
    p = Path(run_dir).expanduser().resolve()
    return p.parent / f".{p.name}.checkpoint"


def split_digest(ds, splits) -> str:
    """A fingerprint of which items are in which split (resume and compare check it)."""
    h = hashlib.blake2b(digest_size=12)
    for name in ("train", "val", "test"):
        h.update(name.encode())
        for i in getattr(splits, name):
            h.update(ds.display_path(int(i)).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def train(data: str | None = None, resume: str | None = None, **options) -> Run:
    """Train one strategy on `data` and write a run folder; returns the loaded `Run`.

    Options are the fields of `TrainConfig` (strategy, backbone, weights, head, image_size,
    val_size, test_size, seed, batch_size, cache_dir, out, epochs, lr, augment, ...; for texts
    also text_column, label_column, max_length). Images or texts: the data decides (see
    `load_dataset`). `resume=RUN_DIR` continues an interrupted image training run from its last
    finished epoch (weights, optimizer and schedule state), with the settings it started with.
    """
    state = None
    if resume is not None:
        cfg, state = _resume_config(resume, data, options)
    else:
        if data is None:
            raise TransferkitError("no data given: pass a folder, a CSV or a built-in dataset name (or --resume RUN_DIR)")
        cfg = TrainConfig(data=str(data), **options).validate()
    t_start = time.perf_counter()
    protect = [cfg.data] if Path(cfg.data).expanduser().exists() else []
    out_path = check_target(cfg.out, protect) if cfg.out else None  # refuse a bad --out before any work
    ds = load_dataset(cfg.data, data_root=cfg.data_root, text_column=cfg.text_column, label_column=cfg.label_column)
    strategy_func(cfg.strategy, ds.kind)  # fails before any work for a strategy the data cannot use
    splits = make_splits(ds, cfg.val_size, cfg.test_size, cfg.seed)
    checks = check_dataset(ds, splits)
    log(f"{ds.name}: {len(ds)} items, {len(ds.classes)} classes; split train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}")
    for w in checks.warnings:
        log(f"warning: {w}")
    return run_prepared(cfg, ds, splits, checks, resume_state=state, t_start=t_start, out_path=out_path)


def run_prepared(cfg: TrainConfig, ds, splits, checks, resume_state: dict | None = None, t_start: float | None = None, out_path: Path | None = None, reports: bool = True) -> Run:
    """Train `cfg` on an already loaded and split dataset (`train`, and each of `compare`'s
    runs; `reports` False: the caller renders the reports)."""
    import torch

    t_start = time.perf_counter() if t_start is None else t_start
    strategy = strategy_func(cfg.strategy, ds.kind)
    protect = [cfg.data] if Path(cfg.data).expanduser().exists() else []
    digest = split_digest(ds, splits)
    if resume_state is not None and resume_state.get("split_digest", digest) != digest:
        raise TransferkitError(f"--resume {cfg.out}: the data or its split changed since the interrupted run; start a new run without --resume")
    torch.manual_seed(cfg.seed)  # random-init weights (pretrained=False, scratch, mlp) follow the seed too
    cfg.extra["kind"] = ds.kind
    if Path(cfg.data).exists():  # so `transferkit report` finds the data from any working directory
        cfg.extra["data_path"] = str(Path(cfg.data).resolve())
    cfg.resolve(ds.kind)
    if ds.kind == "text":
        ctx = _text_context(cfg, ds, splits)
    else:
        ctx = _image_context(cfg, ds, splits)
    cfg.extra["split_digest"] = digest
    out_path = out_path or check_target(cfg.out or default_out(cfg), protect)
    if ds.kind == "image" and cfg.strategy in TRAINED:
        ckpt = checkpoint_dir_for(out_path)
        if resume_state is None and ckpt.exists():
            log(f"warning: {ckpt} held an interrupted run's state; this new run replaces it")
            shutil.rmtree(ckpt, ignore_errors=True)
        ckpt.mkdir(parents=True, exist_ok=True)
        saved = {k: v for k, v in cfg.to_dict().items() if k != "extra"}
        tkio.write_json(ckpt / "config.json", {**saved, "out": str(out_path), "split_digest": digest})
        ctx.checkpoint_dir, ctx.resume_state = str(ckpt), resume_state
    try:
        with PeakMemory() as mem_train:
            trained = strategy(ctx)
    except KeyboardInterrupt:
        if ctx.checkpoint_dir and (Path(ctx.checkpoint_dir) / "last.pt").exists():
            log(f"interrupted; the training state of the last finished epoch is in {ctx.checkpoint_dir}. Continue with: transferkit train --resume {out_path}")
        raise

    log(f"writing run folder {out_path}")
    out = RunFolder(out_path, protect)
    try:
        _write_run(out, ctx, trained, checks)
        with PeakMemory(full_collect=False) as mem_pred:  # the saved model loaded and predicting real items
            t_pred = _time_prediction(out, ds, splits)
        metrics = tkio.read_json(out / "metrics.json")
        metrics["timing"].update(t_pred, total_s=time.perf_counter() - t_start)
        metrics["memory"] = {"peak_rss_mb": process_peak_mb(), "train_peak_mb": mem_train.peak_mb, "predict_peak_mb": mem_pred.peak_mb, "train_start_mb": mem_train.start_mb, "predict_start_mb": mem_pred.start_mb, "method": mem_train.method,
                              "note": "peak resident memory (RSS) of the main process during training / during prediction of a batch of test items; DataLoader workers not counted"}
        tkio.write_json(out / "metrics.json", metrics)
        final = out.commit()
    except BaseException:
        out.abandon()
        raise
    for f in ctx.cleanup:
        f()
    m = metrics["test"]
    ran = f"; backbone ran on {ctx.timing['backbone_runs']} items" if "backbone_runs" in ctx.timing else ""
    log(f"test accuracy {m.get('accuracy', float('nan')):.4f}, macro-F1 {m.get('macro_f1', float('nan')):.4f}{ran}")
    report = write_reports(final, ds) if reports else None
    log(f"run folder: {final}" + (f"  (report: {report})" if report else ""))
    return Run.load(final)


def _image_context(cfg: TrainConfig, ds, splits) -> Context:
    """Images: the backbone (none for scratch/mlp) and the run's preprocessing."""
    backbone = None
    if cfg.strategy not in NO_BACKBONE:
        cfg.backbone = cfg.backbone or DEFAULT_BACKBONE
        backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)
        cfg.extra.update(weights_source=backbone.weights_source, weights_id=backbone.weights_id)
    else:
        cfg.extra.update(weights_source="none (random init)", weights_id="")
    data_config = _data_config(cfg, ds, splits, backbone)
    if backbone is not None:
        backbone = backbone.with_input_size(int(data_config["input_size"][-1])).with_crop(data_config["crop_pct"])
    cfg.extra.update(data_config=data_config, engine=cfg.engine if cfg.strategy == "probe" else "torch-eager-channels-last")  # probe: resolved when the backbone runs
    return Context(cfg, ds, splits, backbone, data_config=data_config)


def _data_config(cfg: TrainConfig, ds, splits, backbone) -> dict:
    """The run's preprocessing. Probe: the backbone's own (or --image-size); trained
    strategies: --image-size, or a side chosen from the data's native size (train/data.py)."""
    from .train.data import baseline_data_config, choose_side, native_side

    if cfg.strategy == "probe":
        return dict(backbone.with_input_size(cfg.image_size).with_crop(cfg.crop_pct).data_config)
    own = int(backbone.data_config["input_size"][-1]) if backbone is not None else None
    if cfg.image_size:
        side, why = cfg.image_size, "--image-size"
    else:
        side, why = choose_side(cfg.strategy, native_side(ds, splits.train), own)
        cfg.image_size = side
    cfg.extra["image_size_reason"] = why
    if backbone is None:
        return baseline_data_config(side)
    return dict(backbone.with_input_size(side).with_crop(cfg.crop_pct).data_config)


def _resume_config(run_dir: str, data: str | None, options: dict) -> tuple[TrainConfig, dict]:
    from .train import load_checkpoint

    final = Path(run_dir).expanduser().resolve()
    ckpt = checkpoint_dir_for(final)
    if not (ckpt / "last.pt").is_file() or not (ckpt / "config.json").is_file():
        done = " (that run finished: its folder is complete)" if (final / "metrics.json").is_file() else ""
        raise TransferkitError(f"--resume {run_dir}: no interrupted training to resume{done}; no checkpoint in {ckpt}. Start the run without --resume")
    saved = tkio.read_json(ckpt / "config.json")
    if not isinstance(saved, dict):
        raise TransferkitError(f"{ckpt / 'config.json'}: damaged; start the run again without --resume")
    digest = saved.pop("split_digest", None)
    cfg = TrainConfig.from_dict(saved)
    if data is not None and not _same_data(str(data), cfg.data):
        raise TransferkitError(f"--resume {run_dir}: that run trained on {cfg.data}, not {data}; pass the same data (or leave it out)")
    for k, v in options.items():
        if k in RESUME_MAY_CHANGE:
            setattr(cfg, k, v)
        elif k != "out" and v != getattr(cfg, k, v):
            raise TransferkitError(f"--{k.replace('_', '-')} {v}: the interrupted run used {getattr(cfg, k)!r}; drop the option to resume it, or start a new run")
    cfg.out, cfg.extra = str(final), {}
    cfg.validate()
    try:
        state = load_checkpoint(ckpt / "last.pt")
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is a user-level problem
        raise TransferkitError(f"{ckpt / 'last.pt'}: cannot be read ({type(exc).__name__}); start the run again without --resume") from None
    state["split_digest"] = digest
    log(f"resuming {final.name} after epoch {state['epoch']} of {cfg.epochs}")
    return cfg, state


def _same_data(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def write_reports(run_dir: Path, ds=None) -> Path | None:
    """report.md, then report.html with its plots, into a committed run folder. A report that
    fails is logged, never fatal: the trained run is already safe on disk."""
    try:
        write_markdown_report(run_dir)
    except Exception as exc:  # noqa: BLE001
        log(f"warning: report.md failed ({type(exc).__name__}: {exc}); the run is saved")
    try:
        return write_run_report(run_dir, dataset=ds)
    except Exception as exc:  # noqa: BLE001
        log(f"warning: report.html failed ({type(exc).__name__}: {exc}); the run is saved; try `transferkit report {run_dir}`")
        return (run_dir / "report.md") if (run_dir / "report.md").exists() else None


def _text_context(cfg: TrainConfig, ds, splits) -> Context:
    """Texts: the encoder and tokenizer (none for tfidf), and how many texts get truncated."""
    if cfg.strategy == "tfidf":
        cfg.backbone = "none"  # a baseline without a pretrained model
        cfg.extra.update(data_config={"kind": "text", "features": "tf-idf word 1-2-grams + char 3-5-grams"}, weights_source="none", weights_id="", engine="scikit-learn")
        return Context(cfg, ds, splits, None)
    cfg.backbone = cfg.backbone or DEFAULT_TEXT_BACKBONE
    backbone = create_text_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, max_length=cfg.max_length)
    cfg.max_length = backbone.max_length
    cfg.extra.update(data_config=backbone.data_config, weights_source=backbone.weights_source, weights_id=backbone.weights_id, engine="torch-eager")
    lengths = backbone.token_lengths(ds.texts)
    cut = lengths > backbone.max_length
    cfg.extra["truncation"] = {
        "max_length": backbone.max_length,
        "truncated": int(cut.sum()),
        "of": len(ds),
        "by_split": {k: int(cut[getattr(splits, k)].sum()) for k in ("train", "val", "test")},
        "tokens_median": float(np.median(lengths)),
        "tokens_p95": float(np.percentile(lengths, 95)),
    }
    log(f"{int(cut.sum())} of {len(ds)} texts are longer than {backbone.max_length} tokens and get truncated (median length {np.median(lengths):.0f} tokens)")
    return Context(cfg, ds, splits, backbone, lengths=lengths)


def _write_run(out: RunFolder, ctx: Context, trained, checks) -> None:
    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    cfg_dict = cfg.to_dict()
    tkio.write_json(out / "config.json", cfg_dict)
    tkio.write_json(out / "labels.json", {"classes": ds.classes})
    tkio.write_json(out / "splits.json", {"seed": cfg.seed, "val_size": cfg.val_size, "test_size": cfg.test_size, **{k: [ds.display_path(i) for i in getattr(sp, k)] for k in ("train", "val", "test")}})
    tkio.write_json(out / "checks.json", {"classes": ds.class_counts(), **checks.as_dict()})
    if isinstance(trained.model, TfidfModel):
        trained.model.save(out.path, MODEL_FILE)
        params_total = params_trainable = trained.model.num_params()
    else:
        save_model(out / MODEL_FILE, trained.model, trained.info)
        if ds.kind == "text":  # what rebuilds the encoder offline: its config and tokenizer
            save_text_encoder(out / ENCODER_DIR, ctx.backbone)
        params_total = sum(p.numel() for p in trained.model.parameters())
        if "params_trained" in trained.info:
            params_trainable = trained.info["params_trained"]
        elif "params_trainable" in trained.info:  # image strategies trained by the loop (train/)
            params_trainable = trained.info.pop("params_trainable")
        elif cfg.strategy == "probe" or (ds.kind == "text" and cfg.strategy == "head"):
            params_trainable = sum(p.numel() for p in trained.model.head.parameters())
        else:
            params_trainable = sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
    history = trained.info.pop("history", None)
    if history:
        from .train import HISTORY_COLUMNS

        cols = HISTORY_COLUMNS if set(history[0]) <= set(HISTORY_COLUMNS) else list(history[0])
        tkio.write_csv(out / "history.csv", cols, [[h.get(c) for c in cols] for h in history])
    metrics = {name: evaluate(ds.labels[getattr(sp, name)], trained.proba[name], ds.classes) for name in ("test", "val", "train")}
    metrics.update(
        timing={k: v for k, v in ctx.timing.items()},
        model={"params_total": params_total, "params_trainable": params_trainable, **{k: v for k, v in trained.info.items()}},
        data={
            "name": ds.name,
            "items": len(ds),
            "classes": ds.classes,
            "split_sizes": {k: len(getattr(sp, k)) for k in ("train", "val", "test")},
            "class_counts": {k: np.bincount(ds.labels[getattr(sp, k)], minlength=len(ds.classes)).tolist() for k in ("train", "val", "test")},
            "kind": ds.kind,
            **({"truncation": cfg.extra["truncation"]} if "truncation" in cfg.extra else {}),
        },
    )
    tkio.write_json(out / "metrics.json", metrics)
    proba = trained.proba["test"]
    # p_true: probability given to the true class (its -log is the item's loss)
    rows = [[ds.display_path(i), ds.classes[ds.labels[i]], ds.classes[int(p.argmax())], f"{float(p.max()):.4f}", f"{float(p[ds.labels[i]]):.4f}"] for i, p in zip(sp.test, proba)]
    header = ["path", "true", "predicted", "confidence", "p_true"]
    if ds.kind == "text":  # the text itself (a snippet), so a person can read what was misclassified
        header.append("text")
        rows = [r + [snippet(ds.texts[i])] for r, i in zip(rows, sp.test)]
    tkio.write_csv(out / "predictions.csv", header, rows)


def _time_prediction(out: RunFolder, ds, sp, n: int = 32) -> dict:
    """End-to-end prediction time per item (decode + preprocess + model), measured on up to
    `n` real test items with the saved model, loaded back as `predict` loads it."""
    import timm.data
    import torch

    idx = sp.test[:n] if len(sp.test) else sp.train[:n]
    if not len(idx):
        return {"predict_s_per_item": None}
    from .features.extract import resize_hint_for

    run = Run.load(out.path)
    if run.kind == "text":  # tokenize + encoder + head (or tf-idf + linear), on real test texts
        texts = [ds.texts[int(i)] for i in idx]
        run.predict(texts[:2])
        t0 = time.perf_counter()
        run.predict(texts)
        dt = (time.perf_counter() - t0) / len(idx)
        return {"predict_s_per_item": dt, "predict_items_per_s": 1.0 / dt}
    model, tf = run.model, timm.data.create_transform(**run.data_config, is_training=False)
    hint = resize_hint_for(run.data_config)

    def once(items):
        x = torch.stack([tf(ds.load(int(i), hint)) for i in items]).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(x).softmax(-1)

    once(idx[:2])  # warm-up: first-call overheads are not per-item costs
    t0 = time.perf_counter()
    for s in range(0, len(idx), 32):
        once(idx[s : s + 32])
    dt = (time.perf_counter() - t0) / len(idx)
    return {"predict_s_per_item": dt, "predict_items_per_s": 1.0 / dt}
