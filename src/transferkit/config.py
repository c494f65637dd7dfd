"""Typed, validated configuration, saved with every run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import TransferkitError

HEADS = ("linear", "mlp")
FEATURE_POWERS = ("auto", "none", "sqrt")  # see heads.POWERS
AUGMENTS = ("none", "light", "strong")
CLASS_WEIGHTS = ("none", "balanced")
ENGINES = ("auto", "torch", "onnx")  # see features/engines.py
CALIBRATIONS = ("temperature", "none")  # see calibrate.py
TTAS = ("none", "flip", "flip+crops")  # see tta.py
THRESHOLDS = ("per_label", "global")  # multi-label decision thresholds, chosen on validation (evaluate_multilabel.choose_thresholds)


@dataclass
class TrainConfig:
    data: str  # folder, CSV or built-in dataset name
    data_root: str | None = None  # folder that CSV paths are relative to and must stay inside; None: the CSV's folder
    strategy: str = "probe"  # strategies/registry.py: probe | head | partial | finetune; images: scratch | mlp baselines; texts: tfidf baseline
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
    batch_size: int = 32  # images or texts per backbone forward pass (and per training step, per process)
    device: str = "auto"  # auto (CUDA, then Apple MPS, then CPU) | cpu | cuda | cuda:N | mps; recorded with the reason
    precision: str = "auto"  # auto (bf16 autocast on GPUs that have it, else fp16 + gradient scaler; fp32 on CPU) | fp32 | bf16 | fp16
    grad_accum: int = 1  # micro-batches per optimizer step: the same update as a batch this many times larger
    activation_checkpointing: bool = False  # partial/finetune: recompute the backbone's activations in the backward pass (less memory, ~30% more time)
    engine: str = "auto"  # image feature extraction: auto (measured per backbone) | torch (eager, channels-last) | onnx (ONNX Runtime)
    text_column: str | None = None  # texts: the CSV/TSV/JSONL column with the text; None: found from the header
    label_column: str | None = None  # texts: the column with the label; None: found from the header
    multi_label: bool | None = None  # tables: True reads the label column as label sets (several labels per item); None: the data's shape decides (data/label_sets.py)
    label_sep: str | None = None  # tables: the separator between an item's labels ('|', ';', ...); None: found from the data; implies multi-label
    threshold: str = "per_label"  # multi-label: per_label (each label's F1-best threshold on validation) | global (one threshold, micro-F1-best on validation)
    max_length: int | None = None  # texts: tokens kept per text (longer ones truncated); None: the model's own
    cache_dir: str | None = None  # feature cache root; None: $TRANSFERKIT_CACHE or ~/.cache/transferkit
    out: str | None = None  # run folder; None: runs/<data>-<strategy>-<backbone>
    # --- training (head, partial, finetune; images also scratch, mlp) ---
    epochs: int | None = None  # epochs in all (finetune through the frozen body: head_epochs of them); None: the strategy's default (strategies/registry.py)
    lr: float = 1e-3  # peak learning rate of the new head (AdamW, warm-up then cosine); scratch/mlp: of the whole network
    body_lr_mult: float | None = None  # backbone learning rate = lr × this (the top layer/block; lower ones decay further); None: images 0.2, texts 0.05
    layer_decay: float | None = None  # each backbone layer/block below the top learns at this times the rate of the one above; None: images 0.9, texts 0.8
    unfreeze: int = 2  # partial: how many top encoder layers (texts) or backbone blocks (images, timm's group_matcher) train
    dropout: float | None = None  # dropout before the output layer (dense heads; scratch 0.3, mlp 0.2); None: the strategy's
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not applied to biases and norm layers)
    warmup_epochs: float | None = None  # linear learning-rate warm-up (per stage), then cosine decay; None: images 1, texts 0.3
    label_smoothing: float | None = None  # cross-entropy label smoothing; None: images 0.1, texts 0
    class_weight: str = "none"  # none | balanced: loss weights n_train / (classes * n_class) from the training split (probe and tfidf: sample weights)
    patience: int | None = None  # early stopping: epochs without a lower val loss before stopping; 0 disables; None: 3 (probe mlp head: 8)
    augment: str | None = None  # images: none | light | strong training augmentation; None: the strategy's default
    batch_norm: bool = False  # batch-norm after the dense head's hidden ReLU
    head_epochs: int | None = None  # partial/finetune: epochs training only the head first; None: images 2 (through the frozen body), texts 30 (on cached features)
    train_bn: bool = False  # images: update batch-norm statistics of trainable pretrained layers (False keeps ImageNet's)
    workers: int | None = None  # DataLoader processes for decoding/augmenting; None: from the cores and the device (loop/data.py)
    audit: bool = True  # runs with cached features: suspected label errors (confident learning) and near-duplicates, in the run folder and its page
    near_dup_threshold: float = 0.95  # cosine similarity of backbone features above which two items count as near-duplicates
    calibrate: str = "temperature"  # temperature: fit a temperature on validation and apply it in the saved model | none
    tta: str = "none"  # images: test-time augmentation for evaluation, predict, serve and export: none | flip | flip+crops
    extra: dict = field(default_factory=dict)  # resolved facts recorded by the run (engine, sizes)

    def validate(self) -> "TrainConfig":
        from .strategies.registry import get

        get(self.strategy)  # an unknown name is refused with a "did you mean"
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
        if not (self.lr > 0 and body_ok and (self.dropout is None or 0 <= self.dropout < 1) and self.unfreeze >= 0):
            raise TransferkitError("--lr and --body-lr-mult must be positive, --layer-decay in (0, 1], --dropout in [0, 1), --unfreeze ≥ 0")
        from .loop.devices import PRECISIONS

        if self.precision not in PRECISIONS:
            raise TransferkitError(f"--precision {self.precision}: choose one of {', '.join(PRECISIONS)}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or str(self.device).startswith("cuda:")):
            raise TransferkitError(f"--device {self.device}: choose auto, cpu, cuda, cuda:N or mps")
        if self.engine not in ENGINES:
            raise TransferkitError(f"--engine {self.engine}: unknown engine (choices: {', '.join(ENGINES)})")
        if self.batch_size < 1 or self.hidden < 1:
            raise TransferkitError("--batch-size and --head-hidden must be positive")
        checks = [
            ("weight-decay", self.weight_decay, 0 <= self.weight_decay < 1, "between 0 and 1 (e.g. 0.01)"),
            ("warmup-epochs", self.warmup_epochs, self.warmup_epochs is None or self.warmup_epochs >= 0, "0 or more"),
            ("label-smoothing", self.label_smoothing, self.label_smoothing is None or 0 <= self.label_smoothing < 1, "between 0 and 1 (e.g. 0.1)"),
            ("patience", self.patience, self.patience is None or self.patience >= 0, "0 (no early stopping) or more"),
            ("head-epochs", self.head_epochs, self.head_epochs is None or self.head_epochs >= 0, "0 or more"),
            ("workers", self.workers, self.workers is None or self.workers >= 0, "0 (load in the main process) or more"),
            ("near-dup-threshold", self.near_dup_threshold, 0.5 <= self.near_dup_threshold <= 1.0, "a cosine similarity between 0.5 and 1 (e.g. 0.95)"),
            ("grad-accum", self.grad_accum, isinstance(self.grad_accum, int) and self.grad_accum >= 1, "a whole number, 1 or more"),
        ]
        for flag, v, ok, want in checks:
            if not ok:
                raise TransferkitError(f"--{flag} {v}: must be {want}")
        for flag, v, choices in (("augment", self.augment, AUGMENTS), ("class-weight", self.class_weight, CLASS_WEIGHTS), ("calibrate", self.calibrate, CALIBRATIONS), ("tta", self.tta, TTAS), ("threshold", self.threshold, THRESHOLDS)):
            if v is not None and v not in choices:
                raise TransferkitError(f"--{flag} {v}: choose one of {', '.join(choices)}")
        if self.label_sep is not None and (not isinstance(self.label_sep, str) or not self.label_sep or self.label_sep != self.label_sep.strip() or len(self.label_sep) > 3):
            raise TransferkitError(f"--label-sep {self.label_sep!r}: give the 1-3 characters between an item's labels, e.g. '|' or ';'")
        if self.label_sep is not None and self.multi_label is False:
            raise TransferkitError("--label-sep splits a label column into several labels: it contradicts --no-multi-label; drop one of them")
        return self

    def resolve(self, modality, strategy) -> "TrainConfig":
        """Fill the fields left unset from the strategy's defaults for this kind of data, then
        the modality's (strategies/registry.py, modality/*.py), so config.json says what ran."""
        from .strategies.registry import default

        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None and f.name not in _NO_DEFAULT:
                v = default(strategy.name, modality.name, f.name)
                if v is None:
                    v = modality.defaults.get(f.name)
                if v is not None:
                    setattr(self, f.name, v)
        if strategy.uses_backbone:
            self.backbone = self.backbone or modality.default_backbone
        else:
            self.backbone, self.pretrained, self.weights = "none", False, None
        if strategy.body != "frozen" and self.augment not in (None, "none") and self.head_epochs and self.epochs and self.head_epochs >= self.epochs:
            self.head_epochs = self.epochs - 1  # through the body, the warm-up counts in --epochs: keep one epoch for the body
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# fields whose None is meaningful (not "use the default")
_NO_DEFAULT = {"multi_label", "label_sep", "data_root", "weights", "image_size", "crop_pct", "text_column", "label_column", "max_length", "cache_dir", "out", "workers", "backbone"}
