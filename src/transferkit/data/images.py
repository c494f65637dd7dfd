"""Decode one image file into an upright RGB Pillow image, with clear errors.

Limits, checked from the header before any pixel is decoded:
- MAX_PIXELS: the most pixels we decode at full size (PNG, TIFF, WebP, ... and JPEG without a
  size hint): 150 MP, about 600 MB as RGBA. Bigger files are refused as possible decompression
  bombs.
- MAX_JPEG_PIXELS: a JPEG decoded with a size hint is scaled down inside the decoder (``draft``,
  1/2 to 1/8 per side), so a 200 MP phone photo decodes as ~3 MP; we accept JPEG headers up to
  600 MP this way. Anything larger is no photo a camera takes.

Pillow's own bomb check is module-global (``Image.MAX_IMAGE_PIXELS``); we set it to
MAX_JPEG_PIXELS so that it errors only above twice that, and do our own checks per format.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps

MAX_PIXELS = 150_000_000
MAX_JPEG_PIXELS = 600_000_000
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class ImageDecodeError(Exception):
    """An image that cannot be decoded; the message names the reason."""


def open_rgb(path: str | Path, size_hint: int | None = None) -> Image.Image:
    """Open `path` as an upright RGB image (EXIF orientation applied, first frame, alpha on white).

    `size_hint` (pixels of the shorter side the caller will resize to) lets JPEG decode at a
    reduced scale via ``draft``, which bounds memory and time for very large photos.
    """
    Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS
    try:
        with warnings.catch_warnings():
            # our limits below are stricter; Pillow's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            fh = Image.open(path)
        with fh as im:
            pixels = im.width * im.height
            drafted = bool(size_hint) and im.format == "JPEG"
            limit = MAX_JPEG_PIXELS if drafted else MAX_PIXELS
            if pixels > limit:
                raise ImageDecodeError(f"{im.width}x{im.height} = {pixels / 1e6:.0f} MP is over the {limit / 1e6:.0f} MP limit; refused as a possible decompression bomb (not decoded)")
            if drafted:
                im.draft("RGB", (size_hint, size_hint))
            im.seek(0)  # first frame of an animated GIF/WebP
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"refused as a possible decompression bomb, not decoded ({exc})") from None
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except PermissionError:
        raise ImageDecodeError("permission denied (the file is not readable by this user)") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a folder, not an image file") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image (Pillow cannot identify the format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "truncat" in str(exc).lower():
            raise ImageDecodeError(f"truncated: the file ends before the image does ({exc})") from None
        raise ImageDecodeError(f"not a readable image ({exc})") from None
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode it") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            arr = arr / 257.0  # 16-bit samples: the full 0..65535 range maps to 0..255
        else:
            # 32-bit int/float: no fixed range; 0..255 if it fits, else 0..65535 (16-bit data
            # that older Pillow versions open as "I"), else stretched min..max
            lo, hi = float(arr.min()), float(arr.max())
            if lo >= 0 and hi > 255 and hi <= 65535:
                arr = arr / 257.0
            elif lo < 0 or hi > 65535:
                arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        return Image.fromarray(np.nan_to_num(arr).round().clip(0, 255).astype("uint8"), mode="L").convert("RGB")
    return im.convert("RGB")
