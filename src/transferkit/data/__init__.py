"""Labelled data: item datasets, their sources (image and text loaders, built-ins), splits
and checks. `transferkit.load_dataset` (modality/) picks the loader for a source."""
from .builtins import list_datasets
from .checks import CheckResult, check_dataset
from .dataset import ImageDataset, ItemDataset, Skipped, TextDataset
from .splits import Splits, load_splits, make_splits

__all__ = ["CheckResult", "ImageDataset", "ItemDataset", "Skipped", "Splits", "TextDataset", "check_dataset", "list_datasets", "load_splits", "make_splits"]
