"""Backbones: a registry of pretrained feature extractors."""
from .registry import DEFAULT_BACKBONE, OFFLINE, Backbone, create_backbone, list_backbones, load_weights_file

__all__ = ["Backbone", "create_backbone", "list_backbones", "load_weights_file", "DEFAULT_BACKBONE", "OFFLINE"]
