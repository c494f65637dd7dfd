"""`compare()`: many runs on one shared split, side by side.

Writes, in the comparison folder DIR:
- one run folder per run (the same contents `train` writes): DIR/<strategy>-<backbone>/ for
  transfer strategies, DIR/<strategy>/ for the from-scratch baselines (scratch, mlp), and
  DIR/<name>-<backbone>/ for a preset's named runs;
- DIR/leaderboard.json: a JSON **list** of row dicts, one per run, in run order, with the keys
  of leaderboard.FIELDS (`run_dir` relative to DIR; `error` "" for runs that finished, the
  error message for runs that failed, whose metric fields are then null);
- DIR/leaderboard.csv: the same rows as CSV.
Both are rewritten after every run, so an interrupted comparison keeps what it finished;
- DIR/report.html: the comparison page (`report.write_compare_report`), with a back-linked
  report.html in every run folder.

Every run uses the split made once here; runs on one backbone share its feature cache.
A run that fails (a bad option, out of memory, a diverging loss) is recorded and the others go on.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from . import io as tkio
from .config import TrainConfig
from .data import check_dataset, make_splits
from .errors import TransferkitError
from .leaderboard import leaderboard_row, write_leaderboard
from .log import log





def list_presets() -> list[str]:
    from importlib.resources import files

    return sorted(p.name[: -len(".yaml")] for p in files("transferkit").joinpath("presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict:
    """A preset: {'description': str, 'runs': [{'name': ..., <TrainConfig fields>}, ...]},
    from a YAML file path or the name of one shipped in transferkit/presets/."""
    import dataclasses
    from importlib.resources import files

    import yaml

    p = Path(name_or_path).expanduser()
    if p.is_file():
        text, where = p.read_text(encoding="utf-8"), str(p)
    else:
        res = files("transferkit").joinpath("presets", f"{name_or_path}.yaml")
        if not res.is_file():
            raise TransferkitError(f"--preset {name_or_path}: no such file and not a preset shipped with transferkit ({', '.join(list_presets())})")
        text, where = res.read_text(encoding="utf-8"), f"preset {name_or_path}"
    try:
        preset = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TransferkitError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(preset, dict) or not isinstance(preset.get("runs"), list) or not preset["runs"]:
        raise TransferkitError(f"{where}: expected a mapping with a non-empty `runs:` list (see transferkit/presets/vgg-study.yaml)")
    from .strategies import STRATEGIES

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "out", "extra"}
    for i, run in enumerate(preset["runs"], 1):
        if not isinstance(run, dict) or "strategy" not in run:
            raise TransferkitError(f"{where}: run {i} needs at least `strategy:` (one of {', '.join(STRATEGIES)})")
        unknown = sorted(set(run) - fields - {"name"})
        if unknown:
            raise TransferkitError(f"{where}: run {i} has unknown settings {unknown}; use TrainConfig fields ({', '.join(sorted(fields))})")
        run.setdefault("name", run["strategy"])
    return preset


def _backbone_label(backbone: str) -> str:
    """A backbone as one safe folder-name part: a local folder or file (or a hub name like
    `org/model`) by its last path part, anything but letters, digits, `._-` replaced — so a
    run folder is always one level under DIR."""
    last = re.split(r"[\\/]", backbone.rstrip("/\\"))[-1] or "backbone"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip(".") or "backbone"


def _plan(strategies, backbones, preset) -> list[dict]:
    """The runs to do: [{'name', 'folder', 'options'}] (options: TrainConfig fields)."""
    from .strategies import get

    runs = preset["runs"] if preset else [{"name": s, "strategy": s} for s in strategies]
    plan, seen = [], set()
    for r in runs:
        opts = {k: v for k, v in r.items() if k != "name"}
        for b in backbones if get(opts["strategy"]).uses_backbone else ["none"]:
            folder = r["name"] if b == "none" else f"{r['name']}-{_backbone_label(b)}"
            if folder in seen:
                continue
            seen.add(folder)
            plan.append({"name": r["name"], "folder": folder, "options": {**opts, **({} if b == "none" else {"backbone": b})}})
    return plan


def compare(data: str, strategies=None, backbones=None, out: str | None = None, preset: str | None = None, ensemble: bool = True, time_budget=None, **options) -> list[dict]:
    """Run every strategy x backbone (or a preset's runs) on one split; returns the leaderboard
    rows and writes DIR/leaderboard.{json,csv} and one run folder per row.

    `options` are TrainConfig fields shared by every run (seed, val_size, epochs, cache_dir, ...).
    strategies None: every strategy the data's modality has (strategies/registry.py);
    backbones None: the modality's default backbone. `ensemble` (default True): with two runs or
    more, add the greedy ensemble of their validation probabilities (run_ensemble.py) as a row.
    `time_budget` ("1h", "30m", seconds): the runs cheapest first, each started only while the
    budget covers its least cost, a started one stopped after its last epoch that fits; the
    skipped ones are rows that say so (budget.py).
    """
    from .budget import cheapest_first, least_s, parse_duration, reserve_s

    from . import modality as modalities
    from . import options as option_rules
    from .pipeline import check_device, prepare_config, run_prepared
    from .report import write_compare_report
    from .strategies import check_supports, for_modality
    from .strategies import get as get_strategy

    for bad in ("data", "out", "strategy", "backbone"):
        if bad in options:
            raise TransferkitError(f"compare: pass {bad} through compare's own arguments, not as a shared option")
    budget_s = parse_duration(time_budget, "--time-budget")
    TrainConfig(data=str(data), **options).validate()  # shared options are checked before anything runs
    check_device(options)
    ds = modalities.load_dataset(data, data_root=options.get("data_root"), text_column=options.get("text_column"), label_column=options.get("label_column"),
                             multi_label=options.get("multi_label"), label_sep=options.get("label_sep"))
    mod = modalities.of(ds)
    if strategies is None:
        strategies = for_modality(mod.name)
    if backbones is None:
        backbones = (mod.default_backbone,)
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    if isinstance(backbones, str):
        backbones = [b.strip() for b in backbones.split(",") if b.strip()]
    if not strategies and not preset:
        raise TransferkitError("--strategies is empty; give e.g. probe,head,finetune,scratch,mlp")
    if not backbones:
        raise TransferkitError(f"--backbones is empty; give e.g. {mod.default_backbone}")
    if not preset:
        unknown = [s for s in strategies if mod.name not in get_strategy(s).modalities]
        if unknown:
            raise TransferkitError(f"--strategies: {', '.join(unknown)} not available for {mod.name} data (choices: {', '.join(for_modality(mod.name))})")
    for b in backbones:  # a backbone of another kind of data is refused at once; an unknown name fails its runs
        other = next((m for m in modalities.MODALITIES.values() if m is not mod and m.knows_backbone(b)), None)
        if other is not None and not mod.knows_backbone(b):
            raise TransferkitError(f"--backbones {b}: a backbone for {other.name}s, not {mod.name}s; for {mod.name} data use e.g. {mod.default_backbone} (`transferkit backbones` lists them)")
    preset_d = load_preset(preset) if preset else None
    plan = _plan(strategies, backbones, preset_d)
    # each run gets the shared options that act for it; one that acts for none of them is refused
    configs = []
    for item in plan:
        opts = {**options, **item["options"]}
        strategy = check_supports(opts["strategy"], mod.name)
        probe_cfg = TrainConfig(data=str(data), **opts).validate().resolve(mod, strategy)
        dropped = [k for k in option_rules.inapplicable(set(options), strategy, mod.name, probe_cfg) if k not in item["options"]]
        option_rules.check(set(item["options"]) - {"strategy"}, strategy, mod.name, probe_cfg)
        configs.append((item, {k: v for k, v in opts.items() if k not in dropped}, dropped))
    unused = set(options).intersection(*[set(dr) for _, _, dr in configs]) if configs else set()
    if unused:
        k = sorted(unused)[0]
        rule = option_rules.RULES[k]
        raise TransferkitError(f"--{k.replace('_', '-')} does nothing for any run of this comparison ({', '.join(i['folder'] for i, _, _ in configs)}): it applies to {rule.to}; drop it")

    if budget_s is not None:
        configs = cheapest_first(configs, lambda c: c[1]["strategy"])
    d = Path(out or Path("runs") / f"{Path(str(data)).name or data}-compare").expanduser().resolve()
    d.mkdir(parents=True, exist_ok=True)
    splits = make_splits(ds, options.get("val_size", 0.15), options.get("test_size", 0.15), options.get("seed", 0))
    checks = check_dataset(ds, splits)
    log(f"{ds.name}: {len(ds)} items, {len(ds.classes)} classes; one split for all {len(plan)} runs: train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}")
    for w in checks.warnings:
        log(f"warning: {w}")

    from .loop.distributed import from_env

    dist = from_env()
    rows: list[dict] = []
    board: list[dict] = []
    feature_rate: dict[tuple, float] = {}  # s per item of features extracted in this comparison, per backbone + input
    t0 = time.perf_counter()
    wall0 = time.time()
    deadline = wall0 + budget_s - reserve_s(budget_s) if budget_s is not None else None
    if deadline is not None:
        log(f"--time-budget {budget_s:.0f} s: runs cheapest first ({', '.join(i['folder'] for i, _, _ in configs)}); a run starts while the budget covers its least cost")
    skipped = []
    for i, (item, opts, dropped) in enumerate(configs, 1):
        row = {"name": item["name"], "strategy": opts["strategy"], "backbone": opts.get("backbone", "none"), "run_dir": item["folder"], "error": ""}
        key = (opts.get("backbone"), opts.get("image_size"), opts.get("max_length"))
        if deadline is not None:
            left = deadline - time.time()
            rate = cached_feature_rate(feature_rate, key)
            if rate is None:
                rate = next(iter(feature_rate.values()), None) if get_strategy(opts["strategy"]).uses_backbone else 0.0
            need = least_s(opts["strategy"], len(splits.train), len(ds), rate, key in feature_rate)
            if left <= 0 or (need is not None and need > left):
                why = f"skipped: the --time-budget had {max(left, 0):.0f} s left and this run needs at least ~{need or 0:.0f} s"
                log(f"run {i}/{len(plan)}: {item['folder']} {why}")
                rows.append({**row, "run_dir": None, "error": why})
                skipped.append(item["folder"])
                board = write_leaderboard(d, rows)
                continue
        log(f"run {i}/{len(plan)}: {item['folder']}" + (f" (without {', '.join('--' + k.replace('_', '-') for k in dropped)}: not used by {opts['strategy']})" if dropped else ""))
        try:
            cfg = prepare_config(data, {**opts, "out": str(d / item["folder"])}, ds)
            extra = []
            if deadline is not None:
                from .loop.callbacks import Deadline

                extra = [Deadline(deadline)]
            run = run_prepared(cfg, ds, splits, checks, reports=False, callbacks=extra)
            if run is None:  # a torchrun rank other than 0: rank 0 keeps the leaderboard
                continue
            t = run.metrics.get("timing", {})
            earlier = cached_feature_rate(feature_rate, key)  # items cached by an earlier run are charged at its rate; this run's own are in extract_s
            if t.get("backbone_runs") and t.get("extract_s"):
                feature_rate.setdefault(key, t["extract_s"] / t["backbone_runs"])
            row.update(leaderboard_row(run.metrics, run.config, earlier))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one failed run must not stop the comparison
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            row.update(error=f"{type(exc).__name__}: {msg}"[:500], run_dir=None)
            log(f"run {item['folder']} failed: {row['error']}")
        rows.append(row)
        board = write_leaderboard(d, rows)
    if not dist.is_main:
        return []
    if ensemble and ds.multilabel:
        log("no run ensemble: it averages softmax probabilities of single-label runs; these runs predict label sets")
    elif ensemble and sum(1 for r in rows if not r.get("error")) >= 2:
        from . import run_ensemble

        try:
            row = run_ensemble.build(d, rows, ds, splits, checks)
        except Exception as exc:  # noqa: BLE001 - the runs are safe; the ensemble row says why it failed
            row = {"name": "ensemble", "strategy": "ensemble", "backbone": "", "run_dir": None, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
            log(f"ensemble failed: {row['error']}")
        if row is not None:
            rows.append(row)
            board = write_leaderboard(d, rows)
    try:
        page = write_compare_report(d, runs="all")
    except Exception as exc:  # noqa: BLE001 - the runs and leaderboard are safe on disk
        page = None
        log(f"warning: report.html failed ({type(exc).__name__}: {exc}); try `transferkit report {d}`")
    if skipped:
        log(f"--time-budget: skipped {', '.join(skipped)} (the budget was spent; a larger --time-budget runs them)")
    log(f"compared {len(rows)} runs in {time.perf_counter() - t0:.0f} s; leaderboard: {d / 'leaderboard.csv'}" + (f"; report: {page}" if page else ""))
    for r in rows:
        acc = r.get("test_accuracy")
        score = f"test macro-F1 {r['macro_f1']:.4f}, mAP {r['mAP']:.4f}" if r.get("multilabel") and r.get("mAP") is not None else f"test accuracy {acc:.4f}" if acc is not None else None
        log(f"  {r['run_dir'] or r['name']:36} " + (score or (r["error"] if r["error"].startswith("skipped") else f"FAILED {r['error']}")))
    return board


def cached_feature_rate(rates: dict, key: tuple) -> float | None:
    """Seconds per item that extracting features for `key` (backbone, image size, max length)
    cost an earlier run of the comparison; for a feature ensemble (`a+b@192`) whose own key has
    no earlier run, the sum of its members' rates when every member has one (its features come
    from their caches, so its training time is charged for them, not zero)."""
    if key in rates:
        return rates[key]
    name, size, max_length = key
    from .backbones.ensemble import SEP, parse_members

    if not isinstance(name, str) or SEP not in name:
        return None
    parts = [rates.get((n, s or size, max_length)) for n, s in parse_members(name)]
    return sum(parts) if parts and all(p is not None for p in parts) else None
