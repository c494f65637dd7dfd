"""Checks run before any training: class counts, imbalance, skipped files, duplicates."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..errors import TransferkitError
from .dataset import ItemDataset
from .splits import Splits

MIN_PER_CLASS = 100  # the seeds ask for ≥ 3 classes of ≥ 100 items each
MAX_IMBALANCE = 10.0


@dataclass
class CheckResult:
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"item", "reason"}: unreadable / not images
    ignored: list[dict] = field(default_factory=list)  # {"item", "reason"}: OS metadata files, hidden files
    leakage: list[dict] = field(default_factory=list)  # identical content in different splits
    contradictions: list[dict] = field(default_factory=list)  # identical content, different labels
    duplicates: int = 0  # items whose content appears more than once

    def as_dict(self) -> dict:
        return {"warnings": self.warnings, "skipped": self.skipped, "ignored": self.ignored, "leakage": self.leakage, "contradictions": self.contradictions, "duplicates": self.duplicates}


def check_dataset(ds: ItemDataset, splits: Splits | None = None) -> CheckResult:
    """Raise for data nothing can be learned from; warn about everything else worth knowing.

    Works on any dataset by its labels and content keys (images: file bytes; texts: the text).
    """
    if getattr(ds, "Y", None) is not None:
        return _check_multilabel(ds, splits)
    unit = ds.unit  # "image" or "text"
    where_classes = "each in its own sub-folder" if ds.kind == "image" else "in the label column or class sub-folders"
    counts = ds.class_counts()
    present = {c: n for c, n in counts.items() if n > 0}
    if len(present) < 2:
        raise TransferkitError(f"{ds.root or ds.name}: found {len(present)} class(es) with {unit}s ({', '.join(present) or 'none'}); a classifier needs at least 2 classes, {where_classes}")
    if splits is not None:
        in_train = sorted({ds.classes[c] for c in ds.labels[splits.train]})
        if len(in_train) < 2:
            raise TransferkitError(f"{ds.root or ds.name}: the training split holds {unit}s of {len(in_train)} class(es) ({', '.join(in_train) or 'none'}); a classifier needs at least 2 classes to learn from; add training {unit}s")
    res = CheckResult()
    res.skipped = [{"item": s.item, "reason": s.reason} for s in ds.skipped]
    res.ignored = [{"item": s.item, "reason": s.reason} for s in getattr(ds, "ignored", [])]
    if ds.skipped:
        res.warnings.append(f"{len(ds.skipped)} file(s) or row(s) skipped: unreadable, empty, not {unit}s, blank or duplicate rows (each listed with its reason in checks.json)")
    for c, n in counts.items():
        if n == 0:
            res.warnings.append(f"class '{c}' has no readable {unit}s and cannot be predicted")
        elif n < MIN_PER_CLASS:
            res.warnings.append(f"class '{c}' has only {n} {unit}s (fewer than {MIN_PER_CLASS}); its scores will be noisy")
    lo, hi = min(present.values()), max(present.values())
    if hi / lo > MAX_IMBALANCE:
        res.warnings.append(f"classes are imbalanced {hi / lo:.0f}:1 ({max(present, key=present.get)} {hi} vs {min(present, key=present.get)} {lo}); consider class weights")
    res.warnings.extend(ds.notes)
    if splits is not None:
        for c, n in counts.items():
            if n == 0:
                continue
            ci = ds.classes.index(c)
            lacking = [name for name in ("train", "val", "test") if len(getattr(splits, name)) and not (ds.labels[getattr(splits, name)] == ci).any()]
            if lacking and n < MIN_PER_CLASS:
                why = "too few images to put one in each split" if n < 3 else "the split left none there"
                res.warnings.append(f"class '{c}' ({n} image(s)) has none in {'/'.join(lacking)} ({why}); " + ("its test scores are missing" if "test" in lacking else "model selection ignores it"))

    _identical_copies(ds, splits, res, lambda i: ds.classes[ds.labels[i]], "filed under different classes (contradictory labels)")
    return res


def _identical_copies(ds: ItemDataset, splits: Splits | None, res: CheckResult, label_of, differ: str) -> None:
    """Byte-identical items: counted, those whose labels (`label_of(i)`) differ, and those the
    split put in more than one split (leakage)."""
    unit = ds.unit
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(ds.keys):
        by_key[k].append(i)
    where = splits.assignment(len(ds)) if splits is not None else None
    for members in (m for m in by_key.values() if len(m) > 1):
        res.duplicates += len(members)
        items = [ds.display_path(i) for i in members]
        labels = {label_of(i) for i in members}
        if len(labels) > 1:
            res.contradictions.append({"items": items, "labels": sorted(labels)})
        if where is not None and len({where[i] for i in members}) > 1:
            res.leakage.append({"items": items, "splits": [where[i] for i in members]})
    if res.duplicates:
        res.warnings.append(f"{res.duplicates} items are identical copies of another item (kept in the same split unless the source came split)")
    if res.contradictions:
        res.warnings.append(f"{len(res.contradictions)} identical {unit}(s) {differ}, e.g. {res.contradictions[0]['items'][:2]}")
    if res.leakage:
        res.warnings.append(f"{len(res.leakage)} identical {unit}(s) appear in more than one split (leakage inflates test scores), e.g. {res.leakage[0]['items'][:2]}")


def _check_multilabel(ds: ItemDataset, splits: Splits | None) -> CheckResult:
    """The checks of label sets: at least 2 labels to learn, rare and always co-occurring labels
    (data/multilabel.py `multilabel_checks`), skipped rows, duplicates and leakage."""
    from .multilabel import multilabel_checks

    unit, counts = ds.unit, ds.class_counts()
    where = ds.root or ds.name
    present = [c for c, n in counts.items() if n > 0]
    if len(present) < 2:
        raise TransferkitError(f"{where}: found {len(present)} label(s) on its {unit}s ({', '.join(present) or 'none'}); a multi-label classifier needs at least 2 labels in the label column")
    if splits is not None and int((ds.Y[splits.train].sum(0) > 0).sum()) < 1:
        raise TransferkitError(f"{where}: no training {unit} has a label; add labelled training {unit}s")
    res = CheckResult()
    res.skipped = [{"item": s.item, "reason": s.reason} for s in ds.skipped]
    res.ignored = [{"item": s.item, "reason": s.reason} for s in getattr(ds, "ignored", [])]
    if ds.skipped:
        res.warnings.append(f"{len(ds.skipped)} file(s) or row(s) skipped: unreadable, empty, not {unit}s, blank or duplicate rows (each listed with its reason in checks.json)")
    if splits is not None:
        res.warnings.extend(multilabel_checks(ds.Y, ds.classes, splits))
    res.warnings.extend(ds.notes)
    _identical_copies(ds, splits, res, lambda i: "|".join(ds.classes[j] for j in np.flatnonzero(ds.Y[i])), "with different label sets")
    return res
