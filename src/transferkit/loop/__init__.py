"""The one training loop and what it needs: callbacks, optimizer groups and schedule,
freezing, loaders, devices and precision, torchrun ranks, and `fit(ctx, plan)` that strategies call."""
from .callbacks import BestWeights, Callback, Checkpoint, EarlyStopping, ProgressLog, Unfreeze, load_checkpoint
from .fit import Plan, fit
from .freeze import freeze, keep_bn_stats, train_mode, unfreeze
from .loop import HISTORY_COLUMNS, Loop
from .optim import Group, Schedule, adamw, balanced_class_weights, block_groups, discriminative_lrs

__all__ = [
    "BestWeights", "Callback", "Checkpoint", "EarlyStopping", "Group", "HISTORY_COLUMNS", "Loop", "Plan", "ProgressLog",
    "Schedule", "Unfreeze", "adamw", "balanced_class_weights", "block_groups", "discriminative_lrs", "fit", "freeze",
    "keep_bn_stats", "load_checkpoint", "train_mode", "unfreeze",
]  # fmt: skip
