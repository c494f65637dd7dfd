"""Property-based: random folder layouts and CSVs through loading and splitting.

Invariants: every readable item is loaded and lands in exactly one split, nothing readable is
lost, everything unreadable is listed with a reason, every class with an item trains on at
least one, byte-identical copies share a split, and the split is deterministic (same data and
seed -> same assignment, after a fresh load too).
"""
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import transferkit as tk

SETTINGS = settings(max_examples=int(os.environ.get("TK_HYPOTHESIS_EXAMPLES", 30)), deadline=None, derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLASS_NAMES = ["cat", "dog", "bird house", "ñandú", "3", "10", "Z"]
KINDS = ["good", "good", "good", "copy", "nested", "corrupt", "empty", "text", "junk"]

items = st.lists(st.sampled_from(KINDS), max_size=7)
layouts = st.dictionaries(st.sampled_from(CLASS_NAMES), items, min_size=0, max_size=5)
fractions = st.tuples(st.sampled_from([0.0, 0.1, 0.15, 0.3]), st.sampled_from([0.0, 0.15, 0.2, 0.4]))


class Writer:
    """Writes files of each kind; remembers which must be loaded and which skipped."""

    def __init__(self):
        self.n = 0
        self.good: list[bytes] = []

    def image_bytes(self) -> bytes:
        self.n += 1
        rng = np.random.default_rng(self.n)
        import io

        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    def write(self, folder: Path, kind: str, i: int) -> tuple[Path, str]:
        """(path, outcome) with outcome 'load', 'skip' or 'ignore'."""
        folder.mkdir(parents=True, exist_ok=True)
        if kind in ("good", "nested"):
            if kind == "nested":
                folder = folder / "sub folder"
                folder.mkdir(exist_ok=True)
            data = self.image_bytes()
            self.good.append(data)
            p = folder / f"img {i}.png"
            p.write_bytes(data)
            return p, "load"
        if kind == "copy":
            data = self.good[-1] if self.good else self.image_bytes()
            self.good.append(data)
            p = folder / f"copy {i}.png"
            p.write_bytes(data)
            return p, "load"
        if kind == "corrupt":
            p = folder / f"bad {i}.png"
            p.write_bytes(self.image_bytes()[:20])
            return p, "skip"
        if kind == "empty":
            p = folder / f"empty {i}.jpg"
            p.write_bytes(b"")
            return p, "skip"
        if kind == "text":
            p = folder / f"note {i}.txt"
            p.write_text("hi")
            return p, "skip"
        p = folder / (".DS_Store" if i % 2 else "Thumbs.db")
        p.write_bytes(b"\0")
        return p, "ignore"


def _check_splits(ds, val_size, test_size, seed):
    sp = tk.make_splits(ds, val_size=val_size, test_size=test_size, seed=seed)
    every = np.concatenate([sp.train, sp.val, sp.test])
    assert sorted(every.tolist()) == list(range(len(ds)))  # each item in exactly one split
    assert tk.make_splits(ds, val_size=val_size, test_size=test_size, seed=seed).as_dict() == sp.as_dict()
    where = sp.assignment(len(ds))
    given = np.asarray(ds.given_split if ds.given_split is not None else ["train"] * len(ds), dtype=object)
    for c in set(ds.labels[given == "train"].tolist()):  # (a given split may hold a class in test/ only)
        assert (where[ds.labels == c] == "train").any(), f"class {ds.classes[c]} has no training item"
    if ds.given_split is None:
        by_key = {}
        for i, k in enumerate(ds.keys):
            by_key.setdefault(k, set()).add(where[i])
        assert all(len(s) == 1 for s in by_key.values())  # byte-identical copies share a split
    else:
        for i, g in enumerate(ds.given_split):
            if g != "train":
                assert where[i] == g  # a given val/test item stays where it was put
    return {ds.paths[i]: where[i] for i in range(len(ds))}


@SETTINGS
@given(layout=layouts, split_layout=st.booleans(), fr=fractions, seed=st.integers(0, 3))
def test_random_folder_layouts(layout, split_layout, fr, seed):
    val_size, test_size = fr
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        w, outcome = Writer(), {}
        for c, kinds in layout.items():
            for i, kind in enumerate(kinds):
                part = ("train" if i % 3 else "test") if split_layout else None
                folder = root / part / c if part else root / c
                p, o = w.write(folder, kind, i)
                outcome[str(p)] = o
        if split_layout and not (root / "test").exists():
            (root / "test").mkdir()
        loadable = {p for p, o in outcome.items() if o == "load"}
        try:
            ds = tk.load_dataset(root)
        except tk.TransferkitError as exc:
            msg = str(exc)
            # the only refusals: nothing to learn from, or classes that train/ lacks
            assert not loadable or "no class sub-folders" in msg or "not in train/" in msg or "no train/ folder" in msg, msg
            if "no class sub-folders" in msg:  # only when no class folder (train/'s, in a split layout) holds a loadable image
                trainable = {p for p in loadable if not split_layout or Path(p).relative_to(root).parts[0] == "train"}
                assert not trainable, (msg, sorted(trainable))
            if "not in train/" in msg:
                assert any(not (root / "train" / c).is_dir() for c in layout if (root / "test" / c).is_dir())
            return
        if ds.kind == "text":  # only .txt files (and OS metadata), no image at all: a folder of texts
            assert not any(o != "ignore" and not p.endswith(".txt") for p, o in outcome.items())
            assert {str(root / i) for i in ds.ids} == {p for p in outcome if p.endswith(".txt")}
            assert {str(root / s.item) for s in ds.ignored} == {p for p, o in outcome.items() if o == "ignore"}
            return
        assert set(ds.paths) == loadable  # nothing readable lost, nothing unreadable loaded
        assert {s.item for s in ds.skipped} == {p for p, o in outcome.items() if o == "skip"}
        assert {s.item for s in ds.ignored} == {p for p, o in outcome.items() if o == "ignore"}
        first = _check_splits(ds, val_size, test_size, seed)
        assert _check_splits(tk.load_dataset(root), val_size, test_size, seed) == first  # fresh load: same split


@SETTINGS
@given(
    rows=st.lists(st.tuples(st.sampled_from(["file", "file", "copy", "missing", "blank_label", "repeat", "corrupt"]), st.sampled_from(CLASS_NAMES)), max_size=25),
    fr=fractions,
    seed=st.integers(0, 3),
)
def test_random_csvs(rows, fr, seed):
    val_size, test_size = fr
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        w = Writer()
        lines, expect_loaded, written = ["path,label"], set(), []
        for i, (kind, label) in enumerate(rows):
            if kind in ("file", "copy", "corrupt"):
                p, _ = w.write(base / "imgs", {"file": "good", "copy": "copy", "corrupt": "corrupt"}[kind], i)
                written.append((p, label))
                lines.append(f"imgs/{p.name},{label}")
                if kind != "corrupt":
                    expect_loaded.add((str(p), label))
            elif kind == "missing":
                lines.append(f"imgs/nowhere {i}.png,{label}")
            elif kind == "blank_label":
                lines.append(f"imgs/img {i}.png,")
            elif kind == "repeat" and written:
                p, lab = written[-1]
                lines.append(f"imgs/{p.name},{lab}")  # the same row again: loaded once
        (base / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            ds = tk.load_dataset(base / "data.csv")
        except tk.TransferkitError as exc:
            assert not expect_loaded and ("no rows" in str(exc) or "no readable images" in str(exc)), str(exc)
            return
        loaded = {(p, ds.classes[c]) for p, c in zip(ds.paths, ds.labels)}
        assert loaded == expect_loaded and len(ds) == len(expect_loaded)  # each readable row once
        assert len(ds.skipped) == len(lines) - 1 - len(ds)  # every other row is listed with a reason
        first = _check_splits(ds, val_size, test_size, seed)
        assert _check_splits(tk.load_dataset(base / "data.csv"), val_size, test_size, seed) == first
