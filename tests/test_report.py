"""The HTML reports: every section present, plots and tables showing metrics.json's numbers,
pages that open in headless Chromium with every image loaded, on a laptop and a phone."""
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit as tk
from transferkit.report.facts import load_leaderboard, load_run_facts
from transferkit.report.inferences import mcnemar, write_inferences
from transferkit.report.items import DataView, reload_dataset, run_features
from transferkit.report.run_page import build_run_page, misclassified

from browser import Browser, find_chromium
from conftest import TINY, write_class_folder

# red and crimson are nearly the same colour: the runs make real mistakes to show
CLASSES = {"red": (200, 40, 40), "crimson": (185, 45, 50), "green": (40, 180, 60), "blue": (40, 60, 200)}
RUN_SECTIONS = ["dataset", "checks", "results", "confusion", "training", "errors", "features", "performance"]
COMPARE_SECTIONS = ["leaderboard", "charts", "inferences"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A comparison folder built from two tiny `train` runs (linear and MLP probe heads) plus a
    failed row, with leaderboard.json in the format `compare` writes."""
    root = tmp_path_factory.mktemp("study")
    data = write_class_folder(root / "photos", per_class=30, classes=CLASSES)
    for f in sorted((data / "blue").iterdir())[:12]:  # blue: the small class
        f.unlink()
    shutil.copy(data / "green" / "green_000.png", data / "blue" / "copy_of_green.png")  # contradictory labels
    (data / "red" / "broken.png").write_bytes(b"not a png")  # skipped file
    cmp = root / "cmp"
    rows = []
    for head in ("linear", "mlp"):
        size = {"hidden": 64} if head == "mlp" else {}  # --hidden acts on the mlp head only (and is refused for the linear one)
        run = tk.train(str(data), out=str(cmp / f"probe-{head}"), image_size=64, head=head, val_size=0.2, test_size=0.3, **size, **TINY)
        m = run.metrics
        rows.append({
            "strategy": "probe", "backbone": TINY["backbone"], "name": f"probe-{head}", "test_accuracy": m["test"]["accuracy"], "macro_f1": m["test"]["macro_f1"],
            "weighted_f1": m["test"]["weighted_f1"], "val_accuracy": m["val"]["accuracy"], "train_accuracy": m["train"]["accuracy"],
            "params_total": m["model"]["params_total"], "params_trainable": m["model"]["params_trainable"], "train_s": m["timing"]["train_s"],
            "predict_ms": m["timing"]["predict_s_per_item"] * 1000, "peak_mem_mb": m["memory"]["peak_rss_mb"], "run_dir": f"probe-{head}", "error": None,
        })  # fmt: skip
    rows.append({"strategy": "finetune", "backbone": TINY["backbone"], "run_dir": None, "error": "CUDA out of memory (simulated)"})
    (cmp / "leaderboard.json").write_text(json.dumps(rows))
    tk.write_compare_report(cmp)
    return cmp


def _metric(m: dict, key: str):
    v = m
    for part in key.split("."):
        v = v[part]
    return v


def test_run_page_sections_and_files(study):
    d = study / "probe-mlp"
    page = (d / "report.html").read_text()
    for sec in RUN_SECTIONS:
        assert f'id="{sec}"' in page, sec
    pngs = sorted(p.stem for p in (d / "plots").glob("*.png"))
    audit = json.loads((d / "metrics.json").read_text()).get("audit") or {}
    trust = ["reliability", "coverage"] + (["label_suspects"] if audit.get("issues") else [])  # the Trust section's figures
    assert pngs == sorted(["class_counts", "samples", "confusion_counts", "confusion_normalized", "learning_curves", "misclassified", "pca", "tsne", *trust])
    # every plot inline as well, identical to its file: the page stands alone
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(pngs)
    import base64

    assert sorted(base64.b64decode(u) for u in uris) == sorted((d / "plots" / f"{n}.png").read_bytes() for n in pngs)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no CDN, nothing fetched
    md = (d / "report.md").read_text()
    assert "Most confused class pairs" in md and "![Learning curves](plots/learning_curves.png)" in md
    # the linear probe has no epochs: its page shows how C was chosen instead
    lin = study / "probe-linear"
    assert (lin / "plots" / "c_selection.png").is_file() and not (lin / "plots" / "learning_curves.png").exists()


def test_tables_show_the_numbers_in_metrics_json(study):
    for name in ("probe-linear", "probe-mlp"):
        d = study / name
        m = json.loads((d / "metrics.json").read_text())
        cells = dict(re.findall(r'data-metric="([^"]+)">([^<]*)<', (d / "report.html").read_text()))
        cells = {k: html.unescape(v) for k, v in cells.items()}
        for split in ("train", "val", "test"):
            assert cells[f"{split}.accuracy"] == f"{m[split]['accuracy']:.4f}"
        for c, pc in m["test"]["per_class"].items():
            for k in ("precision", "recall", "f1"):
                assert cells[f"test.per_class.{c}.{k}"] == f"{pc[k]:.3f}"
            assert cells[f"test.per_class.{c}.support"] == str(pc["support"])
        assert cells["test.macro_f1"] == f"{m['test']['macro_f1']:.4f}" and cells["test.weighted_f1"] == f"{m['test']['weighted_f1']:.4f}"
        assert cells["model.params_total"] == f"{m['model']['params_total']:,}"
        assert cells["model.params_trainable"] == f"{m['model']['params_trainable']:,}"
        assert cells["timing.predict_s_per_item"] == f"{m['timing']['predict_s_per_item'] * 1000:,.2f} ms"
        assert cells["timing.predict_items_per_s"] == f"{m['timing']['predict_items_per_s']:,.1f} items/s"
        assert cells["memory.peak_rss_mb"] == f"{m['memory']['peak_rss_mb']:,.0f} MB"
        # training and prediction peaks are measured separately, and never above the whole run's
        mem = m["memory"]
        assert cells["memory.train_peak_mb"] == f"{mem['train_peak_mb']:,.0f} MB" and cells["memory.predict_peak_mb"] == f"{mem['predict_peak_mb']:,.0f} MB"
        assert 0 < mem["train_start_mb"] <= mem["train_peak_mb"] <= mem["peak_rss_mb"] + 1 and 0 < mem["predict_peak_mb"] <= mem["peak_rss_mb"] + 1


def test_plots_show_the_numbers_in_metrics_json(study):
    d = study / "probe-mlp"
    facts = load_run_facts(d)
    m = facts.metrics
    ctx, figs = build_run_page(facts, reload_dataset(facts))
    try:
        cm = np.array(m["test"]["confusion_matrix"])
        ax = figs["confusion_counts"].axes[0]
        assert np.array_equal(np.asarray(ax.images[0].get_array()), cm)
        assert [t.get_text() for t in ax.texts] == [str(v) for v in cm.flatten()]
        norm = np.asarray(figs["confusion_normalized"].axes[0].images[0].get_array())
        assert np.allclose(norm, cm / cm.sum(1, keepdims=True) * 100)
        # bars: one per class and split, stacked, lengths = metrics.json's per-split class counts
        bars = figs["class_counts"].axes[0]
        for split, counts in m["data"]["class_counts"].items():
            widths = [p.get_width() for p in bars.patches if p.get_gid() == f"counts-{split}"]
            assert widths == counts, split
        # learning curves are history.csv, line for line
        hist = [r for r in facts.history]
        lines = {ln.get_gid(): ln for a in figs["learning_curves"].axes for ln in a.lines if ln.get_gid()}
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert np.allclose(lines[key].get_ydata(), [h[key] for h in hist]), key
        # the misclassified grid: the wrong test predictions, worst (highest -log p_true) first
        wrong = [r for r in facts.predictions if r["true"] != r["predicted"]]
        assert wrong, "the fixture should make mistakes (red vs crimson)"
        assert ctx["errors"]["n_wrong"] == len(wrong) == m["test"]["n"] - int(np.trace(cm))
        shown = ctx["errors"]["rows"]
        assert [r["loss"] for r in shown] == sorted((r["loss"] for r in shown), reverse=True)
        assert shown[0]["loss"] == pytest.approx(-np.log(min(float(r["p_true"]) for r in wrong)))
        titles = [a.get_title() for a in figs["misclassified"].axes if a.images]
        assert len(titles) == len(shown) and titles[0].startswith(f"true: {shown[0]['true']}")
        # most confused pair = the largest off-diagonal cell
        off = cm - np.diag(np.diag(cm))
        i, j = np.unravel_index(off.argmax(), off.shape)
        top = ctx["results"]["pairs"][0]
        assert (top["true"], top["predicted"], top["count"]) == (facts.classes[i], facts.classes[j], off[i, j])
        # PCA/t-SNE: every item of the split, from the feature cache, one colour per class
        assert ctx["features"]["n"] == m["data"]["items"]
        pts = sum(len(c.get_offsets()) for c in figs["pca"].axes[0].collections)
        assert pts == m["data"]["items"]
        # checks: the contradiction and the skipped file are listed
        assert ctx["dataset"]["checks"]["contradictions_n"] == 1 and ctx["dataset"]["checks"]["skipped_n"] == 1
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def test_compare_page_links_runs_and_infers_from_numbers(study):
    page = (study / "report.html").read_text()
    for sec in COMPARE_SECTIONS:
        assert f'id="{sec}"' in page
    rows = load_leaderboard(study)
    for r in rows[:2]:
        assert f'href="{r["run_dir"]}/report.html"' in page
        assert (study / r["run_dir"] / "report.html").is_file()
        assert 'href="../report.html"' in (study / r["run_dir"] / "report.html").read_text()  # back to the comparison
    assert "CUDA out of memory (simulated)" in page
    assert sorted(p.stem for p in (study / "plots").glob("*.png")) == ["accuracy_vs_params", "accuracy_vs_time", "f1_vs_support", "per_class_f1"]
    best = max(rows[:2], key=lambda r: r["test_accuracy"])
    assert f"{best['test_accuracy'] * 100:.1f}%" in page


def test_inferences_are_written_from_the_numbers():
    from transferkit.report.facts import RunFacts

    classes = ["a", "b", "c", "d"]

    def facts(f1, train_counts, preds):
        m = {"data": {"class_counts": {"train": train_counts}}, "test": {"n": len(preds), "per_class": {c: {"f1": v} for c, v in zip(classes, f1)}, "confusion_matrix": np.diag([5, 5, 5, 5]).tolist()}}
        return RunFacts(Path("."), {}, m, {}, classes, predictions=preds)

    truth = ["a"] * 50
    preds = lambda right: [{"path": f"x{i}", "true": "a", "predicted": "a" if i < right else "b"} for i in range(50)]  # noqa: E731
    rows = [
        {"label": "finetune", "strategy": "finetune", "test_accuracy": 0.96, "macro_f1": 0.95, "train_s": 600.0, "predict_ms": 9.0},
        {"label": "probe", "strategy": "probe", "test_accuracy": 0.80, "macro_f1": 0.78, "train_s": 5.0, "predict_ms": 8.0},
        {"label": "scratch", "strategy": "scratch", "test_accuracy": 0.60, "macro_f1": 0.55, "train_s": 300.0, "predict_ms": 2.0},
        {"label": "slow", "strategy": "head", "test_accuracy": 0.70, "macro_f1": 0.70, "train_s": 900.0},
        {"label": "broken", "strategy": "partial", "error": "loss diverged"},
    ]
    runs = {
        "finetune": facts([0.99, 0.97, 0.95, 0.60], [400, 300, 200, 20], preds(48)),
        "probe": facts([0.9, 0.8, 0.8, 0.5], [400, 300, 200, 20], preds(40)),
        "scratch": facts([0.8, 0.6, 0.5, 0.1], [400, 300, 200, 20], preds(30)),
    }
    assert len(truth) == 50
    text = "\n".join(write_inferences(rows, runs))
    assert "finetune wins with 96.0% test accuracy" in text and "+16.0 pp ahead of probe" in text
    t = mcnemar(runs["finetune"].predictions, runs["probe"].predictions)
    assert (t["only_a"], t["only_b"]) == (8, 0) and t["p"] == pytest.approx(2 * 0.5**8)
    assert "(exact McNemar p = 0.0078)" in text and "unlikely to be chance" in text
    assert "+36.0 pp above the best baseline, scratch" in text and "10.0× fewer mistakes" in text
    assert "d (0.10 → 0.60)" in text.split("gain most")[1]  # biggest F1 gain first
    assert "Smaller classes score lower" in text and "20 (d)" in text
    assert "finetune buys +16.0 pp over probe for 120.0× the training time" in text
    assert "scratch (60.0% in 5.0 min) is beaten by probe" in text and "slow (70.0%" in text
    assert "broken: loss diverged" in text


def test_leaderboard_reader_is_tolerant(tmp_path):
    rows = [{"strategy": "probe", "backbone": "b", "test_accuracy": "0.5", "run_dir": "r1"}, {"strategy": "probe", "backbone": "b", "run_dir": "r2", "extra_field": 1}]
    for raw in (rows, {"rows": rows}):
        (tmp_path / "leaderboard.json").write_text(json.dumps(raw))
        got = load_leaderboard(tmp_path)
        assert [r["test_accuracy"] for r in got] == [0.5, None] and got[1]["extra_field"] == 1
        assert [r["label"] for r in got] == ["probe · b (r1)", "probe · b (r2)"]  # same strategy+backbone twice
        assert got[0]["run_href"] == "r1/report.html" and got[0]["macro_f1"] is None
    tk.write_compare_report(tmp_path)  # run folders missing: the page still renders
    assert "leaderboard-table" in (tmp_path / "report.html").read_text()


def test_report_cli_rerenders_and_explains_bad_folders(study, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(study / "probe-linear", d)
    (d / "report.html").unlink()
    shutil.rmtree(d / "plots")
    r = subprocess.run([sys.executable, "-m", "transferkit", "report", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (d / "report.html").is_file() and (d / "plots" / "confusion_counts.png").is_file()
    r = subprocess.run([sys.executable, "-m", "transferkit", "report", str(tmp_path)], capture_output=True, text=True)  # a folder holding a run: its index
    assert r.returncode == 0 and (tmp_path / "index.html").is_file() and "run/report.html" in (tmp_path / "index.html").read_text(), r.stderr
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "transferkit", "report", str(tmp_path / "empty")], capture_output=True, text=True)
    assert r.returncode == 2 and "no run folders" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_runs_without_cached_features_embed_the_test_set_with_their_model(study, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(study / "probe-mlp", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["extra"]["feature_cache"] = str(tmp_path / "gone")
    (d / "config.json").write_text(json.dumps(cfg))
    facts = load_run_facts(d)
    feats, why = run_features(facts, reload_dataset(facts))
    assert feats is not None, why
    assert feats.X.shape == (facts.metrics["test"]["n"], 64)  # the MLP head's hidden layer
    assert "penultimate" in feats.what and (d / "report_features.npz").is_file()
    again, _ = run_features(facts, reload_dataset(facts))  # saved: no model run the second time
    assert np.array_equal(again.X, feats.X)


def test_data_gone_the_page_still_renders_and_says_why(study, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(study / "probe-linear", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["data"] = cfg["extra"]["data_path"] = str(tmp_path / "moved-away")
    (d / "config.json").write_text(json.dumps(cfg))
    tk.render_report(d)
    page = (d / "report.html").read_text()
    assert "moved-away" in page and "Sample items are not shown" in page
    assert (d / "plots" / "confusion_counts.png").is_file() and not (d / "plots" / "samples.png").exists()


def test_text_items_are_shown_as_snippets(study):
    class Texts:
        kind = "text"
        texts = ["a cheap and cheerful film", "the plot never lands"]

    facts = load_run_facts(study / "probe-linear")
    view = DataView(Texts(), {"x.txt": 0, "y.txt": 1})
    assert view.is_text and view.preview(1) == "the plot never lands"
    preds = [{"path": "x.txt", "true": "pos", "predicted": "neg", "confidence": "0.9", "p_true": "0.1"}, {"path": "y.txt", "true": "neg", "predicted": "neg", "confidence": "0.8", "p_true": "0.8"}]
    facts.predictions = preds
    from transferkit.report.run_page import _misclassified

    figs = {}
    out = _misclassified(facts, view, figs)
    assert out["texts"][0]["text"] == "a cheap and cheerful film" and not figs
    assert misclassified(preds)[0]["loss"] == pytest.approx(-np.log(0.1))


def test_a_failing_report_never_loses_the_trained_run(tmp_path, monkeypatch, capsys):
    import transferkit.pipeline as pipeline

    def boom(*a, **k):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(pipeline, "write_run_report", boom)
    data = write_class_folder(tmp_path / "photos", per_class=10)
    run = tk.train(str(data), out=str(tmp_path / "run"), image_size=64, **TINY)
    assert run.metrics["test"]["n"] > 0 and (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "report.md").is_file() and not (tmp_path / "run" / "report.html").exists()
    assert "renderer exploded" in capsys.readouterr().err


# ------------------------------------------------------------------------ in a real browser
@pytest.fixture(scope="module")
def browser_paths():
    chrome, driver, why = find_chromium()
    if why:
        pytest.skip(why)
    return chrome, driver


def _check_page(b: Browser, page: Path, sections: list[str]) -> dict:
    b.open(page)
    b.js("return 1")
    imgs = b.js("return Array.from(document.images).map(i => ({src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}))")
    assert imgs and all(i["ok"] for i in imgs), imgs
    missing = b.js("return arguments[0].filter(id => !document.getElementById(id))", sections)
    assert missing == [], missing
    return {"images": len(imgs), "overflow": b.js("return document.documentElement.scrollWidth - window.innerWidth")}


def _keep(shot: Path) -> None:
    """Copy a screenshot to $TRANSFERKIT_SCREENSHOTS (to look at) when set."""
    out = os.environ.get("TRANSFERKIT_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / shot.name)


def test_reports_open_in_headless_chromium(study, text_runs, browser_paths, tmp_path):
    text = Path(text_runs["head"]) / "report.html"  # class counts, 2 confusion matrices, curves, PCA, t-SNE; no image grids
    def plots(page):  # every figure in the run's plots/ is on its page (8 + the Trust section's for the image runs, 6 + for texts)
        return len(list((page.parent / "plots").glob("*.png")))

    runs = [study / "probe-mlp" / "report.html", study / "probe-linear" / "report.html"]
    assert [plots(p) for p in runs] >= [10, 10] and plots(text) >= 8
    pages = [*((p, RUN_SECTIONS, plots(p)) for p in runs), (study / "report.html", COMPARE_SECTIONS, 4), (text, RUN_SECTIONS, plots(text))]
    for mobile, (w, h) in ((False, (1280, 900)), (True, (390, 844))):
        b = Browser(*browser_paths, width=w, height=h, mobile=mobile)
        try:
            for page, sections, n_images in pages:
                got = _check_page(b, page, sections)
                assert got["images"] == n_images
                if mobile:  # readable on a phone: nothing wider than the screen (wide tables scroll inside their box)
                    assert got["overflow"] <= 1, f"{page}: {got['overflow']} px wider than a 390 px phone"
                name = f"{'compare' if page.parent == study else 'text-' + page.parent.name if page == text else page.parent.name}-{'phone' if mobile else 'laptop'}.png"
                shot = b.screenshot(tmp_path / name, full_page=not mobile)
                assert Image.open(shot).size[0] >= (390 if mobile else 1280)
                _keep(shot)
        finally:
            b.close()


def test_stratified_sample_keeps_each_class_share():
    from transferkit.report.items import stratified_sample

    y = np.repeat([0, 1, 2], [7000, 2990, 10])
    idx = stratified_sample(y, 1000)
    assert len(idx) == 1000 and len(set(idx)) == 1000
    assert np.bincount(y[idx]).tolist() == [700, 299, 1]
    assert np.array_equal(stratified_sample(y[:50], 1000), np.arange(50))


def test_peak_memory_of_a_phase_is_measured():
    from transferkit.memory import PeakMemory, process_peak_mb

    with PeakMemory() as before:
        pass
    with PeakMemory() as big:
        a = np.ones(160 * 2**20 // 8)  # 160 MB, touched
        del a
    with PeakMemory() as after:  # the peak of the big phase does not leak into the next one
        pass
    assert big.method in ("VmHWM", "sampled")
    assert big.peak_mb - big.start_mb >= 150, (big.start_mb, big.peak_mb)
    assert after.peak_mb < big.peak_mb - 100 and abs(before.peak_mb - before.start_mb) < 50
    assert process_peak_mb() >= big.peak_mb - 1  # resets never lower the whole run's peak


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory):
    """Real text runs on a tiny 3-topic CSV with short, ambiguous texts (so some are wrong):
    the tf-idf baseline, and an MLP head on a tiny random-weight BERT."""
    from textdata import make_texts, make_tiny_bert, write_csv

    root = tmp_path_factory.mktemp("texts")
    data = write_csv(root / "topics.csv", make_texts(40, length=(1, 4)))
    bert = make_tiny_bert(root / "bert")
    runs = {"tfidf": tk.train(str(data), strategy="tfidf", out=str(root / "tfidf")).dir}
    runs["head"] = tk.train(str(data), strategy="head", backbone=str(bert), hidden=32, epochs=8, out=str(root / "head"), cache_dir=str(root / "cache")).dir
    return runs


@pytest.mark.parametrize("name", ["tfidf", "head"])
def test_text_runs_render_without_images_and_show_mistakes_as_snippets(text_runs, name):
    d = Path(text_runs[name])
    m = json.loads((d / "metrics.json").read_text())
    assert m["data"]["kind"] == "text"
    page = (d / "report.html").read_text()
    for sec in RUN_SECTIONS:
        assert f'id="{sec}"' in page, sec
    pngs = {p.stem for p in (d / "plots").glob("*.png")}
    assert not pngs & {"samples", "misclassified"}  # no image grids for texts
    assert {"class_counts", "confusion_counts", "confusion_normalized", "pca", "tsne"} <= pngs
    assert ("learning_curves" in pngs) == (name == "head")
    texts = {r["path"]: r["text"] for r in load_run_facts(d).predictions}
    wrong = misclassified(load_run_facts(d).predictions)
    assert wrong, "the ambiguous texts should give some mistakes to show"
    worst = html.unescape(page)
    assert texts[wrong[0]["path"]] in worst  # the worst mistake's text is on the page, as text
    md = (d / "report.md").read_text()
    assert "Misclassified test texts" in md and texts[wrong[0]["path"]].replace("|", "\\|") in md
    cells = {k: html.unescape(v) for k, v in re.findall(r'data-metric="([^"]+)">([^<]*)<', page)}
    assert cells["test.accuracy"] == f"{m['test']['accuracy']:.4f}"
    assert "decode" not in page.split('data-metric="timing.predict_s_per_item"')[1][:400]  # texts are tokenized, not decoded
