"""The one training loop and what it needs: callbacks, optimizer groups and schedule,
freezing, augmentation and loaders, and `fit(ctx, plan)` that strategies call."""
from .callbacks import BestWeights, Callback, Checkpoint, EarlyStopping, ProgressLog, Unfreeze, load_checkpoint
from .freeze import freeze, keep_bn_stats, train_mode, unfreeze
from .loop import HISTORY_COLUMNS, Loop
from .network import Plan, fit
from .optim import Group, Schedule, adamw, backbone_blocks, balanced_class_weights, discriminative_lrs

__all__ = [
    "BestWeights", "Callback", "Checkpoint", "EarlyStopping", "Group", "HISTORY_COLUMNS", "Loop", "Plan", "ProgressLog",
    "Schedule", "Unfreeze", "adamw", "backbone_blocks", "balanced_class_weights", "discriminative_lrs", "fit", "freeze",
    "keep_bn_stats", "load_checkpoint", "train_mode", "unfreeze",
]  # fmt: skip
