"""Every option acts or is refused, walked over the whole matrix: each CLI option x each
strategy (and the variants whose rules differ: the probe's mlp head, unaugmented images) x each
kind of data.

- acts: the run reads the option's config field (every field is read where it is used, after
  the options were checked; `options.py` says where each applies) — for every field the table
  accepts, the tiny run must read it, and for every field the table refuses, it must not;
- refused: given where the table says it does nothing, `transferkit train` stops before writing
  anything, with one line naming the option and what it applies to.
"""
from __future__ import annotations

import dataclasses

import pytest

import transferkit as tk
from transferkit import cli
from transferkit import options as rules
from transferkit.config import TrainConfig
from transferkit.strategies import STRATEGIES

from conftest import write_class_folder
from textdata import make_texts, make_tiny_bert, write_csv

pytestmark = pytest.mark.slow

# a value that differs from the default, as the CLI takes it (the config field it sets: the key)
CLI = {
    "backbone": None, "weights": None, "pretrained": ["--no-pretrained"], "head": ["--head", "mlp"], "feature_power": ["--feature-power", "sqrt"],
    "refit": ["--no-refit"], "hidden": ["--hidden", "8"], "batch_norm": ["--batch-norm"], "dropout": ["--dropout", "0.05"], "image_size": ["--image-size", "48"],
    "crop_pct": ["--crop-pct", "0.9"], "batch_size": ["--batch-size", "12"], "engine": ["--engine", "torch"], "cache_dir": None,
    "max_length": ["--max-length", "10"], "device": ["--device", "cpu"], "precision": ["--precision", "fp32"], "grad_accum": ["--grad-accum", "2"],
    "activation_checkpointing": ["--activation-checkpointing"], "epochs": ["--epochs", "1"], "lr": ["--lr", "0.002"], "weight_decay": ["--weight-decay", "0.02"],
    "warmup_epochs": ["--warmup-epochs", "0.5"], "label_smoothing": ["--label-smoothing", "0.05"], "patience": ["--patience", "1"],
    "body_lr_mult": ["--body-lr-mult", "0.5"], "layer_decay": ["--layer-decay", "0.7"], "unfreeze": ["--unfreeze", "1"], "head_epochs": ["--head-epochs", "1"],
    "augment": ["--augment", "strong"], "train_bn": ["--train-bn"], "workers": ["--workers", "0"], "threshold": ["--threshold", "global"],
}  # fmt: skip
# checked where the data is read (test_bad_data, test_text_data; label sets: test_multilabel_train)
LOAD_OPTIONS = {"data_root", "text_column", "label_column", "multi_label", "label_sep"}
EVERY_RUN = {name for name, r in rules.RULES.items() if r is rules.ALWAYS}
# (strategy, options that select a variant with other rules)
VARIANTS = {
    "image": [("probe", {}), ("probe", {"head": "mlp"}), ("head", {}), ("head", {"augment": "none"}), ("partial", {}), ("partial", {"augment": "none"}), ("finetune", {}), ("scratch", {}), ("mlp", {})],
    "text": [("probe", {}), ("probe", {"head": "mlp"}), ("head", {}), ("partial", {}), ("finetune", {}), ("tfidf", {})],
}
BOTH = [(m, s, v) for m, vs in VARIANTS.items() for s, v in vs]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    return {
        "image": write_class_folder(root / "photos", per_class=10),
        "text": write_csv(root / "texts.csv", make_texts(12)),
        "bert": make_tiny_bert(root / "bert", layers=2, hidden=16),
        "root": root,
    }


def _base(modality: str, strategy: str, data) -> dict:
    """Options that keep each run tiny (given where they apply)."""
    s = STRATEGIES[strategy]
    opts = {}
    if s.uses_backbone:
        opts["backbone"] = "test_efficientnet" if modality == "image" else str(data["bert"])
        opts["pretrained"] = False
    if modality == "image":
        opts["image_size"] = 32
    return opts


class _Reads:
    """Records which TrainConfig fields are read while `on` (to_dict/validate excluded)."""

    def __init__(self):
        self.on, self.fields, self.target = False, set(), None


@pytest.fixture
def reads(monkeypatch):
    rec = _Reads()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    original_get = object.__getattribute__

    def getattribute(self, name):
        if rec.on and name in names and self is rec.target:  # the run's own config (not a run folder reloaded from disk)
            rec.fields.add(name)
        return original_get(self, name)

    def quiet(fn):
        def wrapper(self, *a, **k):
            was, rec.on = rec.on, False
            try:
                return fn(self, *a, **k)
            finally:
                rec.on = was
        return wrapper

    monkeypatch.setattr(TrainConfig, "__getattribute__", getattribute)
    monkeypatch.setattr(TrainConfig, "to_dict", quiet(TrainConfig.to_dict))
    monkeypatch.setattr(TrainConfig, "validate", quiet(TrainConfig.validate))
    import transferkit.pipeline as pipeline

    real = pipeline.prepare_config

    def prepared(*a, **k):
        cfg = real(*a, **k)
        rec.on, rec.target = True, cfg  # from here on, what the run reads is what acts
        return cfg

    monkeypatch.setattr(pipeline, "prepare_config", prepared)
    return rec


@pytest.mark.parametrize("modality,strategy,variant", BOTH, ids=[f"{m}-{s}" + "".join(f"-{k}={v}" for k, v in v.items()) for m, s, v in BOTH])
def test_an_option_acts_exactly_where_the_table_says(data, reads, tmp_path, modality, strategy, variant):
    opts = {**_base(modality, strategy, data), **variant, "strategy": strategy, "out": str(tmp_path / "run"), "cache_dir": str(data["root"] / "cache")}
    if STRATEGIES[strategy].trains_network or variant.get("head") == "mlp":
        opts["epochs"] = 2
    if strategy in ("partial", "finetune"):
        opts["head_epochs"] = 1
    opts = {k: v for k, v in opts.items() if k in ("strategy", "out") or rules.applies(k, STRATEGIES[strategy], modality, TrainConfig(data="x", **{**opts, "strategy": strategy}).resolve(tk_modality(modality), STRATEGIES[strategy]))}
    tk.train(str(data[modality]), **opts)
    cfg = tk.load_run(tmp_path / "run").config
    checked = set(CLI) | {"backbone", "weights", "cache_dir"}
    for name in sorted(checked):
        want = rules.applies(name, STRATEGIES[strategy], modality, cfg)
        assert want == (name in reads.fields), f"{name}: the table says {'it acts' if want else 'refuse it'} for {strategy} {variant} on {modality}, but the run {'never read' if want else 'read'} it"
    assert EVERY_RUN - LOAD_OPTIONS - {"out", "strategy"} <= reads.fields | LOAD_OPTIONS


def tk_modality(name):
    from transferkit import modality

    return modality.get(name)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_an_option_that_does_nothing_is_refused_before_anything_is_written(data, tmp_path, capsys, modality):
    """Every (option, strategy variant) the table refuses: one line, exit 2, nothing written."""
    refused = 0
    for strategy, variant in VARIANTS[modality]:
        s = STRATEGIES[strategy]
        base = {**_base(modality, strategy, data), **variant}
        cfg = TrainConfig(data="x", strategy=strategy, **base).resolve(tk_modality(modality), s)
        flags = ["--strategy", strategy] + [a for k, v in variant.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        if s.uses_backbone:
            flags += ["--backbone", base["backbone"], "--no-pretrained"]
        if modality == "image":
            flags += ["--image-size", "32"]
        for name, args in CLI.items():
            if args is None or rules.applies(name, s, modality, cfg) or name in variant or (name == "pretrained" and s.uses_backbone) or (name == "image_size" and modality == "image"):
                continue
            out = tmp_path / f"run-{strategy}-{name}"
            rc = cli.main(["train", str(data[modality]), *flags, *args, "--out", str(out)])
            err = capsys.readouterr().err
            lines = [x for x in err.strip().splitlines() if x.startswith("transferkit:")]
            assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (strategy, name, err)
            flag = "--" + name.replace("_", "-")
            assert f"{flag} does nothing for --strategy {strategy}" in lines[0] and "applies to" in lines[0], (name, lines[0])
            assert not out.exists()
            refused += 1
    assert refused >= 40 if modality == "image" else refused >= 40, refused
