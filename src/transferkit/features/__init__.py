"""Feature extraction and the on-disk feature cache."""
from .cache import FeatureCache
from .extract import build_eval_transform, extract_features, feature_cache_for

__all__ = ["FeatureCache", "extract_features", "feature_cache_for", "build_eval_transform"]
