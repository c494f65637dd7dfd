"""OUT/report.html of a `transferkit tune` search: what was searched, every trial, the
optimisation history and the parameter importances (Optuna's own plotting functions), and the
best configuration as a command line to rerun."""
from __future__ import annotations

import time
from pathlib import Path

from .. import io as tkio


def write_tune_report(d: Path, study) -> Path:
    from .plots import _plt
    from .render import _env, _save_figures, _version

    t0 = time.perf_counter()
    info = tkio.read_json(d / "tune.json")
    plt = _plt()
    figs = {}
    import warnings

    import optuna.visualization.matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        ax = ovm.plot_optimization_history(study)
        ax.set_ylabel("validation log-loss")
        figs["history"] = ax.figure
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if len(complete) >= 2 and len(info["space"]) >= 2:
            try:
                figs["importances"] = ovm.plot_param_importances(study).figure
            except (RuntimeError, ValueError):  # too few distinct trials to fit importances
                pass
    for f in figs.values():
        f.set_size_inches(7, 3.6)
        f.tight_layout()
    images = _save_figures(d, figs)
    for f in figs.values():
        plt.close(f)
    html = _env().get_template("tune.html.j2").render(info=info, images=images, version=_version(), toc=[("search", "Search"), ("trials", "Trials")],
                                                       title=f"transferkit tune: {info['strategy']} on {Path(info['data']).name}", rendered_s=time.perf_counter() - t0, folder_arg=str(d))
    path = d / "report.html"
    tkio.write_text(path, html)
    return path
