"""The ensemble row of a comparison: greedy ensemble selection (Caruana et al. 2004) over the
runs' validation probabilities — the weights are chosen on validation only — then scored once
on test like any run, and saved as a run folder (DIR/ensemble) that predict, export and serve
accept: one model that runs every member on its own preprocessing and averages their
calibrated probabilities with the chosen weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import io as tkio
from .log import log

FOLDER = "ensemble"


def _load_proba(run_dir: Path) -> dict | None:
    f = run_dir / "proba.npz"
    if not f.is_file():
        return None
    z = np.load(f, allow_pickle=False)
    return {k: z[k] for k in z.files}


def build(d: Path, rows: list[dict], ds, splits, checks) -> dict | None:
    """Choose, score and save the ensemble of the comparison's runs in `d`; its leaderboard row
    (None when fewer than two runs can take part)."""
    from .ensemble import combine, greedy_selection
    from .metrics import evaluate
    from .rundir import RunFolder
    from .run import Run

    ok = [r for r in rows if not r.get("error") and r.get("run_dir")]
    runs, probas, skipped = {}, {}, []
    for r in ok:
        run = Run.load(d / r["run_dir"])
        z = _load_proba(run.dir)
        if z is None or not isinstance(run.model, torch.nn.Module) or "members" in run.data_config:
            why = "no probabilities saved" if z is None else ("an ensemble already" if isinstance(run.model, torch.nn.Module) else "not a neural network")
            skipped.append(f"{r['run_dir']} ({why})")
            continue
        if not (np.array_equal(z["val_items"], splits.val) and np.array_equal(z["test_items"], splits.test)):
            skipped.append(f"{r['run_dir']} (another split)")
            continue
        runs[r["run_dir"]], probas[r["run_dir"]] = (run, r), z
    if len(runs) < 2 or not len(splits.val):
        log("no ensemble: " + ("no validation split" if len(runs) >= 2 else f"{len(runs)} run(s) can take part") + (f"; left out: {', '.join(skipped)}" if skipped else ""))
        return None
    y_val, y_test = np.asarray(ds.labels)[splits.val], np.asarray(ds.labels)[splits.test]
    sel = greedy_selection({k: v["val_proba"].astype(np.float64) for k, v in probas.items()}, y_val, metric="log_loss")
    weights = {k: w for k, w in sel["weights"].items() if w > 0}
    log(f"ensemble of {len(weights)} run(s), weights chosen on validation: " + ", ".join(f"{k} {w:.2f}" for k, w in weights.items()))
    p_val = combine({k: probas[k]["val_proba"].astype(np.float64) for k in weights}, weights)
    p_test = combine({k: probas[k]["test_proba"].astype(np.float64) for k in weights}, weights)
    members = [runs[k][0] for k in weights]
    model = _model(members, [weights[k] for k in weights])
    first = members[0]
    out = RunFolder(d / FOLDER, [first.config.data] if Path(first.config.data).exists() else [])
    try:
        cfg = first.config.to_dict()
        cfg.update(strategy="ensemble", backbone="+".join(m.config.backbone for m in members), out=str(d / FOLDER), head="ensemble")
        cfg["extra"] = {**first.config.extra, "data_config": {"members": [_dc(m) for m in members]},
                        "ensemble": {"members": list(weights), "weights": list(weights.values()), "method": "greedy ensemble selection with replacement (Caruana et al. 2004) on validation log-loss",
                                     "val_log_loss_by_round": sel["history"], "single_best": list(sel["single_best"]), "left_out": skipped}}
        tkio.write_json(out / "config.json", cfg)
        for f in ("labels.json", "splits.json", "checks.json"):
            (out / f).write_bytes((first.dir / f).read_bytes())
        import shutil

        from .backbones.text import ENCODER_DIR

        for i, m in enumerate(members):  # a text member's tokenizer, beside the weights
            if (m.dir / ENCODER_DIR).is_dir():
                shutil.copytree(m.dir / ENCODER_DIR, out / f"encoder_{i}")
        from .model_io import save_model

        save_model(out.path, model, {})
        train_ = json.loads((first.dir / "metrics.json").read_text()).get("train", {})
        tm = {k: sum(float(((runs[n][0].metrics.get("timing") or {}).get(k)) or 0) for n in weights) for k in ("train_s", "predict_s_per_item")}
        metrics = {"test": evaluate(y_test, p_test, ds.classes), "val": evaluate(y_val, p_val, ds.classes), "train": train_,
                   "timing": {"train_s": tm["train_s"], "predict_s_per_item": tm["predict_s_per_item"], "note": "the sums of the members' (training, and prediction per item)"},
                   "model": {"params_total": sum(p.numel() for p in model.parameters()), "params_trainable": 0, "head": "ensemble", "members": list(weights), "weights": list(weights.values())},
                   "data": json.loads((first.dir / "metrics.json").read_text()).get("data", {}), "memory": {}}
        from .calibrate import calibration_report

        metrics["calibration"] = {"method": "members' temperatures", "temperature": 1.0, "bins": 15, "val": {"after": calibration_report(p_val, y_val)}, "test": {"after": calibration_report(p_test, y_test)}}
        tkio.write_json(out / "metrics.json", metrics)
        with tkio.atomic_path(out / "proba.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, val_proba=p_val.astype(np.float32), val_items=np.asarray(splits.val), test_proba=p_test.astype(np.float32), test_items=np.asarray(splits.test))
        rows_csv = [[ds.display_path(i), ds.classes[ds.labels[i]], ds.classes[int(p.argmax())], f"{float(p.max()):.4f}", f"{float(p[ds.labels[i]]):.4f}"] for i, p in zip(splits.test, p_test)]
        extra_cols, extra = first.modality.prediction_columns(ds, splits.test)
        tkio.write_csv(out / "predictions.csv", ["path", "true", "predicted", "confidence", "p_true", *extra_cols], [a + b for a, b in zip(rows_csv, extra)])
        final = out.commit()
    except BaseException:
        out.abandon()
        raise
    from .leaderboard import leaderboard_row
    from .run import Run as R

    saved = R.load(final)
    row = {"name": "ensemble", "strategy": "ensemble", "backbone": cfg["backbone"], "run_dir": FOLDER, "error": "", **leaderboard_row(saved.metrics, saved.config)}
    row["train_s"] = tm["train_s"]
    row["predict_ms"] = 1000 * tm["predict_s_per_item"]
    return row


def _dc(run) -> dict:
    return run.data_config


def _model(members, weights):
    from .models import RunEnsemble

    specs = []
    for m in members:
        model = m.model
        spec = dict(getattr(model, "spec", {}) or {})
        specs.append(_complete(spec, m))
    return RunEnsemble([m.model for m in members], weights, {"kind": "run_ensemble", "members": specs, "weights": list(weights)})


def _complete(spec: dict, run) -> dict:
    """A member's spec as the loader completes it (its backbone and classes), so the ensemble rebuilds alone."""
    from .model_io import _completed

    return _completed(spec, run.config, len(run.classes))
