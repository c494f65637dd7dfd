"""`transferkit tune DATA --strategy S [--trials N] [--time 30m]`: hyperparameter search with
Optuna on the one split `train` makes, selecting on validation only.

- TPE sampler (seeded), the default configuration as trial 0;
- weak trials pruned from their per-epoch validation loss (a loop callback reports it; Optuna's
  median pruner decides), for the strategies that train in epochs;
- every trial a normal run folder under OUT/trials/, the objective its validation log-loss (the
  probe's: of the fit that never saw the validation items), the test split never looked at
  until the best trial's own number is reported;
- trials stored in OUT/study.db (SQLite): a killed search started again with the same command
  goes on where it stopped — finished trials are kept, the one the kill interrupted is marked
  failed and not counted;
- the best trial kept as a normal run folder (OUT/best), and OUT/report.html: the optimisation
  history, the parameter importances (Optuna's own functions) and the best configuration as a
  command line to rerun.

The search space per strategy is `SPACES` (also in the README); choices only among options
that act for the strategy and kind of data (options.py).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from . import io as tkio
from .budget import parse_duration
from .errors import TransferkitError
from .log import log
from .loop.callbacks import Callback

# option -> ("float", lo, hi, log) | ("int", lo, hi) | ("cat", [values]); per strategy; images/texts filtered by options.py
COMMON_NET = {"lr": ("float", 1e-4, 1e-2, True), "label_smoothing": ("float", 0.0, 0.2, False), "dropout": ("float", 0.0, 0.5, False), "augment": ("cat", ["none", "light", "strong"])}
SPACES = {
    # image_size / max_length None: the backbone's own
    "probe": {"feature_power": ("cat", ["auto", "none", "sqrt"]), "image_size": ("cat", [None, 160, 192, 256]), "crop_pct": ("float", 0.75, 1.0, False), "max_length": ("cat", [None, 64, 128])},
    "head": {**COMMON_NET, "hidden": ("cat", [256, 512, 1024]), "epochs": ("int", 5, 20)},
    "partial": {**COMMON_NET, "body_lr_mult": ("float", 0.02, 1.0, True), "layer_decay": ("float", 0.6, 1.0, False), "unfreeze": ("int", 1, 4), "epochs": ("int", 3, 15), "head_epochs": ("int", 1, 3)},
    "finetune": {**COMMON_NET, "body_lr_mult": ("float", 0.02, 1.0, True), "layer_decay": ("float", 0.6, 1.0, False), "epochs": ("int", 3, 15), "head_epochs": ("int", 1, 3)},
    "scratch": {"lr": ("float", 3e-4, 1e-2, True), "dropout": ("float", 0.0, 0.5, False), "augment": ("cat", ["none", "light", "strong"]), "epochs": ("int", 10, 40)},
    "mlp": {"lr": ("float", 1e-4, 1e-2, True), "dropout": ("float", 0.0, 0.5, False), "epochs": ("int", 10, 40)},
}
STUDY = "transferkit"


def space(strategy, modality: str, cfg) -> dict:
    """The search space of `strategy` on this kind of data: the options that act for it."""
    from . import options as rules

    if strategy.name not in SPACES:
        raise TransferkitError(f"--strategy {strategy.name}: nothing to tune (it chooses its settings on validation itself); tune probe, head, partial, finetune, scratch or mlp")
    out = {}
    for k, v in SPACES[strategy.name].items():
        if not rules.applies(k, strategy, modality, cfg) or (k == "augment" and modality != "image"):
            continue
        default = getattr(cfg, k)
        if v[0] == "cat" and default not in v[1]:
            v = ("cat", [default, *v[1]])
        elif v[0] in ("float", "int") and default is not None:  # the range holds the default (trial 0)
            v = (v[0], min(v[1], default), max(v[2], default), *v[3:])
        out[k] = v
    return out


def _suggest(trial, name, spec):
    kind = spec[0]
    if kind == "float":
        return trial.suggest_float(name, spec[1], spec[2], log=spec[3])
    if kind == "int":
        return trial.suggest_int(name, spec[1], spec[2])
    return trial.suggest_categorical(name, spec[1])


class _DefaultsFailed(Exception):
    """Trial 0 (the defaults) failed: a problem with the data or the options, not with a trial's settings."""


class _Pruning(Callback):
    """Loop callback: the epoch's validation loss to the trial; a weak trial stops (TrialPruned)."""

    def __init__(self, trial):
        self.trial, self.step = trial, 0  # epochs over every loop of the run (a warm-up, then the body)

    def on_epoch_end(self, loop, epoch, logs):
        import math

        import optuna

        v = logs.get("val_loss")
        if v is None or not math.isfinite(v):
            return
        self.step += 1
        self.trial.report(float(v), step=self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation loss {v:.4f} at epoch {epoch}")


def tune(data, strategy: str = "probe", trials: int = 20, time_budget=None, out=None, seed: int = 0, **options) -> dict:
    """Search `strategy`'s settings on `data`; returns {"best": {...}, "dir", "trials"}. See the module docstring."""
    try:
        import optuna
    except ImportError:
        raise TransferkitError('tuning needs Optuna: pip install "transferkit[tune]"') from None
    from . import modality as modalities
    from .config import TrainConfig
    from .data import check_dataset, make_splits
    from .pipeline import check_device, prepare_config, run_prepared
    from .rundir import check_target
    from .strategies import check_supports

    seconds = parse_duration(time_budget, "--time")
    if int(trials) < 1:
        raise TransferkitError(f"--trials {trials}: run at least 1 trial")
    for bad in ("out", "strategy"):
        options.pop(bad, None)
    TrainConfig(data=str(data), strategy=strategy, seed=seed, **options).validate()
    check_device(options)
    ds = modalities.load_dataset(data, data_root=options.get("data_root"), text_column=options.get("text_column"), label_column=options.get("label_column"),
                             multi_label=options.get("multi_label"), label_sep=options.get("label_sep"))
    mod = modalities.of(ds)
    s = check_supports(strategy, mod.name)
    base_cfg = prepare_config(data, {**options, "strategy": strategy, "seed": seed}, ds)
    dims = {k: v for k, v in space(s, mod.name, base_cfg).items() if k not in options}
    if not dims:
        raise TransferkitError(f"--strategy {strategy}: every setting it has is fixed by the options given; nothing left to tune")
    protect = [str(data)] if Path(str(data)).expanduser().exists() else []
    d = check_target(out or Path("runs") / f"{Path(str(data)).stem or data}-tune-{strategy}", protect)
    d.mkdir(parents=True, exist_ok=True)
    (d / ".transferkit-run").write_text('{"kind": "tune", "format": 1}\n')
    splits = make_splits(ds, base_cfg.val_size, base_cfg.test_size, seed)
    checks = check_dataset(ds, splits)
    storage = f"sqlite:///{d / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):  # interrupted by a kill: never finished
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        log(f"trial {t.number} was interrupted by the last search; marked failed, it will not count")
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    if not study.trials:
        study.enqueue_trial({k: getattr(base_cfg, k) for k in dims}, user_attrs={"default": True})
    left = int(trials) - len(done)
    log(f"{ds.name}: tuning {strategy} over {', '.join(dims)}; {len(done)} trial(s) done earlier, {max(left, 0)} to go" + (f", at most {seconds:.0f} s" if seconds else ""))

    def objective(trial):
        params = {k: _suggest(trial, k, spec) for k, spec in dims.items()}
        folder = d / "trials" / f"{trial.number:04d}"
        cfg = prepare_config(data, {**options, **params, "strategy": strategy, "seed": seed, "out": str(folder)}, ds)
        log(f"trial {trial.number}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()))
        try:
            run = run_prepared(cfg, ds, splits, checks, reports=False, callbacks=[_Pruning(trial)])
        except TransferkitError as e:
            if trial.user_attrs.get("default"):  # the defaults fail: every trial would, stop here
                raise _DefaultsFailed(e) from e
            raise
        val = run.metrics["val"]
        trial.set_user_attr("run_dir", str(folder.relative_to(d)))
        trial.set_user_attr("val_accuracy", val.get("accuracy"))
        return float(val["log_loss"])

    t0 = time.perf_counter()
    if left > 0:
        try:
            study.optimize(objective, n_trials=left, timeout=seconds, catch=(TransferkitError,), gc_after_trial=True)
        except _DefaultsFailed as e:
            raise e.args[0] from None
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TransferkitError(f"{d}: no trial finished; see the log above (pruned or failed trials)")
    best = study.best_trial
    _keep_best(d, best.user_attrs["run_dir"])
    from .pipeline import write_reports

    write_reports(d / "best", ds)  # the best trial's own page: its test number, read once here
    command = rerun_command(data, strategy, {**options, "seed": seed}, best.params)
    summary = {"strategy": strategy, "data": str(data), "space": {k: list(v) for k, v in dims.items()}, "best": {"trial": best.number, "params": best.params, "val_log_loss": best.value,
               "val_accuracy": best.user_attrs.get("val_accuracy"), "run_dir": "best", "command": command},
               "trials": [{"number": t.number, "state": t.state.name, "params": t.params, "val_log_loss": t.value, "val_accuracy": t.user_attrs.get("val_accuracy"),
                           "default": bool(t.user_attrs.get("default"))} for t in study.trials], "seconds_this_session": time.perf_counter() - t0}
    tkio.write_json(d / "tune.json", summary)
    try:
        from .report.tune_page import write_tune_report

        page = write_tune_report(d, study)
        log(f"best trial {best.number}: validation log-loss {best.value:.4f}; kept as {d / 'best'}; report: {page}")
    except Exception as exc:  # noqa: BLE001 - the study and the best run are safe
        log(f"warning: the search page failed ({type(exc).__name__}: {exc}); the study is in {d / 'study.db'}")
    log(f"rerun the best: {command}")
    return {**summary, "dir": str(d)}


def _flag(k: str, v) -> str:
    name = k.replace("_", "-")
    if isinstance(v, bool):
        return f" --{name}" if v else f" --no-{name}"
    return f" --{name} {v:.4g}" if isinstance(v, float) else f" --{name} {v}"


def rerun_command(data, strategy: str, options: dict, params: dict) -> str:
    """`transferkit train ...` with the options the search was given and the best trial's settings."""
    import shlex

    given = {k: v for k, v in options.items() if v is not None and k not in params and not (k == "seed" and v == 0)}
    return f"transferkit train {shlex.quote(str(data))} --strategy {strategy}" + "".join(_flag(k, v) for k, v in {**given, **params}.items() if v is not None)


def _keep_best(d: Path, run_dir: str) -> None:
    """OUT/best: a copy of the best trial's run folder, swapped in whole."""
    from .rundir import RunFolder

    src = d / run_dir
    out = RunFolder(d / "best")
    try:
        for f in src.iterdir():
            if f.is_dir():
                shutil.copytree(f, out / f.name)
            elif f.name != ".transferkit-run":
                shutil.copyfile(f, out / f.name)
        out.commit()
    except BaseException:
        out.abandon()
        raise
