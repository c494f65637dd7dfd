"""Near-duplicate pairs from backbone features, without an all-pairs matrix in memory.

Two items are near-duplicates when the cosine similarity of their features is at least a
threshold. Resized, re-encoded or slightly cropped copies of one photo land there; distinct
photos, even of one class, do not. Where the pairs fall decides what they mean
(`classify_pairs`): across splits = leakage (the test score counts memorised items), different
labels = a contradiction, same label and split = redundancy.

Exact, with a cheap pre-filter. Rows are L2-normalised (z = x / |x|) and compared block
against block over the upper triangle only, so memory is O(N x D) for the normalised copy plus
O(block^2) per comparison. With `reduce` = k <= D/2, each z is split into its projection
a = V'z on k orthonormal directions V (close to the top principal directions of a sample of
the z, uncentred) and the residual r = z - Va. Then
z_i . z_j = a_i . a_j + r_i . r_j <= a_i . a_j + |r_i| |r_j| (Cauchy-Schwarz): a pair can reach
the threshold only where this bound does, one (k+1)-d product over all pairs finds every
candidate, and only candidates are verified in the full space. No pair above the threshold is
missed (recall 1 by construction, up to float32 rounding, which a 1e-4 slack on the bound
covers; the tests compare with brute force). Where the bound prunes badly a block is compared
densely instead (a sampled block decides up front), so the pre-filter never costs recall.
A random projection in place of V prunes nothing here (the residual keeps ~0.95 of the norm
of EfficientNet features): the principal directions are what make it work.

Measured (this machine: 2 cores shared with other jobs, load average ~14, `nice -n 10`,
numpy/OpenBLAS float32, block 2048, threshold 0.95), 50,000 x 1,280 features drawn to resemble
EfficientNet-Lite0's on flowers5 (mean and top-256 principal spectrum of 666 real feature
vectors, clipped at 0: 33 % zeros vs 50 % real), with 500 planted near-copies:
  pre-filter (reduce=128): 42 s wall, 14 s CPU, 500 candidates verified, 500/500 copies found;
  dense blocks (reduce=None): 124 s wall, 36 s CPU (before `_at_least`'s row screening, so a
  little pessimistic); the same 500 pairs (identical sets);
  pure Gaussian noise features: 33 s wall, 11 s CPU (266 candidates; r r' ~ 0.9 < 0.95).
On 333 real feature vectors, with V fitted on 333 others, the bound passes 1.8e-5 of the pairs
at 0.95 and 1e-3 at 0.90.

Default threshold 0.95 (EfficientNet-Lite0 ImageNet features, default preprocessing),
measured on 29 photos (20 ImageNet from foolbox, 9 scikit-image), 20 CIFAR-10 and 40 flowers5
images and their edited copies (cosine copy vs original, min / median):
  3/4 size + JPEG q90: 0.968 / 0.986 (ImageNet + scikit-image; flowers5 min 0.956)
  horizontal flip: 0.936 / 0.970;  5 % border crop + q85: 0.910 / 0.966
  1/2 size + JPEG q75: 0.81 / 0.94;  1/3 size + q50: 0.67 / 0.82 (not "the same photo" any more)
  tiny 32 px CIFAR-10 originals: 0.34-0.76 after any edit (upsampling dominates).
Distinct photos: 221,445 pairs of 666 images (flowers5 every 7th, the rest above): median
0.44, 99.99th percentile 0.880, max 0.913 (two fields of daisies). 0.95 keeps a margin above
that tail and catches mild resize / re-encode copies; 0.97 missed some of those (0.956-0.968).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .log import log

DEFAULT_THRESHOLD = 0.95  # cosine; why: the module docstring (copies >= 0.956, distinct <= 0.913)
SLACK = 1e-4  # float32 rounding allowance on the bound (products of unit vectors: ~1e-6)
DENSE_FRACTION = 0.002  # more candidates than this share of a block: compare it densely
SAMPLE = 8192  # rows used to fit the principal directions (any orthonormal V keeps it exact)
POWER_ITERATIONS = 2  # subspace iterations for the basis (1 already prunes nearly as well, measured)


def _normalised(X) -> np.ndarray:
    Z = np.array(X, dtype=np.float32, copy=True)
    if Z.ndim != 2:
        raise ValueError(f"expected (N, D) features, got shape {Z.shape}")
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    Z /= np.where(norms > 0, norms, 1.0)  # an all-zero row stays zero: similar to nothing
    return Z


def _basis(Z: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(D, k) orthonormal basis close to the top-k right singular directions of a row sample of
    Z (uncentred: the bound needs the projection of z itself, mean direction included), by
    randomised subspace iteration (Halko et al. 2011): matrix products only. Any orthonormal
    basis keeps the search exact; a better one only prunes more. (numpy's full eigh of the
    D x D Gram matrix took 16 s here on busy cores, for the same pruning.)"""
    rng = np.random.default_rng(seed)
    S = Z[rng.choice(len(Z), SAMPLE, replace=False)] if len(Z) > SAMPLE else Z
    Q = rng.standard_normal((Z.shape[1], k)).astype(np.float32)
    for _ in range(POWER_ITERATIONS):
        Q, _ = np.linalg.qr(S.T @ (S @ Q))
    return np.ascontiguousarray(Q, dtype=np.float32)


class _Collector:
    """Pairs above the threshold; keeps the `cap` most similar once there are more (then
    `floor` rises to the least similar kept pair, and lower pairs are no longer looked at)."""

    def __init__(self, threshold: float, cap: int):
        self.floor, self.cap, self.parts, self.n, self.truncated = threshold, cap, [], 0, False

    def add(self, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> None:
        keep = s >= self.floor
        if keep.any():
            self.parts.append((i[keep], j[keep], s[keep]))
            self.n += int(keep.sum())
        if self.n > 2 * self.cap:
            self._prune()

    def _prune(self) -> None:
        i, j, s = (np.concatenate(a) for a in zip(*self.parts))
        if len(s) > self.cap:
            top = np.argpartition(-s, self.cap - 1)[: self.cap]
            self.truncated = True
            i, j, s = i[top], j[top], s[top]
            self.floor = max(self.floor, float(s.min()))  # nothing below this can get in now
        self.parts, self.n = [(i, j, s)], len(s)

    def result(self) -> list[tuple[int, int, float]]:
        if not self.parts:
            return []
        self._prune()
        i, j, s = self.parts[0]
        order = np.lexsort((j, i, -s))  # similarity descending, then (i, j)
        return [(int(a), int(b), float(c)) for a, b, c in zip(i[order], j[order], s[order])]


@lru_cache(maxsize=4)
def _on_or_below_diagonal(n: int) -> np.ndarray:
    """(n, n) bool mask of j <= i: a diagonal block keeps only its upper triangle."""
    return np.tri(n, dtype=bool)


def _dense(Z: np.ndarray, r0: int, r1: int, c0: int, c1: int, out: _Collector) -> None:
    """Rows r0:r1 against rows c0:c1 in the full space (upper triangle when they coincide)."""
    S = Z[r0:r1] @ Z[c0:c1].T
    if r0 == c0:
        S[_on_or_below_diagonal(r1 - r0)] = -np.inf
    ii, jj = _at_least(S, out.floor)
    out.add(ii + r0, jj + c0, S[ii, jj])


def _at_least(S: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of S >= limit; rows screened by their maximum first (most blocks have no hit,
    and a max is much cheaper than a full boolean scan)."""
    rows = np.flatnonzero(S.max(1) >= limit)
    if not len(rows):
        return rows, rows
    ii, jj = np.nonzero(S[rows] >= limit)
    return rows[ii], jj


def near_duplicate_pairs(X, threshold: float = DEFAULT_THRESHOLD, block: int = 2048, max_pairs: int = 100_000,
                         reduce: int | None = 128, seed: int = 0, stats: dict | None = None) -> list[tuple[int, int, float]]:
    """All pairs (i, j), i < j, of rows of X (N, D) with cosine similarity >= `threshold`, as
    (i, j, similarity) sorted by similarity descending (ties by i, j).

    `block`: rows per comparison block (memory ~ block^2 x 4 bytes per product, plus the N x D
    float32 normalised copy). `reduce`: dimensions of the exact pre-filter (None or >= D/2:
    dense blocks only). More than `max_pairs` pairs: the `max_pairs` most similar are kept and
    a log line says so (raise the threshold). All-zero rows have similarity 0 with everything.
    `stats` (a dict, optional) receives what was done: prefilter (bool), blocks, dense_blocks,
    candidates (pairs verified in the full space), truncated (bool).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"cosine threshold must be in [-1, 1], got {threshold}")
    Z = _normalised(X)
    N, D = Z.shape
    out = _Collector(float(threshold), int(max_pairs))
    block = max(1, int(block))
    A = None  # (N, k + 1) projections and residual norms, when the pre-filter is on
    st = {"prefilter": False, "blocks": 0, "dense_blocks": 0, "candidates": 0, "truncated": False}
    if reduce and 2 * reduce <= D and N > block:  # one block: nothing to prune
        V = _basis(Z, int(reduce), seed)
        A = Z @ V
        # [a, |r|] . [a', |r'|] = a . a' + |r| |r'|: the bound in one (k+1)-d product
        A = np.concatenate([A, _residual_norms(Z, A, V, block)[:, None]], axis=1)
        if _candidate_fraction(A, threshold, block, seed) > DENSE_FRACTION:
            A = None  # the bound prunes too little on these features: dense blocks are cheaper
    st["prefilter"] = A is not None
    for r0 in range(0, N, block):
        r1 = min(N, r0 + block)
        for c0 in range(r0, N, block):
            c1 = min(N, c0 + block)
            st["blocks"] += 1
            if A is None:
                st["dense_blocks"] += 1
                _dense(Z, r0, r1, c0, c1, out)
                continue
            U = A[r0:r1] @ A[c0:c1].T
            if r0 == c0:
                U[_on_or_below_diagonal(r1 - r0)] = -np.inf
            ii, jj = _at_least(U, out.floor - SLACK)
            if len(ii) > DENSE_FRACTION * U.size:
                st["dense_blocks"] += 1
                _dense(Z, r0, r1, c0, c1, out)
                continue
            st["candidates"] += len(ii)
            ii, jj = ii + r0, jj + c0
            s = np.einsum("ij,ij->i", Z[ii], Z[jj])
            out.add(ii, jj, s)
    pairs = out.result()
    st["truncated"] = out.truncated
    if stats is not None:
        stats.update(st)
    if out.truncated:
        log(f"near-duplicates: more than {max_pairs:,} pairs above {threshold:g}; kept the {max_pairs:,} most similar "
            f"(similarity >= {pairs[-1][2]:.4f}); raise the threshold to see them all")
    return pairs


def _residual_norms(Z: np.ndarray, A: np.ndarray, V: np.ndarray, block: int) -> np.ndarray:
    """(N,) |z - V a| computed explicitly, by blocks: sqrt(1 - |a|^2) would lose all precision
    for rows almost inside the subspace (cancellation), and the bound must not undershoot."""
    r = np.empty(len(Z), dtype=np.float32)
    for s in range(0, len(Z), block):
        R = Z[s : s + block] - A[s : s + block] @ V.T
        r[s : s + block] = np.linalg.norm(R, axis=1)
    return r


def _candidate_fraction(A: np.ndarray, threshold: float, block: int, seed: int) -> float:
    """Share of pairs passing the bound, on one sampled block against another."""
    rng = np.random.default_rng(seed + 1)
    m = min(len(A), max(256, block // 4))
    a, b = rng.choice(len(A), m, replace=False), rng.choice(len(A), m, replace=False)
    return float((A[a] @ A[b].T >= threshold - SLACK).mean())


def classify_pairs(pairs, labels, split_of) -> dict:
    """Sort near-duplicate pairs by what they mean.

    `labels` (N,) the given labels (any comparable values), `split_of` (N,) each item's split
    name. Returns {"across_splits", "contradictions", "within_class"}: lists of
    {i, j, similarity, label_i, label_j, split_i, split_j}. A pair in two splits is leakage
    (listed under across_splits, and also under contradictions if the labels differ);
    different labels in one split: a contradiction; the rest: same label, same split.
    """
    labels, split_of = np.asarray(labels), np.asarray(split_of)
    out = {"across_splits": [], "contradictions": [], "within_class": []}
    for i, j, s in pairs:
        row = {"i": int(i), "j": int(j), "similarity": float(s), "label_i": labels[i].item(), "label_j": labels[j].item(),
               "split_i": split_of[i].item(), "split_j": split_of[j].item()}
        cross, differ = split_of[i] != split_of[j], labels[i] != labels[j]
        if cross:
            out["across_splits"].append(row)
        if differ:
            out["contradictions"].append(row)
        if not cross and not differ:
            out["within_class"].append(row)
    return out
