"""Feature extraction and the on-disk feature cache."""
from .cache import FeatureCache
from .extract import extract_features, feature_cache_for

__all__ = ["FeatureCache", "extract_features", "feature_cache_for"]
