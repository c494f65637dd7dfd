"""Typed, validated configuration, saved with every run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import TransferkitError

STRATEGIES = ("probe", "head", "partial", "finetune", "tfidf")
TEXT_ONLY = ("tfidf",)  # baselines for texts (images get scratch / mlp)
HEADS = ("linear", "mlp")


@dataclass
class TrainConfig:
    data: str  # folder, CSV or built-in dataset name
    data_root: str | None = None  # folder that CSV paths are relative to and must stay inside; None: the CSV's folder
    strategy: str = "probe"  # probe | head | partial | finetune; tfidf (texts): TF-IDF n-grams + logistic regression
    backbone: str | None = None  # `transferkit backbones` lists them; None: efficientnet_lite0 for images, minilm-l6 for texts
    weights: str | None = None  # local .safetensors / state-dict file for the backbone
    pretrained: bool = True  # False: random backbone weights (tests, ablations)
    head: str = "linear"  # probe classifier: linear (logistic regression) or mlp (1024 ReLU units)
    hidden: int = 1024  # units of the mlp head's hidden layer
    image_size: int | None = None  # backbone input side in pixels; None: the backbone's own
    val_size: float = 0.15  # fraction of items for validation (model selection)
    test_size: float = 0.15  # fraction for the held-out test set (ignored when the data comes split)
    seed: int = 0  # drives the split and every random choice in training
    batch_size: int = 32  # images or texts per backbone forward pass (and per training step)
    text_column: str | None = None  # texts: the CSV/TSV/JSONL column with the text; None: found from the header
    label_column: str | None = None  # texts: the column with the label; None: found from the header
    max_length: int | None = None  # texts: tokens kept per text (longer ones truncated); None: the model's own
    epochs: int | None = None  # training epochs; None: the strategy's default (head 30 on cached features, partial/finetune 3)
    lr: float = 1e-3  # peak learning rate of the new head (AdamW, warm-up then cosine)
    body_lr_mult: float = 0.05  # backbone learning rate = lr × this (the top layer; lower layers decay further)
    layer_decay: float = 0.8  # each encoder layer below the top learns at this times the rate of the one above
    unfreeze: int = 2  # partial: how many top encoder layers train
    dropout: float = 0.1  # dropout before the head's output layer (head / partial / finetune)
    cache_dir: str | None = None  # feature cache root; None: $TRANSFERKIT_CACHE or ~/.cache/transferkit
    out: str | None = None  # run folder; None: runs/<data>-<strategy>-<backbone>
    extra: dict = field(default_factory=dict)  # resolved facts recorded by the run (engine, sizes)

    def validate(self) -> "TrainConfig":
        import difflib

        if self.strategy not in STRATEGIES:
            close = difflib.get_close_matches(self.strategy, STRATEGIES, n=1)
            raise TransferkitError(f"unknown strategy '{self.strategy}'" + (f"; did you mean {close[0]}?" if close else "") + f" (choices: {', '.join(STRATEGIES)})")
        if self.head not in HEADS:
            raise TransferkitError(f"unknown head '{self.head}' (choices: {', '.join(HEADS)})")
        for name in ("val_size", "test_size"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise TransferkitError(f"--{name.replace('_', '-')} {v}: must be a fraction between 0 and 1 (e.g. 0.15)")
        if self.val_size + self.test_size >= 1.0:
            raise TransferkitError(f"--val-size {self.val_size} + --test-size {self.test_size} leave nothing to train on; keep their sum below 1")
        if self.image_size is not None and not 16 <= self.image_size <= 1024:
            raise TransferkitError(f"--image-size {self.image_size}: use a side between 16 and 1024 pixels")
        if self.max_length is not None and self.max_length < 4:
            raise TransferkitError(f"--max-length {self.max_length}: keep at least 4 tokens per text (e.g. 128 or 256)")
        if self.epochs is not None and self.epochs < 1:
            raise TransferkitError(f"--epochs {self.epochs}: train for at least 1 epoch")
        if not (self.lr > 0 and self.body_lr_mult > 0 and 0 < self.layer_decay <= 1 and 0 <= self.dropout < 1 and self.unfreeze >= 0):
            raise TransferkitError("--lr and --body-lr-mult must be positive, --layer-decay in (0, 1], --dropout in [0, 1), --unfreeze ≥ 0")
        if self.batch_size < 1 or self.hidden < 1:
            raise TransferkitError("--batch-size and --hidden must be positive")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
