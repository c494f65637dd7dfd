"""Rules for class names that every source follows: a stable order, and a note when two
names probably mean the same class."""
from __future__ import annotations


def sort_labels(names) -> list[str]:
    """Classes in a stable order: number-like labels first, numerically (2 before 10), then text."""

    def key(s: str):
        try:
            return (0, float(s), s)
        except ValueError:
            return (1, 0.0, s)

    return sorted(set(names), key=key)


def label_notes(classes: list[str]) -> list[str]:
    """Labels that are different text but probably mean the same class ('1' vs '1.0', 'Cat' vs 'cat')."""
    groups: dict[object, list[str]] = {}
    for c in classes:
        try:
            key: object = ("num", float(c))
        except ValueError:
            key = ("text", " ".join(c.casefold().split()))
        groups.setdefault(key, []).append(c)
    return [f"labels {same} are different classes (labels are compared as text); make them identical in the data if they mean the same" for same in groups.values() if len(same) > 1]
