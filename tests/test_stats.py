"""Paired tests: hand-computed p-values, exact enumeration, level under the null, power when one is better."""
from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
from scipy.stats import kstest
from sklearn.metrics import f1_score

from transferkit.errors import TransferkitError
from transferkit.stats import macro_f1, mcnemar, paired_permutation


def paired(only_a, only_b, both=0, neither=0):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


@pytest.mark.parametrize("only_a,only_b,p", [
    (10, 2, 2 * (comb(12, 0) + comb(12, 1) + comb(12, 2)) / 2**12),  # 158 / 4096 = 0.0386
    (0, 6, 2 / 2**6),                                                  # 0.03125
    (3, 1, 2 * (1 + 4) / 2**4),                                        # 0.625
    (5, 5, 1.0),
    (0, 0, 1.0),
])
def test_mcnemar_hand_computed(only_a, only_b, p):
    a, b = paired(only_a, only_b, both=40, neither=7)  # concordant items change nothing
    r = mcnemar(a, b)
    assert r == {"n": only_a + only_b + 47, "only_a": only_a, "only_b": only_b, "p": pytest.approx(p, abs=1e-12)}
    assert mcnemar(b, a)["p"] == pytest.approx(p, abs=1e-12)  # symmetric
    assert mcnemar(a.astype(int), b.astype(int)) == r  # 0/1 works too


def test_mcnemar_level_under_null_and_power():
    rng = np.random.default_rng(0)
    ps = np.array([mcnemar(rng.random(200) < 0.8, rng.random(200) < 0.8)["p"] for _ in range(500)])
    for alpha in (0.05, 0.1, 0.2):
        # exact McNemar is a little conservative (discrete), never anti-conservative
        assert alpha / 3 < (ps <= alpha).mean() <= alpha + 2 * np.sqrt(alpha * (1 - alpha) / 500)
    a = rng.random(300) < 0.9  # a right on 90 %, b on 75 %, same items
    b = rng.random(300) < 0.75
    r = mcnemar(a, b)
    assert r["only_a"] > r["only_b"] and r["p"] < 1e-4


def test_mcnemar_refuses_mismatched_items():
    with pytest.raises(TransferkitError, match="different numbers"):
        mcnemar([True, False], [True])
    with pytest.raises(TransferkitError, match="booleans"):
        mcnemar([0.3, 1.0], [1, 0])


def noisy(Y, rate, rng):
    return np.where(rng.random(Y.shape) < rate, 1 - Y, Y)


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    Y = (rng.random((50, 6)) < 0.3).astype(int)
    Y[:, 5] = 0  # a label nobody has
    P = noisy(Y, 0.2, rng)
    P[:, 5] = 0
    assert macro_f1(Y, P) == pytest.approx(f1_score(Y, P, average="macro", zero_division=0), abs=1e-12)


def test_permutation_matches_exact_enumeration():
    rng = np.random.default_rng(2)
    Y = (rng.random((10, 3)) < 0.5).astype(int)
    A, B = noisy(Y, 0.15, rng), noisy(Y, 0.4, rng)
    diff = macro_f1(Y, A) - macro_f1(Y, B)
    null = []
    for mask in itertools.product([False, True], repeat=10):  # all 1024 swaps
        s = np.array(mask)[:, None]
        null.append(macro_f1(Y, np.where(s, B, A)) - macro_f1(Y, np.where(s, A, B)))
    exact = np.mean(np.abs(null) >= abs(diff) - 1e-12)
    r = paired_permutation(macro_f1, Y, A, B, n_perm=5000, seed=3)
    assert r["diff"] == pytest.approx(diff) and r["n"] == 10
    assert 0.005 < exact < 0.5  # a case where the p-value is neither trivial nor tiny
    assert abs(r["p"] - exact) < 4 * np.sqrt(exact * (1 - exact) / 5000) + 1 / 5001


def test_permutation_hand_case_and_edges():
    # accuracy with a right on all 10 items and b on none: only "swap none" and "swap all" reach
    # |diff| = 1, so the exact p is 2 / 2**10; with the +1 the estimate is (1 + k) / (1 + n_perm)
    y = np.arange(10) % 3
    acc = lambda t, p: float((t == p).mean())  # noqa: E731
    r = paired_permutation(acc, y, y, (y + 1) % 3, n_perm=20000, seed=0)
    assert r["diff"] == 1.0
    assert abs(r["p"] - 2 / 1024) < 4 * np.sqrt(2 / 1024 / 20000) + 1 / 20001
    same = paired_permutation(acc, y, y, y, n_perm=50)
    assert same == {"diff": 0.0, "p": 1.0, "n": 10}
    assert paired_permutation(acc, y, y, (y + 1) % 3, n_perm=50, seed=4) == paired_permutation(acc, y, y, (y + 1) % 3, n_perm=50, seed=4)
    with pytest.raises(TransferkitError, match="same shape"):
        paired_permutation(acc, y, y, y[:5])


def test_permutation_uniform_under_null_and_small_when_better():
    rng = np.random.default_rng(5)
    ps = []
    for i in range(200):  # two equally good models (20 % of label cells flipped, independently)
        Y = (rng.random((60, 5)) < 0.3).astype(int)
        ps.append(paired_permutation(macro_f1, Y, noisy(Y, 0.2, rng), noisy(Y, 0.2, rng), n_perm=199, seed=i)["p"])
    ps = np.array(ps)
    assert kstest(ps, "uniform").pvalue > 0.01
    assert 0.01 <= (ps <= 0.05).mean() <= 0.10 and 0.05 <= (ps <= 0.2).mean() <= 0.3
    Y = (rng.random((100, 5)) < 0.3).astype(int)
    r = paired_permutation(macro_f1, Y, noisy(Y, 0.05, rng), noisy(Y, 0.25, rng), n_perm=2000)
    assert r["diff"] > 0.2 and r["p"] == 1 / 2001  # no swap reached the observed gap
    r = paired_permutation(macro_f1, Y, noisy(Y, 0.25, rng), noisy(Y, 0.05, rng), n_perm=2000)
    assert r["diff"] < -0.2 and r["p"] == 1 / 2001  # two-sided: b better is just as significant
