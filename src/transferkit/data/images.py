"""Decode one image file into an upright RGB Pillow image, with clear errors."""
from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps

# Refuse images above this many pixels (a decompression bomb); a 100-megapixel photo is fine.
MAX_PIXELS = 150_000_000
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class ImageDecodeError(Exception):
    """An image that cannot be decoded; the message names the reason."""


def open_rgb(path: str | Path, size_hint: int | None = None) -> Image.Image:
    """Open `path` as an upright RGB image.

    `size_hint` (pixels of the shorter side the caller will resize to) lets JPEG decode at a
    reduced scale via ``draft``, which bounds memory and time for very large photos.
    """
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if size_hint and im.format == "JPEG":
                    im.draft("RGB", (size_hint, size_hint))
                im.seek(0)  # first frame of an animated GIF/WebP
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"too many pixels, refused as a possible decompression bomb ({exc})") from None
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"not a readable image ({exc})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit: scale to 8 bits rather than clipping everything to white
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        arr = (arr / (65535.0 if hi > 255 else 255.0) * 255.0).clip(0, 255).astype("uint8")
        return Image.fromarray(arr, mode="L").convert("RGB")
    return im.convert("RGB")
