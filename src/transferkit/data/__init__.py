"""Datasets: sources, splits, checks."""
from .builtins import list_datasets
from .checks import CheckResult, check_dataset
from .dataset import ImageDataset
from .sources import load_dataset
from .splits import Splits, load_splits, make_splits

__all__ = ["ImageDataset", "Splits", "CheckResult", "load_dataset", "list_datasets", "make_splits", "load_splits", "check_dataset"]
