"""`train()`: data -> split -> checks -> strategy -> calibration -> evaluation -> a complete run
folder. The same for every modality and strategy: what differs lives in `modality/` and
`strategies/`."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

from . import io as tkio
from . import options as option_rules
from .config import TrainConfig
from .data import check_dataset, make_splits
from .errors import TransferkitError
from .log import log
from .memory import PeakMemory, process_peak_mb
from .model_io import MODEL_FILE, save_model
from .paths import safe_name
from .report import write_markdown_report, write_run_report
from .rundir import RunFolder, check_target
from .run import Run

PROBA_FILE = "proba.npz"  # validation and test probabilities, with the items' dataset indices
# options that may differ from the interrupted run when resuming it
RESUME_MAY_CHANGE = ("epochs", "patience", "cache_dir", "workers", "device")


def default_out(cfg: TrainConfig) -> str:
    data = Path(cfg.data).name or cfg.data
    tail = f"-{safe_name(cfg.backbone)}" if cfg.backbone and cfg.backbone != "none" else ""
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


def load_for(cfg: TrainConfig):
    """The dataset a config names, read with the config's data options."""
    from .modality import load_dataset

    return load_dataset(cfg.data, data_root=cfg.data_root, text_column=cfg.text_column, label_column=cfg.label_column, multi_label=cfg.multi_label, label_sep=cfg.label_sep)


def prepare_config(data, options: dict, ds) -> TrainConfig:
    """A validated, resolved config for `options` on `ds`, every given option checked: one that
    would do nothing for this strategy and kind of data is refused before any work."""
    from . import modality as modalities
    from .strategies import check_supports

    cfg = TrainConfig(data=str(data), **options).validate()
    mod = modalities.of(ds)
    strategy = check_supports(cfg.strategy, mod.name)
    cfg.resolve(mod, strategy)
    cfg.multi_label = bool(getattr(ds, "multilabel", False))  # what the data turned out to be (a report reloads it so)
    if cfg.multi_label and not strategy.multilabel:
        raise TransferkitError(f"--strategy {cfg.strategy} is for one label per item; {data} holds label sets: use probe, head, partial or finetune (or --no-multi-label)")
    option_rules.check(set(options) - {"strategy"}, strategy, mod.name, cfg)
    from .backbones.ensemble import is_ensemble

    if is_ensemble(cfg.backbone) and not (strategy.feature_ensembles and mod.feature_ensembles):
        raise TransferkitError(f"--backbone {cfg.backbone}: several backbones or a member's @size make a feature ensemble, for --strategy probe on images; give one backbone name here")
    return cfg.validate()


def check_device(options: dict) -> None:
    """A device or precision this machine cannot give is refused before any data is read."""
    if "device" in options or "precision" in options:
        from .loop.devices import choose

        choose(options.get("device", "auto"), options.get("precision", "auto"))


def train(data: str | None = None, resume: str | None = None, **options) -> Run:
    """Train one strategy on `data` and write a run folder; returns the loaded `Run`.

    Options are the fields of `TrainConfig` (strategy, backbone, weights, head, image_size,
    val_size, test_size, seed, batch_size, device, precision, cache_dir, out, epochs, lr,
    augment, ...; for texts also text_column, label_column, max_length). Images or texts: the
    data decides (see `load_dataset`). `resume=RUN_DIR` continues an interrupted training run
    from its last finished epoch (weights, optimizer and schedule state), with the settings it
    started with. Under torchrun, every process runs this; rank 0 writes the run folder.
    """
    state = None
    if resume is not None:
        cfg, state = _resume_config(resume, data, options)
        ds = load_for(cfg)
    else:
        if data is None:
            raise TransferkitError("no data given: pass a folder, a CSV or a built-in dataset name (or --resume RUN_DIR)")
        TrainConfig(data=str(data), **options).validate()  # bad values are refused before the data is read
        check_device(options)
        if options.get("out"):
            protect = [str(data)] if Path(str(data)).expanduser().exists() else []
            check_target(options["out"], protect)  # refuse a bad --out before any work
        from .modality import load_dataset

        ds = load_dataset(data, data_root=options.get("data_root"), text_column=options.get("text_column"), label_column=options.get("label_column"),
                             multi_label=options.get("multi_label"), label_sep=options.get("label_sep"))
        cfg = prepare_config(data, options, ds)
    t_start = time.perf_counter()
    protect = [cfg.data] if Path(cfg.data).expanduser().exists() else []
    out_path = check_target(cfg.out, protect) if cfg.out else None
    splits = make_splits(ds, cfg.val_size, cfg.test_size, cfg.seed)
    checks = check_dataset(ds, splits)
    log(f"{ds.name}: {len(ds)} {ds.unit}s, {len(ds.classes)} classes; split train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}")
    for w in checks.warnings:
        log(f"warning: {w}")
    return run_prepared(cfg, ds, splits, checks, resume_state=state, t_start=t_start, out_path=out_path)


def run_prepared(cfg: TrainConfig, ds, splits, checks, resume_state: dict | None = None, t_start: float | None = None, out_path: Path | None = None, reports: bool = True,
                 callbacks: list = ()) -> Run | None:
    """Train `cfg` (validated and resolved, see `prepare_config`) on an already loaded and split
    dataset (`train`, and each of `compare`'s runs; `reports` False: the caller renders the
    reports). Returns the run (None on ranks other than 0 under torchrun)."""
    import torch

    from . import modality as modalities
    from .loop.devices import choose
    from .loop.distributed import from_env
    from .strategies import Context, function, get

    t_start = time.perf_counter() if t_start is None else t_start
    mod = modalities.of(ds)
    strategy = get(cfg.strategy)
    dist = from_env()
    protect = [cfg.data] if Path(cfg.data).expanduser().exists() else []
    digest = split_digest(ds, splits)
    if resume_state is not None and resume_state.get("split_digest", digest) != digest:
        raise TransferkitError(f"--resume {cfg.out}: the data or its split changed since the interrupted run; start a new run without --resume")
    placement = choose(cfg.device, cfg.precision) if cfg.strategy != "tfidf" else choose("cpu", "fp32")
    torch.manual_seed(cfg.seed)  # random-init weights (pretrained=False, scratch, mlp) follow the seed too
    cfg.extra["kind"] = mod.name
    if Path(cfg.data).exists():  # so `transferkit report` finds the data from any working directory
        cfg.extra["data_path"] = str(Path(cfg.data).resolve())
    cfg.extra["device"] = placement.as_dict()
    if dist.active:
        cfg.extra["distributed"] = {"world_size": dist.world, "backend": dist.backend, "per_process_batch": cfg.batch_size,
                                    "effective_batch": cfg.batch_size * dist.world * cfg.grad_accum,
                                    "lr_rule": "the learning rates as given, for the effective batch (no automatic scaling with the world size)"}
    if dist.is_main:
        log(f"device: {placement.device} ({placement.name}), {placement.precision} — {placement.reason}")
    backbone, data_config = mod.prepare(cfg, ds, splits, strategy.uses_backbone)
    cfg.extra.update(data_config=data_config, engine="torch-eager")  # what extracts features is recorded when it runs (cached_features)
    cfg.extra["split_digest"] = digest
    ctx = Context(cfg, ds, splits, mod, backbone, data_config, placement, dist, callbacks=list(callbacks))
    out_path = out_path or check_target(cfg.out or default_out(cfg), protect)
    if strategy.trains_network:
        ckpt = checkpoint_dir_for(out_path)
        if dist.is_main:
            if resume_state is None and ckpt.exists():
                log(f"warning: {ckpt} held an interrupted run's state; this new run replaces it")
                shutil.rmtree(ckpt, ignore_errors=True)
            ckpt.mkdir(parents=True, exist_ok=True)
            saved = {k: v for k, v in cfg.to_dict().items() if k != "extra"}
            tkio.write_json(ckpt / "config.json", {**saved, "out": str(out_path), "split_digest": digest})
        dist.barrier()
        ctx.checkpoint_dir, ctx.resume_state = str(ckpt), (resume_state or {}).get("files")
    try:
        with PeakMemory() as mem_train:
            trained = function(cfg.strategy)(ctx)  # None on the ranks that leave the fit to rank 0
            if trained is not None and ds.multilabel:
                from .multilabel_run import set_thresholds

                set_thresholds(ctx, trained)  # calibration, TTA and the trust steps assume a softmax: skipped, and said so
            elif trained is not None:
                _calibrate(ctx, trained)
                if dist.is_main:
                    from .tta_eval import apply_tta

                    apply_tta(ctx, trained)
                    from .trust import assess

                    trained.info["trust"] = assess(ctx, trained)
    except KeyboardInterrupt:
        if ctx.checkpoint_dir and any(Path(ctx.checkpoint_dir).glob("*.pt")):
            log(f"interrupted; the training state of the last finished epoch is in {ctx.checkpoint_dir}. Continue with: transferkit train --resume {out_path}")
        raise
    if not dist.is_main:  # rank 0 writes the run folder; the others are done
        dist.barrier()
        return None
    log(f"writing run folder {out_path}")
    out = RunFolder(out_path, protect)
    try:
        _write_run(out, ctx, trained, checks)
        with PeakMemory(full_collect=False) as mem_pred:  # the saved model loaded and predicting real items
            t_pred = _time_prediction(out, ctx)
        metrics = tkio.read_json(out / "metrics.json")
        metrics["timing"].update(t_pred, total_s=time.perf_counter() - t_start)
        metrics["memory"] = {"peak_rss_mb": process_peak_mb(), "train_peak_mb": mem_train.peak_mb, "predict_peak_mb": mem_pred.peak_mb, "train_start_mb": mem_train.start_mb, "predict_start_mb": mem_pred.start_mb, "method": mem_train.method,
                              "note": "peak resident memory (RSS) of the main process during training / during prediction of a batch of test items; DataLoader workers not counted"}
        tkio.write_json(out / "metrics.json", metrics)
        final = out.commit()
    except BaseException:
        out.abandon()
        raise
    finally:
        dist.barrier()
    for f in ctx.cleanup:
        f()
    m = metrics["test"]
    ran = f"; backbone ran on {ctx.timing['backbone_runs']} items" if "backbone_runs" in ctx.timing else ""
    if m.get("multilabel"):
        log(f"test macro-F1 {m['macro_f1']:.4f}, mAP {m['mAP'] if m['mAP'] is not None else float('nan'):.4f}, micro-F1 {m['micro_f1']:.4f}, subset accuracy {m['accuracy']:.4f}{ran}")
    else:
        log(f"test accuracy {m.get('accuracy', float('nan')):.4f}, macro-F1 {m.get('macro_f1', float('nan')):.4f}{ran}")
    report = write_reports(final, ds) if reports else None
    log(f"run folder: {final}" + (f"  (report: {report})" if report else ""))
    return Run.load(final)


def _calibrate(ctx, trained) -> None:
    """Temperature scaling (`--calibrate temperature`): one temperature fitted on the validation
    probabilities, applied in the saved model; every split's probabilities recomputed with it."""
    from .calibrate import fit_temperature

    cfg = ctx.config
    info = trained.info
    before = {s: p for s, p in trained.proba.items()}
    info["calibration"] = {"method": cfg.calibrate, "temperature": 1.0}
    if cfg.calibrate == "none" or not len(ctx.splits.val) or not hasattr(trained.model, "set_temperature"):
        return
    logp = np.log(np.clip(before["val"], 1e-12, 1.0))
    t = float(fit_temperature(logp, ctx.dataset.labels[ctx.splits.val]))
    trained.model.set_temperature(t)
    for s, p in before.items():  # softmax(log p / T): the same numbers the saved model now gives
        z = np.log(np.clip(p, 1e-12, 1.0)) / t
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        trained.proba[s] = (e / e.sum(1, keepdims=True)).astype(np.float64)
    info["calibration"] = {"method": "temperature", "temperature": t, "fitted_on": f"{len(ctx.splits.val)} validation items"}
    info["uncalibrated_proba"] = before


def _resume_config(run_dir: str, data: str | None, options: dict) -> tuple[TrainConfig, dict]:
    from .loop import load_checkpoint

    final = Path(run_dir).expanduser().resolve()
    ckpt = checkpoint_dir_for(final)
    files = sorted(ckpt.glob("*.pt")) if ckpt.is_dir() else []
    if not files or not (ckpt / "config.json").is_file():
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
    states = {}
    for f in files:
        try:
            states[f.name] = load_checkpoint(f)
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is a user-level problem
            raise TransferkitError(f"{f}: cannot be read ({type(exc).__name__}); start the run again without --resume") from None
    last = states.get("last.pt") or next(iter(states.values()))
    log(f"resuming {final.name} after epoch {last['epoch']} of {cfg.epochs}" + (" (head warm-up)" if "last.pt" not in states else ""))
    return cfg, {"split_digest": digest, "files": states}


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


def _write_run(out: RunFolder, ctx, trained, checks) -> None:
    from .calibrate import calibration_report
    from .metrics import evaluate

    cfg, ds, sp, mod = ctx.config, ctx.dataset, ctx.splits, ctx.modality
    tkio.write_json(out / "config.json", cfg.to_dict())
    tkio.write_json(out / "labels.json", {"classes": ds.classes})
    tkio.write_json(out / "splits.json", {"seed": cfg.seed, "val_size": cfg.val_size, "test_size": cfg.test_size, **{k: [ds.display_path(i) for i in getattr(sp, k)] for k in ("train", "val", "test")}})
    tkio.write_json(out / "checks.json", {"classes": ds.class_counts(), **checks.as_dict(), "near_duplicates": trained.info.get("trust", {}).get("near_duplicates")})
    save_model(out.path, trained.model, trained.info, ctx.backbone)
    if hasattr(trained.model, "parameters"):
        params_total = sum(p.numel() for p in trained.model.parameters())
        params_trainable = trained.info.pop("params_trainable", None)
        if params_trainable is None:  # the probe: only its head was fitted
            params_trainable = sum(p.numel() for p in trained.model.head.parameters())
    else:
        params_total = params_trainable = trained.model.num_params()
    history = trained.info.pop("history", None)
    uncalibrated = trained.info.pop("uncalibrated_proba", None)
    trust = trained.info.pop("trust", {})
    tta = trained.info.pop("tta", None)
    audit = trust.get("audit") or {}
    if audit.get("available"):
        from .audit import write_label_issues_csv

        ids = {r["index"]: r["path"] for r in audit["issues"]}
        write_label_issues_csv(out / "label_issues.csv", audit["issues"], ids)
        audit = {**audit, "issues": audit["issues"][:100], "file": "label_issues.csv"}
    if history:
        from .loop import HISTORY_COLUMNS

        cols = HISTORY_COLUMNS if set(history[0]) <= set(HISTORY_COLUMNS) else list(history[0])
        tkio.write_csv(out / "history.csv", cols, [[h.get(c) for c in cols] for h in history])
    if ds.multilabel:  # label sets: their own numbers and predictions file (multilabel_run.py)
        from .multilabel_run import metrics_json, write_predictions

        tkio.write_json(out / "metrics.json", metrics_json(ctx, trained, params_total, params_trainable))
        _write_proba(out, trained, sp)
        write_predictions(out / "predictions.csv", ctx, trained, *mod.prediction_columns(ds, sp.test))
        return
    y = {name: ds.labels[getattr(sp, name)] for name in ("train", "val", "test")}
    metrics = {name: evaluate(y[name], trained.proba[name], ds.classes) for name in ("test", "val", "train")}
    metrics["calibration"] = {
        "method": trained.info.get("calibration", {}).get("method", "none"),
        "temperature": trained.info.get("calibration", {}).get("temperature", 1.0),
        "bins": 15,
        **{name: {"after": calibration_report(trained.proba[name], y[name]), **({"before": calibration_report(uncalibrated[name], y[name])} if uncalibrated else {})}
           for name in ("val", "test") if len(y[name])},
    }
    metrics["selective"] = trust.get("selective")
    if tta:
        metrics["tta"] = {**{k: v for k, v in tta.items() if k != "test_without"}, "test_without": evaluate(y["test"], tta["test_without"], ds.classes)}
    metrics["audit"] = audit or None
    metrics.update(
        timing={k: v for k, v in ctx.timing.items()},
        model={"params_total": params_total, "params_trainable": params_trainable, **{k: v for k, v in trained.info.items()}},
        data={
            "name": ds.name,
            "items": len(ds),
            "classes": ds.classes,
            "split_sizes": {k: len(getattr(sp, k)) for k in ("train", "val", "test")},
            "class_counts": {k: np.bincount(ds.labels[getattr(sp, k)], minlength=len(ds.classes)).tolist() for k in ("train", "val", "test")},
            "kind": mod.name,
            **({"truncation": cfg.extra["truncation"]} if "truncation" in cfg.extra else {}),
        },
    )
    tkio.write_json(out / "metrics.json", metrics)
    _write_proba(out, trained, sp)
    proba = trained.proba["test"]
    # p_true: probability given to the true class (its -log is the item's loss)
    rows = [[ds.display_path(i), ds.classes[ds.labels[i]], ds.classes[int(p.argmax())], f"{float(p.max()):.4f}", f"{float(p[ds.labels[i]]):.4f}"] for i, p in zip(sp.test, proba)]
    extra_cols, extra = mod.prediction_columns(ds, sp.test)
    tkio.write_csv(out / "predictions.csv", ["path", "true", "predicted", "confidence", "p_true", *extra_cols], [r + e for r, e in zip(rows, extra)])


def _write_proba(out: RunFolder, trained, sp) -> None:
    with tkio.atomic_path(out / PROBA_FILE) as tmp:  # what run ensembles are chosen from (validation) and scored on (test)
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"{s}_{k}": v for s in ("val", "test") for k, v in (("proba", np.asarray(trained.proba[s], dtype=np.float32)), ("items", np.asarray(getattr(sp, s))))})


def _time_prediction(out: RunFolder, ctx, n: int = 32) -> dict:
    """End-to-end prediction time per item (decode or tokenise + model), measured on up to `n`
    real test items with the saved model, loaded back as `predict` loads it, on the run's device."""
    from .predictor import TorchPredictor

    sp, ds = ctx.splits, ctx.dataset
    idx = sp.test[:n] if len(sp.test) else sp.train[:n]
    if not len(idx):
        return {"predict_s_per_item": None}
    pred = TorchPredictor(Run.load(out.path), ctx.placement)
    dc = ctx.data_config

    def once(items):
        pred.predict_items([ctx.modality.raw_item(ds, int(i), dc) for i in items])

    once(idx[:2])  # warm-up: first-call overheads are not per-item costs
    t0 = time.perf_counter()
    for s in range(0, len(idx), 32):
        once(idx[s : s + 32])
    dt = (time.perf_counter() - t0) / len(idx)
    return {"predict_s_per_item": dt, "predict_items_per_s": 1.0 / dt, "predict_device": str(ctx.placement.device)}


__all__ = ["MODEL_FILE", "checkpoint_dir_for", "default_out", "prepare_config", "run_prepared", "split_digest", "train", "write_reports"]
