"""Typed, validated configuration, saved with every run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import TransferkitError

STRATEGIES = ("probe", "head", "partial", "finetune", "scratch", "mlp", "tfidf")
TEXT_ONLY = ("tfidf",)  # baselines for texts
IMAGE_ONLY = ("scratch", "mlp")  # baselines for images (trained from random init)
TRAINED = ("head", "partial", "finetune", "scratch", "mlp")  # image strategies that run the training loop (train/)
NO_BACKBONE = ("scratch", "mlp", "tfidf")  # baselines without a pretrained backbone
HEADS = ("linear", "mlp")
FEATURE_POWERS = ("auto", "none", "sqrt")  # see heads.POWERS
AUGMENTS = ("none", "light", "strong")
CLASS_WEIGHTS = ("none", "balanced")

# What `epochs` / `augment` = None resolve to for IMAGE data, per strategy (texts: see
# text_strategies.py): chosen for photos in general (small data, a laptop CPU): few epochs with
# early stopping for pretrained bodies, more for networks from random init.
STRATEGY_DEFAULTS = {
    "head": dict(epochs=10, augment="light"),
    "partial": dict(epochs=10, augment="light"),
    "finetune": dict(epochs=10, augment="light"),
    "scratch": dict(epochs=30, augment="light"),
    "mlp": dict(epochs=30, augment="none"),
}
# What `body_lr_mult` / `layer_decay` = None resolve to, per kind of data. The decay is per
# block (timm's fine-grained group_matcher) for images and per encoder layer for texts: an
# ImageNet CNN has ~17 blocks (EfficientNet, MobileNetV3, ResNet-50), MiniLM-L6 6 layers. For
# images the top block learns at lr x 0.2 and the stem at ~lr x 0.2 x 0.9^16 = lr / 27 (close
# to fastai's slice(lr/100, lr)); 0.05 and 0.8 would leave the lower half of a CNN at < 1e-5,
# i.e. frozen. For texts the top layer gets lr x 0.05 = 5e-5, the usual BERT fine-tuning rate.
BODY_LR_DEFAULTS = {"image": dict(body_lr_mult=0.2, layer_decay=0.9), "text": dict(body_lr_mult=0.05, layer_decay=0.8)}
ENGINES = ("auto", "torch", "onnx")  # see features/engines.py


@dataclass
class TrainConfig:
    data: str  # folder, CSV or built-in dataset name
    data_root: str | None = None  # folder that CSV paths are relative to and must stay inside; None: the CSV's folder
    strategy: str = "probe"  # probe | head | partial | finetune; images: scratch | mlp baselines; texts: tfidf baseline
    backbone: str | None = None  # `transferkit backbones` lists them; None: efficientnet_lite0 for images, minilm-l6 for texts; "none" for baselines
    weights: str | None = None  # local .safetensors / state-dict file for the backbone
    pretrained: bool = True  # False: random backbone weights (tests, ablations)
    head: str = "linear"  # probe classifier: linear (logistic regression) or mlp (1024 ReLU units)
    feature_power: str = "auto"  # probe linear head: none | sqrt (signed square root of the features) | auto: the one with the lower validation log-loss
    refit: bool = True  # probe linear head: after C and the power are chosen on validation, fit again on train + validation (validation metrics stay those of the fit that did not see it)
    hidden: int = 1024  # units of the dense head's hidden layer (probe mlp head, head/partial/finetune)
    image_size: int | None = None  # input side in pixels; None: the backbone's own (probe), or chosen from the data's native size (trained strategies)
    crop_pct: float | None = 1.0  # centre share of each photo's shorter side fed to a pretrained backbone; 1.0: the whole photo (default), None: the backbone's own (0.875 for ImageNet models)
    val_size: float = 0.15  # fraction of items for validation (model selection)
    test_size: float = 0.15  # fraction for the held-out test set (ignored when the data comes split)
    seed: int = 0  # drives the split and every random choice in training
    batch_size: int = 32  # images or texts per backbone forward pass (and per training step)
    engine: str = "auto"  # image feature extraction: auto (measured per backbone) | torch (eager, channels-last) | onnx (ONNX Runtime)
    text_column: str | None = None  # texts: the CSV/TSV/JSONL column with the text; None: found from the header
    label_column: str | None = None  # texts: the column with the label; None: found from the header
    max_length: int | None = None  # texts: tokens kept per text (longer ones truncated); None: the model's own
    cache_dir: str | None = None  # feature cache root; None: $TRANSFERKIT_CACHE or ~/.cache/transferkit
    out: str | None = None  # run folder; None: runs/<data>-<strategy>-<backbone>
    # --- training (head, partial, finetune; images also scratch, mlp) ---
    epochs: int | None = None  # epochs in all (image finetune: head_epochs of them with the body frozen); None: the strategy's default
    lr: float = 1e-3  # peak learning rate of the new head (AdamW, warm-up then cosine); scratch/mlp: of the whole network
    body_lr_mult: float | None = None  # backbone learning rate = lr × this (the top layer/block; lower ones decay further); None: BODY_LR_DEFAULTS
    layer_decay: float | None = None  # each backbone layer/block below the top learns at this times the rate of the one above; None: BODY_LR_DEFAULTS
    unfreeze: int = 2  # partial: how many top encoder layers (texts) or backbone blocks (images, timm's group_matcher) train
    dropout: float = 0.1  # dropout before the head's output layer (head / partial / finetune)
    weight_decay: float = 0.01  # images: AdamW decoupled weight decay (not applied to biases and norm layers)
    warmup_epochs: float = 1.0  # images: linear learning-rate warm-up (per stage), then cosine decay to ~0
    label_smoothing: float = 0.1  # images: cross-entropy label smoothing, 0 to disable
    class_weight: str = "none"  # images: none | balanced: loss weights n_train / (classes * n_class) from the training split
    patience: int = 3  # images: early stopping: epochs without a lower val loss before stopping; 0 disables
    augment: str | None = None  # images: none | light | strong training augmentation; None: STRATEGY_DEFAULTS
    batch_norm: bool = False  # images: batch-norm after the head's hidden ReLU
    head_epochs: int = 2  # image finetune: stage-1 epochs training only the head, body frozen
    train_bn: bool = False  # update batch-norm statistics of trainable pretrained layers (False keeps ImageNet's)
    workers: int | None = None  # DataLoader processes for decoding/augmenting; None: half the CPUs, at most 4
    extra: dict = field(default_factory=dict)  # resolved facts recorded by the run (engine, sizes)

    def validate(self) -> "TrainConfig":
        import difflib

        if self.strategy not in STRATEGIES:
            close = difflib.get_close_matches(self.strategy, STRATEGIES, n=1)
            raise TransferkitError(f"unknown strategy '{self.strategy}'" + (f"; did you mean {close[0]}?" if close else "") + f" (choices: {', '.join(STRATEGIES)})")
        if self.head not in HEADS:
            raise TransferkitError(f"unknown head '{self.head}' (choices: {', '.join(HEADS)})")
        if self.feature_power not in FEATURE_POWERS:
            raise TransferkitError(f"--feature-power {self.feature_power}: choose one of {', '.join(FEATURE_POWERS)}")
        for name in ("val_size", "test_size"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise TransferkitError(f"--{name.replace('_', '-')} {v}: must be a fraction between 0 and 1 (e.g. 0.15)")
        if self.val_size + self.test_size >= 1.0:
            raise TransferkitError(f"--val-size {self.val_size} + --test-size {self.test_size} leave nothing to train on; keep their sum below 1")
        if self.crop_pct is not None and not 0.3 <= self.crop_pct <= 1.0:
            raise TransferkitError(f"--crop-pct {self.crop_pct}: use a share between 0.3 and 1.0 of the image's shorter side (1.0 keeps the whole photo)")
        if self.image_size is not None and not 16 <= self.image_size <= 1024:
            raise TransferkitError(f"--image-size {self.image_size}: use a side between 16 and 1024 pixels")
        if self.max_length is not None and self.max_length < 4:
            raise TransferkitError(f"--max-length {self.max_length}: keep at least 4 tokens per text (e.g. 128 or 256)")
        if self.epochs is not None and self.epochs < 1:
            raise TransferkitError(f"--epochs {self.epochs}: train for at least 1 epoch")
        body_ok = (self.body_lr_mult is None or self.body_lr_mult > 0) and (self.layer_decay is None or 0 < self.layer_decay <= 1)
        if not (self.lr > 0 and body_ok and 0 <= self.dropout < 1 and self.unfreeze >= 0):
            raise TransferkitError("--lr and --body-lr-mult must be positive, --layer-decay in (0, 1], --dropout in [0, 1), --unfreeze ≥ 0")
        if self.engine not in ENGINES:
            raise TransferkitError(f"--engine {self.engine}: unknown engine (choices: {', '.join(ENGINES)})")
        if self.batch_size < 1 or self.hidden < 1:
            raise TransferkitError("--batch-size and --head-hidden must be positive")
        checks = [
            ("weight-decay", self.weight_decay, 0 <= self.weight_decay < 1, "between 0 and 1 (e.g. 0.01)"),
            ("warmup-epochs", self.warmup_epochs, self.warmup_epochs >= 0, "0 or more"),
            ("label-smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "between 0 and 1 (e.g. 0.1)"),
            ("patience", self.patience, self.patience >= 0, "0 (no early stopping) or more"),
            ("head-epochs", self.head_epochs, self.head_epochs >= 0, "0 or more"),
            ("workers", self.workers, self.workers is None or self.workers >= 0, "0 (load in the main process) or more"),
        ]
        for flag, v, ok, want in checks:
            if not ok:
                raise TransferkitError(f"--{flag} {v}: must be {want}")
        for flag, v, choices in (("augment", self.augment, AUGMENTS), ("class-weight", self.class_weight, CLASS_WEIGHTS)):
            if v is not None and v not in choices:
                raise TransferkitError(f"--{flag} {v}: choose one of {', '.join(choices)}")
        return self

    def resolve(self, kind: str = "image") -> "TrainConfig":
        """Fill the defaults that depend on the data (body learning rates) and, for images, on
        the strategy (epochs, augment), so config.json says what ran."""
        for k, v in BODY_LR_DEFAULTS[kind].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if kind != "image":
            return self
        for k, v in STRATEGY_DEFAULTS.get(self.strategy, {}).items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.strategy == "finetune" and self.head_epochs >= self.epochs:
            self.head_epochs = self.epochs - 1  # keep at least one epoch for the whole network
        if self.strategy in NO_BACKBONE:
            self.backbone, self.pretrained, self.weights = "none", False, None
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
