"""Time budgets: `tune --time 30m` and `compare --time-budget 1h`.

`compare` spends its budget cheapest run first (ORDER). A run starts only when what is left
covers the least it can do (`least_s`: its features if not cached yet, one epoch, its
evaluation), priced from what this comparison has measured so far (the backbone's seconds per
item); a started run that would run past the budget stops after its last epoch that fits
(loop.callbacks.Deadline) and keeps its best epoch. Runs that cannot start are skipped, with
the reason, in the leaderboard."""
from __future__ import annotations

import re

from .errors import TransferkitError

# cheapest first: classical baselines and cached-feature probes, then networks by how much trains
ORDER = {"tfidf": 0, "probe": 1, "mlp": 2, "head": 3, "scratch": 4, "partial": 5, "finetune": 6}
# one training epoch in backbone forward passes per item (backward ~2 forwards where the body trains)
EPOCH_PASSES = {"head": 1.0, "partial": 2.0, "finetune": 3.0, "scratch": 1.0, "mlp": 0.05}
RESERVE = 0.05  # of the budget, kept for the ensemble row and the pages (at most 60 s)


def parse_duration(text, flag: str = "--time") -> float | None:
    """'30m', '1h', '90s', '1h30m', 120 -> seconds; None stays None."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
        if not parts or not any(parts.groups()):
            raise TransferkitError(f"{flag} {text}: write a duration such as 30m, 1h, 1h30m or 600s")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise TransferkitError(f"{flag} {text}: give a duration above zero, such as 30m")
    return seconds


def cheapest_first(configs: list, strategy_of) -> list:
    """`configs` in ORDER of their strategy (stable within one strategy)."""
    return sorted(configs, key=lambda c: ORDER.get(strategy_of(c), len(ORDER)))


def reserve_s(budget_s: float) -> float:
    return min(60.0, RESERVE * budget_s)


def least_s(strategy: str, n_train: int, n_all: int, rate: float | None, features_cached: bool) -> float | None:
    """The least a run can cost: None when nothing has been measured yet (it runs)."""
    if rate is None:
        return None
    features = 0.0 if features_cached else rate * n_all
    if strategy in ("probe", "tfidf"):
        return features
    return features + rate * n_train * EPOCH_PASSES.get(strategy, 1.0) + rate * (n_all - n_train)
