"""Strategies: the registry (which modalities each supports, its defaults) and one module per
family: probe (cached features), network (head, partial, finetune), baselines."""
from .context import Context, Trained, cached_features
from .registry import STRATEGIES, Strategy, check_supports, for_modality, function, get

__all__ = ["Context", "STRATEGIES", "Strategy", "Trained", "cached_features", "check_supports", "for_modality", "function", "get"]
