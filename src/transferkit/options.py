"""Every option acts or is refused: which `TrainConfig` fields apply to which strategy and kind
of data, in one table, and the one-line refusal of an option given where it would do nothing.

A rule is a predicate of (strategy, modality name, resolved config). `check` runs before any
work is done (nothing is written when it refuses). `tests/test_options_matrix.py` walks every
option x strategy x modality and checks that an option the table accepts is read by the run
and one it refuses stops the command."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import TransferkitError


def _features(s, m, c) -> bool:
    """The run extracts (and caches) backbone features: probe; head, partial and finetune when
    the training inputs are not augmented (texts always)."""
    if s.name == "probe":
        return True
    return s.name in ("head", "partial", "finetune") and c.augment in (None, "none")


def _loop(s, m, c) -> bool:
    """The run trains a network in the loop (the probe's mlp head too)."""
    return s.trains_network or (s.name == "probe" and c.head == "mlp")


@dataclass(frozen=True)
class Rule:
    applies: Callable  # (strategy, modality name, config) -> bool
    to: str  # what it applies to, for the refusal


ALWAYS = Rule(lambda s, m, c: True, "every run")
RULES: dict[str, Rule] = {
    "backbone": Rule(lambda s, m, c: s.uses_backbone, "strategies with a pretrained backbone (not the baselines)"),
    "weights": Rule(lambda s, m, c: s.uses_backbone, "strategies with a pretrained backbone (not the baselines)"),
    "pretrained": Rule(lambda s, m, c: s.uses_backbone, "strategies with a pretrained backbone (not the baselines)"),
    "head": Rule(lambda s, m, c: s.name == "probe", "--strategy probe"),
    "feature_power": Rule(lambda s, m, c: s.name == "probe" and c.head == "linear", "the probe's linear head"),
    "refit": Rule(lambda s, m, c: s.name == "probe" and c.head == "linear", "the probe's linear head"),
    "hidden": Rule(lambda s, m, c: s.name in ("head", "partial", "finetune") or (s.name == "probe" and c.head == "mlp"), "dense heads: head, partial, finetune, probe --head mlp"),
    "batch_norm": Rule(lambda s, m, c: s.name in ("head", "partial", "finetune") or (s.name == "probe" and c.head == "mlp"), "dense heads: head, partial, finetune, probe --head mlp"),
    "dropout": Rule(lambda s, m, c: _loop(s, m, c), "strategies that train a network (and probe --head mlp)"),
    "image_size": Rule(lambda s, m, c: m == "image", "images"),
    "crop_pct": Rule(lambda s, m, c: m == "image" and s.uses_backbone, "images with a pretrained backbone"),
    "batch_size": Rule(lambda s, m, c: s.name != "tfidf", "strategies that run a network (not tfidf)"),
    "engine": Rule(lambda s, m, c: m == "image" and _features(s, m, c), "image runs that extract features: probe, and head/partial/finetune with --augment none"),
    "cache_dir": Rule(_features, "runs that extract features: probe, and head/partial/finetune without augmentation"),
    "max_length": Rule(lambda s, m, c: m == "text" and s.uses_backbone, "texts with an encoder (not tfidf)"),
    "device": Rule(lambda s, m, c: s.name != "tfidf", "strategies that run a network (tfidf runs in scikit-learn on the CPU)"),
    "precision": Rule(lambda s, m, c: s.name != "tfidf", "strategies that run a network (tfidf runs in scikit-learn on the CPU)"),
    "grad_accum": Rule(_loop, "strategies that train a network (and probe --head mlp)"),
    "activation_checkpointing": Rule(lambda s, m, c: s.name in ("partial", "finetune"), "partial and finetune (a backbone that trains)"),
    "epochs": Rule(_loop, "strategies that train a network (and probe --head mlp)"),
    "lr": Rule(_loop, "strategies that train a network (and probe --head mlp)"),
    "weight_decay": Rule(_loop, "strategies that train a network (and probe --head mlp)"),
    "warmup_epochs": Rule(_loop, "strategies that train a network (and probe --head mlp)"),
    "label_smoothing": Rule(lambda s, m, c: _loop(s, m, c) and not c.multi_label, "single-label strategies that train a network (label sets train with binary cross-entropy)"),
    "patience": Rule(_loop, "strategies that train a network (and probe --head mlp)"),
    "body_lr_mult": Rule(lambda s, m, c: s.name in ("partial", "finetune"), "partial and finetune"),
    "layer_decay": Rule(lambda s, m, c: s.name in ("partial", "finetune"), "partial and finetune"),
    "unfreeze": Rule(lambda s, m, c: s.name == "partial", "--strategy partial"),
    "head_epochs": Rule(lambda s, m, c: s.name in ("partial", "finetune"), "partial and finetune"),
    "augment": Rule(lambda s, m, c: m == "image" and s.trains_network, "image strategies that train a network"),
    "train_bn": Rule(lambda s, m, c: m == "image" and s.name in ("partial", "finetune"), "image partial and finetune (pretrained layers that train)"),
    "workers": Rule(lambda s, m, c: s.name != "tfidf", "strategies that run a network (tfidf reads texts in scikit-learn)"),
    "tta": Rule(lambda s, m, c: m == "image" and not c.multi_label, "single-label images"),
    "audit": Rule(lambda s, m, c: _features(s, m, c) and not c.multi_label, "single-label runs with cached features: probe, and head/partial/finetune without augmentation (or `transferkit audit DATA`)"),
    "near_dup_threshold": Rule(lambda s, m, c: _features(s, m, c) and not c.multi_label, "single-label runs with cached features: probe, and head/partial/finetune without augmentation (or `transferkit audit DATA`)"),
    "calibrate": Rule(lambda s, m, c: not c.multi_label, "single-label data (label sets keep each label's sigmoid and choose thresholds on validation)"),
    "threshold": Rule(lambda s, m, c: bool(c.multi_label), "multi-label data (a label column of label sets; --multi-label)"),
    "multi_label": ALWAYS,  # checked where the data is read (modality.load_dataset)
    "label_sep": ALWAYS,
    "class_weight": ALWAYS,
    "seed": ALWAYS,
    "val_size": ALWAYS,
    "test_size": ALWAYS,
    "out": ALWAYS,
    "data_root": ALWAYS,  # checked where the data is read (modality.load_dataset)
    "text_column": ALWAYS,
    "label_column": ALWAYS,
    "strategy": ALWAYS,
}


def applies(name: str, strategy, modality: str, cfg) -> bool:
    return RULES.get(name, ALWAYS).applies(strategy, modality, cfg)


def check(given, strategy, modality: str, cfg) -> None:
    """Refuse, in one line naming what it applies to, the first given option that would do
    nothing for this strategy on this kind of data."""
    for name in sorted(given):
        rule = RULES.get(name, ALWAYS)
        if not rule.applies(strategy, modality, cfg):
            raise TransferkitError(f"--{name.replace('_', '-')} does nothing for --strategy {strategy.name} on {modality} data: it applies to {rule.to}; drop it")


def inapplicable(given, strategy, modality: str, cfg) -> list[str]:
    """The given options that would do nothing here (compare drops them for this run and says so)."""
    return [n for n in sorted(given) if not applies(n, strategy, modality, cfg)]
