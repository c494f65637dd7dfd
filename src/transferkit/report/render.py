"""Write report.html (+ report.md, plots/*.png) for a run folder or a comparison folder."""
from __future__ import annotations

import base64
import os
import time
from pathlib import Path

from .. import io as tkio
from ..errors import TransferkitError
from . import plots
from .facts import is_compare_dir, is_run_dir, load_leaderboard, load_run_facts

PLOTS_DIR = "plots"


def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _save_figures(folder: Path, figs: dict) -> dict[str, str]:
    """PNG files under folder/plots/ and the same images as data URIs (the page stands alone).
    PNGs of an earlier render that this one did not draw are removed."""
    out = folder / PLOTS_DIR
    out.mkdir(exist_ok=True)
    uris = {}
    for name, fig in figs.items():
        data = plots.png(fig)
        tkio.write_bytes(out / f"{name}.png", data)
        uris[name] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    for old in out.glob("*.png"):
        if old.stem not in figs:
            old.unlink(missing_ok=True)
    return uris


def _version() -> str:
    from .. import __version__

    return __version__


def write_run_report(run_dir: str | os.PathLike, dataset=None, back_href: str | None = None, embeddings: bool = True) -> Path:
    """Render RUN_DIR/report.html, report.md and plots/*.png from the run folder's files.

    `dataset` (the run's ImageDataset, when the caller has it) saves loading it again for the
    sample and misclassified images; `back_href` links the page to its comparison."""
    from .items import reload_dataset
    from .markdown import write_markdown_report
    from .run_page import build_run_page

    t0 = time.perf_counter()
    d = Path(run_dir)
    if back_href is None and is_compare_dir(d.resolve().parent):  # a run inside a comparison folder
        back_href = "../report.html"
    facts = load_run_facts(d)
    view = reload_dataset(facts, dataset)
    ctx, figs = build_run_page(facts, view, with_embeddings=embeddings)
    images = _save_figures(d, figs)
    write_markdown_report(d, page=ctx, images=[n for n in figs])
    html = _env().get_template("run.html.j2").render(
        **ctx, images=images, toc=RUN_TOC, version=_version(), back_href=back_href, rendered_s=time.perf_counter() - t0, folder_arg=str(d)
    )
    path = d / "report.html"
    tkio.write_text(path, html)
    return path


RUN_TOC = [("dataset", "Dataset"), ("results", "Results"), ("confusion", "Confusion"), ("trust", "Trust"), ("training", "Training"), ("errors", "Mistakes"), ("features", "PCA / t-SNE"), ("performance", "Performance")]
COMPARE_TOC = [("leaderboard", "Leaderboard"), ("charts", "Charts"), ("inferences", "Inferences")]


def write_compare_report(compare_dir: str | os.PathLike, runs: str = "all") -> Path:
    """Render DIR/report.html for a comparison (DIR/leaderboard.json) and its run pages:
    runs="all" re-renders every run's page, "missing" only those without one, "none" none.
    A run whose page fails is noted on the comparison page; the others still render.
    What DIR must hold (leaderboard.json fields, run folders): report/compare_page.py's docstring."""
    from .compare_page import build_compare_page, load_runs

    t0 = time.perf_counter()
    d = Path(compare_dir)
    rows = load_leaderboard(d)
    notes = []
    for r in rows:
        p = r.get("run_path")
        if p is None or r.get("error") or runs == "none" or not is_run_dir(p):
            continue
        if runs == "all" or not (p / "report.html").is_file():
            try:
                write_run_report(p, back_href=Path(os.path.relpath(d / "report.html", p)).as_posix())
            except Exception as exc:  # noqa: BLE001 - one bad run must not sink the comparison
                notes.append(f"the report of {r['label']} could not be rendered ({type(exc).__name__}: {exc})")
    run_facts, load_notes = load_runs(rows)
    ctx, figs = build_compare_page(rows, run_facts)
    images = _save_figures(d, figs)
    html = _env().get_template("compare.html.j2").render(
        **ctx, notes=notes + load_notes, images=images, toc=COMPARE_TOC, version=_version(), title=f"transferkit comparison: {d.resolve().name}", rendered_s=time.perf_counter() - t0, folder_arg=str(d)
    )
    path = d / "report.html"
    tkio.write_text(path, html)
    return path


def write_audit_report(audit_dir: str | os.PathLike, dataset=None) -> Path:
    """AUDIT_DIR/report.html for a folder written by `transferkit audit`: the label suspects and
    the near-duplicates, with the items drawn (thumbnails or snippets)."""
    from .facts import RunFacts
    from .items import reload_dataset
    from .trust_page import build_trust

    t0 = time.perf_counter()
    d = Path(audit_dir)
    info = tkio.read_json(d / "audit.json")
    checks = tkio.read_json(d / "checks.json")
    facts = RunFacts(d, {"data": info["data"], "extra": {}}, {"audit": info["audit"], "data": {"classes": info["classes"]}}, checks, info["classes"])
    view = reload_dataset(facts, dataset)
    figs: dict = {}
    trust = build_trust(facts, view, figs)
    images = _save_figures(d, figs)
    sizes = info.get("split_sizes", {})
    overview = [("data", f"{info['data']} — {info['items']:,} items, {len(info['classes'])} classes"), ("backbone", info["backbone"]),
                ("split", " / ".join(f"{k} {v:,}" for k, v in sizes.items()))]
    html = _env().get_template("audit.html.j2").render(trust=trust, images=images, overview=overview, notes=[], backbone=info["backbone"], toc=[("trust", "Audit")],
                                                       version=_version(), title=f"transferkit audit: {Path(str(info['data'])).name}", rendered_s=time.perf_counter() - t0, folder_arg=str(d))
    path = d / "report.html"
    tkio.write_text(path, html)
    return path


def render_report(folder: str | os.PathLike) -> Path:
    """Re-render the report of a finished run or a comparison folder (no retraining)."""
    d = Path(folder)
    if is_compare_dir(d):
        return write_compare_report(d, runs="all")
    if is_run_dir(d):
        return write_run_report(d)
    if (d / "audit.json").is_file():
        return write_audit_report(d)
    if not d.is_dir():
        raise TransferkitError(f"{d}: no such folder; pass a run folder (from `transferkit train`) or a comparison folder (from `transferkit compare`)")
    from .index_page import write_index

    return write_index(d)  # a folder holding runs: their index (one line error when it holds none)
