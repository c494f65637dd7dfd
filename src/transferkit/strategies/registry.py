"""The strategies, in one registry that says which modalities each supports, what it needs and
what its defaults are. A leaf: it imports nothing of ours, so the CLI's choices, `compare`'s
defaults, the option checks and the refusals all read it cheaply.

- probe: backbone features computed once (cached), a classifier fitted on them;
- head: backbone frozen (weights and batch-norm statistics), a new dense head trained;
- partial: the top --unfreeze blocks/layers train with the head, discriminative learning rates;
- finetune: the head warmed up on the frozen body, then everything, discriminative rates;
- scratch (a compact CNN) and mlp (a dense network on pixels): image baselines from random init;
- tfidf: the text baseline, TF-IDF n-grams + logistic regression.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field

from ..errors import TransferkitError


@dataclass(frozen=True)
class Strategy:
    name: str
    modalities: tuple[str, ...]  # the kinds of data it trains on
    summary: str  # one line, for --help and the report
    func: str  # "module:function" under transferkit.strategies, imported when it runs
    uses_backbone: bool = True  # a pretrained backbone (baselines: none)
    trains_network: bool = True  # runs the training loop: per-epoch checkpoints, --resume
    baseline: bool = False  # from-scratch / classical: what transfer is compared against
    body: str = "frozen"  # frozen | top | all: which backbone blocks train
    feature_ensembles: bool = False  # takes --backbone a+b (cached features of several backbones)
    multilabel: bool = True  # trains on label sets too (sigmoid outputs, binary cross-entropy)
    defaults: dict = field(default_factory=dict)  # {modality or "*": {config field: value}} for fields left unset


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("probe", ("image", "text"), "cached backbone features + logistic regression (or --head mlp)", "probe:probe", trains_network=False, feature_ensembles=True,
                 defaults={"*": dict(epochs=60, patience=8, dropout=0.2)}),
        Strategy("head", ("image", "text"), "frozen backbone + a new dense head (images: on augmented images)", "network:head",
                 defaults={"image": dict(epochs=10, augment="light"), "text": dict(epochs=30)}),
        Strategy("partial", ("image", "text"), "the top --unfreeze blocks/layers train with the head, at lower learning rates", "network:partial", body="top",
                 defaults={"image": dict(epochs=10, augment="light"), "text": dict(epochs=3)}),
        Strategy("finetune", ("image", "text"), "head warm-up, then the whole network with discriminative learning rates", "network:finetune", body="all",
                 defaults={"image": dict(epochs=10, augment="light"), "text": dict(epochs=3)}),
        Strategy("scratch", ("image",), "a compact CNN trained from random init (baseline)", "baselines:scratch", uses_backbone=False, baseline=True,
                 defaults={"image": dict(epochs=30, augment="light", dropout=0.3)}),
        Strategy("mlp", ("image",), "a dense network on raw pixels (baseline)", "baselines:mlp", uses_backbone=False, baseline=True,
                 defaults={"image": dict(epochs=30, augment="none", dropout=0.2)}),
        Strategy("tfidf", ("text",), "TF-IDF word and character n-grams + logistic regression (baseline)", "baselines:tfidf", uses_backbone=False, trains_network=False, baseline=True,
                 multilabel=False),
    ]
}
COMMON_DEFAULTS = dict(patience=3, dropout=0.1)  # for fields no strategy or modality sets


def get(name: str) -> Strategy:
    if name not in STRATEGIES:
        close = difflib.get_close_matches(name, list(STRATEGIES), n=1)
        raise TransferkitError(f"unknown strategy '{name}'" + (f"; did you mean {close[0]}?" if close else "") + f" (choices: {', '.join(STRATEGIES)})")
    return STRATEGIES[name]


def for_modality(modality: str) -> list[str]:
    """The strategies that train on `modality` data, in registry order (what `compare` runs by default)."""
    return [n for n, s in STRATEGIES.items() if modality in s.modalities]


def check_supports(name: str, modality: str) -> Strategy:
    s = get(name)
    if modality not in s.modalities:
        raise TransferkitError(f"strategy '{name}' is not available for {modality} data (choices: {', '.join(for_modality(modality))})")
    return s


def function(name: str):
    """The function that runs strategy `name`: ctx -> Trained."""
    module, attr = STRATEGIES[name].func.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


def default(name: str, modality: str, field_name: str):
    s = STRATEGIES[name].defaults
    for key in (modality, "*"):
        if field_name in s.get(key, {}):
            return s[key][field_name]
    return COMMON_DEFAULTS.get(field_name)
