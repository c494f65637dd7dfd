"""Datasets: sources, splits, checks."""
from .builtins import list_datasets
from .checks import CheckResult, check_dataset
from .dataset import ImageDataset, ItemDataset
from .sources import load_dataset
from .splits import Splits, load_splits, make_splits
from .texts import TextDataset

__all__ = ["ImageDataset", "ItemDataset", "TextDataset", "Splits", "CheckResult", "load_dataset", "list_datasets", "make_splits", "load_splits", "check_dataset"]
