"""Multi-label data: label cells -> label sets -> a 0/1 matrix; a stable stratified split; checks.

A leaf (numpy, scipy; of ours only `errors`). Y is always (N items, L labels), 0/1.

The split keeps the single-label split's promises (data/splits.py): each item draws u in [0, 1)
from a hash of (seed, its content key), the very u of splits.py, and the base assignment is the
hash split (test if u < test_size, val if u < test_size + val_size, else train). So it is the
same on any machine and in any row order, and byte-identical items (one key) share a split. A
hash split is stratified only on average (a label's test count is off by ~sqrt(0.13 n) items),
so the base is then CORRECTED where needed, towards the goal of iterative stratification
(Sechidis, Tsoumakas & Vlahavas 2011): each label has an offset that moves the split boundary
for its items (an item's boundary moves by the mean offset of its labels, plus one offset shared
by all items for the split sizes); in turn, each offset takes the value nearest 0 that brings its
label's count in that split within TOLERANCE items of the target, until no item changes side. A
label most items have is balanced through the items that lack it (the scarce side). Offsets stay
near 0, so only items near a boundary move, and growing the data moves few old items. Then the
rare labels: every label with an item trains on one; with 2+ distinct items one tests; with 3+
one validates (moved from a split that can spare it; the rest is refitted around those moves).
The paper's own greedy algorithm (rarest label first, each item to the split wanting it most)
moves ~30% of the old items when 10% are added, so it is only a reference in the benchmark.

Measured (benchmarks/multilabel_sets.py split-quality, 15%/15%, means over seeds 0-3) on texts of
1-3 Reuters R52 topics (40-52 labels, 1.84-1.87 per item) / 10-label CIFAR mosaics (2.46 per item):
                      label distribution (LD)   items off per split (ED)   label count off (items)
  3,000 texts   hash 0.0061, this 0.0022         hash 12.3, this 1.0        hash 1.96, this 0.62
  3,000 mosaics hash 0.0223, this 0.0043         hash 13.5, this 1.0        hash 8.60, this 1.46
  (the paper's: 0.0039 / 0.0057 LD, 5.3 / 9.7 ED, 0.29 / 0.25 count off: closer counts, unstable)
  Hashing leaves 11-12 (label, split) pairs of the texts without any item; this split none.
- Adding 10% new items moves 1.9% of the old items (3,000 texts; at most 2.5%), 2.3% (1,000;
  at most 3.0%), 4.9% (500 texts, 40 labels); mosaics 1.6% (3,000), 2.7% (1,000), 3.5% (500).
  Exactness sets that floor: each label's new items miss its target by ~sqrt(0.13 * new) items,
  which old items at a boundary absorb (the fewer items per label, the larger the share).
- Time: 0.1 s CPU for 3,000 items x 52 labels; 2.6 s for 100,000 items x 200 labels.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import numpy as np
import scipy.sparse as sp

from ..errors import TransferkitError

SEPARATORS = ("|", ";")  # tried first; "," only when neither occurs (see _detect_separator)
MIN_SHARE = 0.05  # looks_multilabel: at least this share of labelled cells (and 2) must hold a separator
TOLERANCE = 1.0  # items: a label's count per split may sit this far from its target (stability)
MARGIN = 1e-3  # offsets keep this far (u units) from any unit's crossing point where they can
MAX_SWEEPS = 30  # fixed-point sweeps; 2-6 suffice on the measured sets
REFITS = 3  # refits around the rare labels' moves; 1-2 suffice on the measured sets
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- label cells -> label sets
def _json_list(cell) -> list | None:
    if isinstance(cell, (list, tuple)):
        return list(cell)
    try:
        v = json.loads(cell) if isinstance(cell, str) and cell.strip()[:1] == "[" else None
    except ValueError:
        return None
    return v if isinstance(v, list) else None


def _is_empty(cell) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell)) or (isinstance(cell, str) and not cell.strip())


def _clean(tokens) -> list[str]:
    """Trimmed, non-empty, first occurrence kept (a set in a stable order)."""
    return list(dict.fromkeys(t for t in (str(x).strip() for x in tokens) if t))


def _strings(cells) -> list[str]:
    return [str(c).strip() for c in cells if not _is_empty(c) and _json_list(c) is None]


def _recombines(strings: list[str], sep: str) -> tuple[int, int]:
    """(pieces that occur in two or more different label sets, distinct pieces of cells holding sep).

    Real label sets recombine their labels ("beach|sunset", "beach", "city|sunset"); a single
    label that merely contains the separator ("sales; north") does not.
    """
    sets_of: dict[str, set] = {}
    for ls in {frozenset(_clean(s.split(sep))) for s in strings}:
        for t in ls:
            sets_of.setdefault(t, set()).add(ls)
    pieces = {t for s in strings if sep in s for t in _clean(s.split(sep))}
    return sum(len(sets_of[t]) >= 2 for t in pieces), len(pieces)


def _detect_separator(strings: list[str]) -> tuple[str | None, str]:
    """The separator the label strings use, and a sentence saying how it was decided."""
    counts = {s: sum(s in x for x in strings) for s in SEPARATORS}
    found = [s for s in SEPARATORS if counts[s]]
    if found:
        sep = max(found, key=lambda s: (counts[s], -SEPARATORS.index(s)))
        other = [f"{s!r} in {counts[s]}" for s in found if s != sep]
        note = f"separator {sep!r}: found in {counts[sep]} of {len(strings)} label cells"
        return sep, note + (f" ({', '.join(other)}, kept inside labels)" if other else "")
    with_comma = [x for x in strings if "," in x]
    if with_comma:
        if any(not t.strip() for x in with_comma for t in x.split(",")):
            return None, f"',' occurs in {len(with_comma)} label cells but leaves empty pieces: not taken as a separator"
        rec, pieces = _recombines(strings, ",")
        if 2 * rec >= pieces:
            return ",", (f"separator ',': found in {len(with_comma)} of {len(strings)} label cells, and {rec} of its {pieces} "
                         "pieces recur in other label sets (no '|' or ';' anywhere)")
        return None, f"',' in {len(with_comma)} label cells, but only {rec} of its {pieces} pieces recur elsewhere: read as part of labels"
    return None, "no separator ('|', ';', ',') in any label cell"


def parse_label_cells(cells, sep: str | None = None) -> tuple[list[list[str]], str | None, list[str]]:
    """Label cells -> (label sets, the separator used or None, notes).

    A cell is a list, a JSON list string ('["beach", "sunset"]'), a string of labels joined by a
    separator ("beach|sunset", "billing; urgent") or empty (None, NaN, "", "[]"): an item with no
    label, a real "none of these" example. Labels are trimmed and de-duplicated; a set's order is
    that of first appearance and carries no meaning. `sep` None detects it from the data: '|' or
    ';' (the more frequent when both occur), else ',' only when every piece is non-empty and at
    least half of the pieces also occur in other label sets.
    """
    sep, how = _detect_separator(_strings(cells)) if sep is None else (sep, f"separator {sep!r}: given")
    lists = [None if _is_empty(c) else _json_list(c) for c in cells]
    out = [[] if _is_empty(c) else _clean(lst if lst is not None else str(c).split(sep) if sep else [c]) for c, lst in zip(cells, lists)]
    n_json, n_empty = sum(lst is not None for lst in lists), sum(not ls for ls in out)
    notes = [how] + [f"{n_json} cells are JSON lists"] * bool(n_json)
    return out, sep, notes + [f"{n_empty} items have no label (allowed: 'none of these' examples)"] * bool(n_empty)


def looks_multilabel(cells) -> tuple[bool, str]:
    """Whether a label column holds label SETS, decided by the data's shape, with the reason.

    Rule: yes if at least half of the non-empty cells are lists / JSON lists; or if a separator
    ('|', ';', else ',') occurs in at least 2 cells and at least 5% of the non-empty cells, AND at
    least half of the pieces it splits off recur in other label sets. So one odd "a;b" row in a
    single-label CSV is no reason, and neither are single labels that contain the separator
    ("sales; north", "sales; south": 'north' and 'south' never occur on their own or elsewhere).
    """
    filled = [c for c in cells if not _is_empty(c)]
    if not filled:
        return False, "no label cell has a value"
    n_json = sum(_json_list(c) is not None for c in filled)
    if 2 * n_json >= len(filled):
        return True, f"{n_json} of {len(filled)} label cells are lists"
    strings = _strings(filled)
    sep, how = _detect_separator(strings)
    if sep is None:
        return False, how
    k = sum(sep in s for s in strings)
    if k < max(2, MIN_SHARE * len(filled)):
        return False, f"{sep!r} occurs in only {k} of {len(filled)} label cells (sets need 2 and {MIN_SHARE:.0%}): read as part of a label"
    rec, pieces = _recombines(strings, sep)
    if 2 * rec < pieces:
        return False, (f"{sep!r} occurs in {k} of {len(filled)} label cells, but only {rec} of its {pieces} pieces recur in other "
                       f"label sets: single labels that contain {sep!r}")
    return True, f"{sep!r} joins labels in {k} of {len(filled)} label cells, and {rec} of its {pieces} pieces recur in other label sets"


def label_matrix(label_sets, classes=None) -> tuple[np.ndarray, list[str]]:
    """Label sets -> (Y, classes): Y uint8 (N, L), Y[i, j] = 1 if item i has classes[j].

    `classes` None: every label seen, sorted (by code point: the same order on any machine).
    """
    seen = sorted({str(t) for ls in label_sets for t in ls})
    classes = seen if classes is None else [str(c) for c in classes]
    col = {c: j for j, c in enumerate(classes)}
    if unknown := [t for t in seen if t not in col]:
        raise TransferkitError(f"labels {unknown[:5]} are not among the {len(classes)} classes given; add them or fix those cells")
    Y = np.zeros((len(label_sets), len(classes)), dtype=np.uint8)
    for i, ls in enumerate(label_sets):
        Y[i, [col[str(t)] for t in ls]] = 1
    return Y, classes


# ---------------------------------------------------------------- the split
def _u(seed: int, key: str) -> float:
    """The same u as data/splits.py: an item keeps the base split the single-label split gives it."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def _check_sizes(val_size: float, test_size: float) -> None:
    """The same checks and messages as data/splits.py."""
    for name, v in (("val-size", val_size), ("test-size", test_size)):
        if not 0.0 <= v < 1.0:
            raise TransferkitError(f"--{name} {v}: must be a fraction between 0 and 1 (e.g. 0.15)")
    if val_size + test_size >= 1.0:
        raise TransferkitError(f"--val-size {val_size} + --test-size {test_size} leave nothing to train on; keep their sum below 1")


def hash_split(keys, val_size: float = 0.15, test_size: float = 0.15, seed: int = 0):
    """The plain per-item hash split (the base of multilabel_split): (train_idx, val_idx, test_idx)."""
    _check_sizes(val_size, test_size)
    u = np.array([_u(seed, str(k)) for k in keys])
    idx = np.arange(len(u))
    return idx[u >= test_size + val_size], idx[(u >= test_size) & (u < test_size + val_size)], idx[u < test_size]


def _offset(c: np.ndarray, wt: np.ndarray, target: float) -> float:
    """The offset d nearest 0 such that the weight of {c < d} is within TOLERANCE of target
    (or as near as it gets). c: (m,) each unit's offset at which it crosses; wt: (m,) its items."""
    o = np.argsort(c, kind="stable")
    cc = c[o]
    below = np.concatenate([[0.0], np.cumsum(wt[o])])  # below[k]: weight when the k lowest cross
    lo, hi = np.concatenate([[-np.inf], cc]), np.concatenate([cc, [np.inf]])  # k crossed: lo < d <= hi
    err = np.where(lo < hi, np.abs(below - target), np.inf)
    margin = np.minimum(MARGIN, (hi - lo) / 2)  # no unit balanced on the boundary
    d = np.where(err <= max(err.min(), TOLERANCE) + 1e-9, np.clip(0.0, lo + margin, hi - margin), np.inf)
    return float(d[np.argmin(np.abs(d))])


def _boundary(u, k, events, free, b: float, size: float, w, pinned) -> np.ndarray:
    """Free units below the corrected boundary b, plus the units pinned there (boolean mask).

    A free unit i is below iff u_i < b + d0 + (the sum of its events' offsets) / k_i; a label's
    target (size * its items) counts the items pinned there."""
    delta, tot, d0 = np.zeros(len(events)), np.zeros(len(u)), 0.0  # tot: per unit, its offsets' sum
    act = [(U[free[U]], wt[free[U]], size * n - wt[pinned[U]].sum()) for U, wt, n in events]
    A = np.flatnonzero(free)
    target0 = size * w.sum() - w[pinned].sum()
    inside = None
    for _ in range(MAX_SWEEPS):
        for e, (U, wt, target) in enumerate(act):
            if len(U):
                new = _offset(k[U] * (u[U] - b - d0) - (tot[U] - delta[e]), wt, target)
                tot[U] += new - delta[e]
                delta[e] = new
        d0 = _offset(u[A] - b - tot[A] / k[A], w[A], target0)
        now = free & (u - b - tot / k < d0)
        if inside is not None and (now == inside).all():
            break
        inside = now
    return now | pinned


def _fit(u, k, events, w, steps, pinned) -> np.ndarray:
    """(units,) split codes 0 train / 1 val / 2 test; `pinned`: a code per unit, -1 where free."""
    split = np.zeros(len(u), dtype=np.int8)
    free = pinned < 0
    for code, lo, size in steps:
        below = _boundary(u, k, events, free, lo + size, size, w, pinned == code)
        split[below] = code
        free &= ~below
    split[pinned >= 0] = pinned[pinned >= 0]
    return split


def multilabel_split(Y, keys, val_size: float = 0.15, test_size: float = 0.15, seed: int = 0):
    """Stratified, stable split of multi-label items: (train_idx, val_idx, test_idx), row indices.

    Y: (N, L) 0/1 indicator matrix (columns in a fixed order, e.g. label_matrix's); keys: N
    content hashes (strings; the same key = the same bytes = the same split). See the module
    docstring for the method, what it guarantees and what was measured.
    """
    _check_sizes(val_size, test_size)
    Y = sp.csr_matrix(Y, dtype=np.float64)
    keys = np.asarray([str(k) for k in keys])
    if Y.shape[0] != len(keys):
        raise TransferkitError(f"labels for {Y.shape[0]} items but {len(keys)} keys: give one content key per item")
    if not np.isin(Y.data, (0.0, 1.0)).all():
        raise TransferkitError("the label matrix must hold 0 and 1 only (label_matrix makes one)")
    uk, inv = np.unique(keys, return_inverse=True)  # units: distinct contents, sorted by key
    n_units, N = len(uk), float(len(keys))
    M = sp.csr_matrix((np.ones(len(keys)), (inv, np.arange(len(keys)))), shape=(n_units, len(keys)))
    C = (M @ Y).tocsc()  # (units, L): items of each unit holding each label
    w = np.bincount(inv, minlength=n_units).astype(np.float64)
    u = np.array([_u(seed, k) for k in uk])
    events = []  # per label, its scarcer side: (units, their items in it, items in all)
    for j in range(C.shape[1]):
        U, cnt = C.indices[C.indptr[j] : C.indptr[j + 1]], C.data[C.indptr[j] : C.indptr[j + 1]]
        if 2 * cnt.sum() > N:  # held by most items: balance those that lack it
            lack = w.copy()
            lack[U] -= cnt
            U = np.flatnonzero(lack > 0)
            cnt = lack[U]
        if 0 < cnt.sum() < N:
            events.append((U, cnt, cnt.sum()))
    k = np.maximum(np.bincount(np.concatenate([U for U, _, _ in events] + [np.zeros(0, np.int64)]), minlength=n_units), 1.0)
    steps = [(code, lo, size) for code, lo, size in ((2, 0.0, test_size), (1, test_size, val_size)) if size > 0]
    wanted = [code for code, _, _ in steps]
    pinned = np.full(n_units, -1, dtype=np.int8)  # units the rare labels moved, where they moved them
    for _ in range(REFITS + 1):  # refit the rest around those moves (the split sizes, the other labels)
        split = _fit(u, k, events, w, steps, pinned)
        fixed = split.copy()
        _rare_labels(C, u, fixed, wanted, test_size, val_size)
        moved, split = fixed != split, fixed
        if not moved.any():
            break
        pinned[moved] = fixed[moved]
    s = split[inv]
    return tuple(np.flatnonzero(s == c) for c in (0, 1, 2))


def _rare_labels(C, u, split, wanted: list[int], test_size: float, val_size: float) -> None:
    """In place: every label with a unit trains on one; with 2+ units one tests, with 3+ one
    validates. The unit moved is the one nearest the split's u-interval among those whose move
    takes no label's only unit out of train, or out of a wanted split that label can have."""
    span = {0: (test_size + val_size, 1.0), 1: (test_size, test_size + val_size), 2: (0.0, test_size)}
    by_unit = (C > 0).tocsr()
    units_of = np.split((C > 0).tocsc().indices, (C > 0).tocsc().indptr[1:-1])

    def safe(i: int, frm: int) -> bool:
        mine = [units_of[j] for j in by_unit.indices[by_unit.indptr[i] : by_unit.indptr[i + 1]]]
        return all((split[m] == frm).sum() >= 2 for m in mine if frm == 0 or wanted.index(frm) + 2 <= len(m))

    def move(cands, to: int, check: bool = True) -> None:
        if cands := [i for i in cands if not check or safe(i, split[i])]:
            a, b = span[to]
            split[min(cands, key=lambda i: (max(a - u[i], u[i] - b, 0.0), u[i]))] = to

    for mine in units_of:  # first: every label trains on something
        if len(mine) and not (split[mine] == 0).any():
            move(list(mine), 0, check=False)
    for mine in units_of:
        for rank, to in enumerate(wanted):
            for frm in [0] + [x for x in wanted if x != to]:  # train first, else another split
                if len(mine) < rank + 2 or (split[mine] == to).any():
                    break
                donors = list(mine[split[mine] == frm])
                if len(donors) >= 2 or (frm in wanted[rank + 1 :] and donors):  # one to spare, or a lesser split's
                    move(donors, to)


def split_names(split, n: int) -> np.ndarray:
    """(train_idx, val_idx, test_idx) -> (n,) array of "train" / "val" / "test" (None: unassigned)."""
    out = np.full(n, None, dtype=object)
    for name, idx in zip(SPLITS, _parts(split)):
        out[idx] = name
    return out


def _parts(split):
    """A split given as (train, val, test) indices, a dict of them, or an object with .train/.val/.test."""
    if isinstance(split, dict):
        return [np.asarray(split[s], dtype=np.int64) for s in SPLITS]
    if all(hasattr(split, s) for s in SPLITS):
        return [np.asarray(getattr(split, s), dtype=np.int64) for s in SPLITS]
    return [np.asarray(p, dtype=np.int64) for p in split]


def split_quality(Y, split, val_size: float = 0.15, test_size: float = 0.15) -> dict:
    """How well a split keeps label proportions, as measured by Sechidis et al. (2011).

    - label_distribution (LD): mean over labels (with an item) of the mean over splits of
      |pos/neg in the split - pos/neg in all|; 0 is perfect.
    - examples_distribution (ED): mean over splits of |items - target items| (items).
    - count_error: mean over labels and splits of |the label's items in the split - target| (items).
    - zero_folds (FZ): (label, split) pairs with no positive item, among labels with >= 3 items.
    """
    Y = np.asarray(Y, dtype=np.float64)
    N, n_l = len(Y), Y.sum(0)
    keep = n_l > 0
    ratio = n_l / np.maximum(N - n_l, 1e-12)
    ld, ed, ce, fz = [], [], [], 0
    for idx, frac in zip(_parts(split), (1.0 - val_size - test_size, val_size, test_size)):
        if frac <= 0:
            continue
        S = Y[idx].sum(0)
        ld.append(np.abs(S / np.maximum(len(idx) - S, 1e-12) - ratio)[keep])
        ed.append(abs(len(idx) - frac * N))
        ce.append(np.abs(S - frac * n_l)[keep])
        fz += int(((S == 0) & (n_l >= 3)).sum())
    return {"label_distribution": round(float(np.mean(ld)), 5), "examples_distribution": round(float(np.mean(ed)), 2),
            "count_error": round(float(np.mean(ce)), 3), "zero_folds": fz}


# ---------------------------------------------------------------- checks
MIN_TRAIN = 5  # items: fewer training items than this is too few to learn a label


def _names(labels: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(x) for x in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def multilabel_checks(Y, classes, split) -> list[str]:
    """Warnings (one sentence each) about a multi-label data set and its split.

    `split`: (train_idx, val_idx, test_idx), a dict of them, or a Splits-like object. Says which
    labels are too rare to learn (< MIN_TRAIN training items) or to evaluate (absent from val:
    their threshold falls back to 0.5; absent from test: no test score), which labels always occur
    together (the same items: no model can tell them apart), how many items have no label
    (allowed) and the label cardinality (labels per item).
    """
    Y = np.asarray(Y).astype(bool)
    classes = [str(c) for c in classes]
    if Y.ndim != 2 or Y.shape[1] != len(classes):
        raise TransferkitError(f"label matrix of shape {Y.shape} does not match {len(classes)} classes")
    train, val, test = _parts(split)
    out, n_l = [], Y.sum(0)
    if absent := [c for c, n in zip(classes, n_l) if n == 0]:
        out.append(f"{len(absent)} labels have no item at all ({_names(absent)}): they can be neither learnt nor evaluated")
    tr, va, te = Y[train].sum(0), Y[val].sum(0), Y[test].sum(0)
    if few := [f"{c} ({t})" for c, t, n in zip(classes, tr, n_l) if 0 < n and t < MIN_TRAIN]:
        out.append(f"{len(few)} labels have fewer than {MIN_TRAIN} training items, too few to learn reliably: {_names(few)}")
    for name, cnt, size, what in (("val", va, len(val), "their decision threshold falls back to 0.5"),
                                  ("test", te, len(test), "they get no test score")):
        miss = [c for c, x, n in zip(classes, cnt, n_l) if n > 0 and x == 0]
        if miss and size:
            out.append(f"{len(miss)} labels have no {name} item ({_names(miss)}): {what}")
    groups: dict[bytes, list[str]] = {}
    for j in np.flatnonzero(n_l > 0):
        groups.setdefault(np.packbits(Y[:, j]).tobytes(), []).append(classes[j])
    for names in groups.values():
        if len(names) > 1:
            out.append(f"labels {_names(names)} always occur together (the same {int(n_l[classes.index(names[0])])} items): "
                       "a model cannot tell them apart; merge them, or add items that have one without the other")
    card = Y.sum(1)
    if none := int((card == 0).sum()):
        out.append(f"{none} items ({none / len(Y):.0%}) have no label: allowed, they teach 'none of these'")
    if len(Y):
        hist = Counter(card.tolist())
        spread = ", ".join(f"{k}: {hist[k]}" for k in sorted(hist))
        out.append(f"label cardinality {card.mean():.2f} labels per item (items by label count: {spread})"
                   + ("; every item has exactly one label: a single-label run fits this data better" if set(hist) == {1} else ""))
    return out
