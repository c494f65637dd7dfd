"""Bad text input (issue 8's CSV/text list): blank labels, empty texts, a 1 MB text, non-UTF-8
bytes, numeric labels, duplicates. Each has a defined outcome: loaded, skipped and listed with
its reason (checks.json, report.md), or refused before anything is written, in one line."""
import json

import pytest

import transferkit as tk
from transferkit.data.splits import make_splits

from test_bad_data import assert_one_line_error, run_cli
from textdata import make_texts, write_csv


def _rows(per_class=12):
    return [list(r) for r in make_texts(per_class=per_class)]


def test_blank_labels_and_empty_texts_are_skipped_and_listed(tmp_path):
    rows = _rows()
    bad = [["", "sport"], ["   \t ", "money"], ["a text with no label", ""], ["another one", "   "]]
    path = write_csv(tmp_path / "texts.csv", rows[:10] + bad + rows[10:])
    ds = tk.load_dataset(path)
    assert len(ds) == len(rows)
    reasons = {s.item: s.reason for s in ds.skipped}
    assert reasons == {"texts.csv:12": "empty text", "texts.csv:13": "empty text", "texts.csv:14": "blank label", "texts.csv:15": "blank label"}
    checks = tk.check_dataset(ds, make_splits(ds, 0.2, 0.2, seed=0)).as_dict()  # what checks.json and the report list
    assert {(s["item"], s["reason"]) for s in checks["skipped"]} == set(reasons.items())
    assert any("4 file(s) or row(s) skipped" in w for w in checks["warnings"])


def test_only_blank_rows_is_refused_before_anything_is_written(tmp_path, capsys):
    path = write_csv(tmp_path / "blank.csv", [["", "a"], ["text", ""], ["  ", " "]])
    rc, err = run_cli(capsys, "train", path, "--strategy", "tfidf", "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "no labelled texts found", "3 skipped", "blank.csv:2: empty text")
    assert not (tmp_path / "run").exists()


def test_a_1mb_text_loads_whole_splits_and_featurises(tmp_path):
    rows = _rows()
    big = ("goal match team " * 70_000)[: 1 << 20]
    rows.append([big, "sport"])
    path = write_csv(tmp_path / "big.csv", rows)
    ds = tk.load_dataset(path)
    assert max(len(t) for t in ds.texts) == len(big.strip())
    splits = make_splits(ds, 0.2, 0.2, seed=0)
    assert sorted([*splits.train, *splits.val, *splits.test]) == list(range(len(ds)))
    from transferkit.tfidf import TfidfModel

    tr, va = list(splits.train), list(splits.val)
    model = TfidfModel(len(ds.classes), C=1.0).fit([ds.texts[i] for i in tr], ds.labels[tr], [ds.texts[i] for i in va], ds.labels[va])
    assert model.transform(ds.texts).shape[0] == len(rows)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_non_utf8_table_is_refused_naming_the_file_and_the_line(tmp_path, capsys, suffix):
    sep = "\t" if suffix == ".tsv" else ","
    lines = [f"text{sep}label"] + [f"{t}{sep}{lab}" for t, lab in make_texts(per_class=4)]
    if suffix == ".jsonl":
        lines = [json.dumps({"text": t, "label": lab}) for t, lab in make_texts(per_class=4)]
    data = "\n".join(lines).encode() + b"\n"
    # a spreadsheet's Windows-1252 export: one 'café' on line 4
    cut = [m.start() for m in __import__("re").finditer(b"\n", data)][2] + 1
    data = data[:cut] + "café".encode("cp1252") + data[cut:]
    path = tmp_path / f"latin{suffix}"
    path.write_bytes(data)
    rc, err = run_cli(capsys, "train", path, "--strategy", "tfidf", "--out", tmp_path / "run")
    assert_one_line_error(rc, err, str(path), "line 4 is not UTF-8", "byte 0xe9", "as UTF-8")
    assert not (tmp_path / "run").exists()


def test_non_utf8_txt_file_in_a_text_folder_is_skipped_with_its_reason(tmp_path):
    for i, (text, label) in enumerate(make_texts(per_class=5)):
        (tmp_path / "docs" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / label / f"{i}.txt").write_text(text)
    (tmp_path / "docs" / "sport" / "latin.txt").write_bytes("goal café".encode("cp1252"))
    (tmp_path / "docs" / "money" / "empty.txt").write_bytes(b"")
    ds = tk.load_dataset(tmp_path / "docs")
    assert len(ds) == 15
    assert {(s.item, s.reason) for s in ds.skipped} == {("sport/latin.txt", "not UTF-8 text"), ("money/empty.txt", "empty text")}


def test_nul_bytes_in_a_csv_are_one_line(tmp_path, capsys):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"text,label\nfine text,a\nbad\x00text,b\n")
    rc, err = run_cli(capsys, "train", path, "--strategy", "tfidf", "--out", tmp_path / "run")
    assert_one_line_error(rc, err, str(path), "line 3 contains a NUL byte")
    assert not (tmp_path / "run").exists()


def test_numeric_labels_order_numerically_and_look_alikes_are_noted(tmp_path):
    rows = [[t, {"sport": "2", "money": "10", "weather": "1"}[lab]] for t, lab in make_texts(per_class=6)]
    ds = tk.load_dataset(write_csv(tmp_path / "num.csv", rows))
    assert ds.classes == ["1", "2", "10"]
    # JSON numbers and strings: 1, 1.0 and "1" are the one class "1"; "01" is its own class and is noted
    recs = [{"text": f"text number {i}", "label": lab} for i, lab in enumerate([1, 1.0, "1", 2, "2", "01", 2, 1])]
    (tmp_path / "num.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    ds = tk.load_dataset(tmp_path / "num.jsonl")
    assert ds.classes == ["1", "01", "2"] or ds.classes == ["01", "1", "2"]
    assert [ds.classes[i] for i in ds.labels] == ["1", "1", "1", "2", "2", "01", "2", "1"]
    assert any("'1'" in n and "'01'" in n for n in ds.notes), ds.notes


def test_duplicate_texts_stay_in_one_split_and_contradictions_are_checked(tmp_path):
    rows = _rows(per_class=20)
    dup = rows[0][0]
    rows += [[dup, rows[0][1]], [dup, rows[0][1]], [dup, "weather" if rows[0][1] != "weather" else "money"]]
    ds = tk.load_dataset(write_csv(tmp_path / "dup.csv", rows))
    splits = make_splits(ds, 0.2, 0.2, seed=0)
    where = {name for name in ("train", "val", "test") for i in getattr(splits, name) if ds.texts[i] == dup}
    assert len(where) == 1, where
    checks = tk.check_dataset(ds, splits)
    assert checks.contradictions, checks.as_dict()
