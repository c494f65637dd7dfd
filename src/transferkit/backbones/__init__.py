"""Backbones: pretrained feature extractors. Images: timm models (`image.py`); texts:
transformers encoders (`text.py`); where weights come from: `weights.py`."""
from .image import DEFAULT_BACKBONE, OFFLINE, Backbone, create_backbone, is_image_backbone
from .text import DEFAULT_TEXT_BACKBONE, TEXT_OFFLINE, TextBackbone, create_text_backbone
from .weights import load_weights_file


def list_backbones(pattern: str = "*") -> list[dict]:
    """Image backbones (input size in pixels), then text encoders (input size in tokens)
    matching `pattern` (fnmatch), with feature size, parameters and where the weights come from."""
    from .image import list_backbones as image_rows
    from .text import list_text_backbones

    return image_rows(pattern) + list_text_backbones(pattern)


__all__ = [
    "Backbone", "DEFAULT_BACKBONE", "DEFAULT_TEXT_BACKBONE", "OFFLINE", "TEXT_OFFLINE", "TextBackbone", "create_backbone",
    "create_text_backbone", "is_image_backbone", "list_backbones", "load_weights_file",
]  # fmt: skip
