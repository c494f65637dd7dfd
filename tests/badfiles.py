"""Builders for the awkward files people's photo folders really contain (used by several tests).

Each writer makes one file and returns its path; `BAD` maps a file name to the reason
fragment the loader must give when it skips it, `ODD_BUT_FINE` lists files that must load.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid PNG header claiming side×side pixels with almost no data: decoding it would
    allocate side² bytes; it must be refused from the header alone."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    return path


def jpeg_bytes(color=(200, 40, 40), size=(40, 30), quality=92, **save) -> bytes:
    rng = np.random.default_rng(sum(color))
    arr = (np.array(color, dtype=np.float32) + rng.normal(0, 8, (size[1], size[0], 3))).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, **save)
    return buf.getvalue()


def jpeg_with_header_size(path: Path, width: int, height: int) -> Path:
    """A small real JPEG whose frame header (SOF0) claims width×height."""
    data = bytearray(jpeg_bytes(size=(16, 16)))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def exif_rotated(path: Path) -> Path:
    """Stored 40 wide × 20 high, left half red, right half blue, EXIF orientation 6 (the camera
    was turned: display rotated 90° clockwise, so upright it is 20×40, red on top)."""
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def write_odd_images(d: Path) -> dict[str, str]:
    """Unusual but legitimate images; name -> what the decoded RGB image must look like."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "really_a_jpeg.png").write_bytes(jpeg_bytes((200, 40, 40)))
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(d / "cmyk.jpg", quality=95)  # pure red in CMYK
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(d / "white16.png")
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint16)).save(d / "dark16.png")  # 200/65535: near black
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 255, 0] + [255, 0, 0] + [0, 0, 0] * 254)
    pal.save(d / "palette_transparent.png", transparency=1)  # every pixel is the transparent index
    Image.new("RGBA", (16, 16), (0, 0, 255, 0)).save(d / "rgba_clear.png")
    Image.new("RGBA", (16, 16), (0, 0, 255, 255)).save(d / "rgba_blue.png")
    Image.new("L", (16, 16), 90).save(d / "gray.png")
    exif_rotated(d / "exif_rotated.jpg")
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    (d / "my photo ñ 日本.jpg").write_bytes(jpeg_bytes((40, 180, 60)))
    return {
        "really_a_jpeg.png": "red",
        "cmyk.jpg": "red",
        "white16.png": "white",
        "dark16.png": "black",
        "palette_transparent.png": "white",
        "rgba_clear.png": "white",
        "rgba_blue.png": "blue",
        "gray.png": "gray",
        "exif_rotated.jpg": "red-top",
        "animated.gif": "red",
        "my photo ñ 日本.jpg": "green",
    }


def write_bad_files(d: Path) -> dict[str, str]:
    """Files that must be skipped; name -> a fragment of the reason the loader gives."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.jpg").write_bytes(b"")
    good = jpeg_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "notes.txt").write_text("not a photo")
    (d / "text_named.jpg").write_text("I am text with a .jpg name")
    png_bomb(d / "bomb.png")
    jpeg_with_header_size(d / "bomb.jpg", 30000, 30000)
    os.symlink(d / "does_not_exist.jpg", d / "broken_link.jpg")
    return {
        "empty.jpg": "0 bytes",
        "truncated.jpg": "truncated",
        "notes.txt": "not an image file extension",
        "text_named.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "bomb.jpg": "decompression bomb",
        "broken_link.jpg": "No such file",
    }


def write_ignored_files(d: Path) -> list[str]:
    """OS metadata that is ignored (listed in checks.json as ignored, no warning)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (d / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (d / "._IMG_0001.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    return [".DS_Store", "Thumbs.db", "._IMG_0001.jpg"]


def color_name(im: Image.Image) -> str:
    """A coarse name for an RGB image's mean colour (or 'red-top' for red above blue)."""
    a = np.asarray(im, dtype=np.float32)
    h = a.shape[0]
    top, bottom = a[: h // 2].reshape(-1, 3).mean(0), a[h // 2 :].reshape(-1, 3).mean(0)
    if top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60:
        return "red-top"
    r, g, b = a.reshape(-1, 3).mean(0)
    if min(r, g, b) > 235:
        return "white"
    if max(r, g, b) < 20:
        return "black"
    if abs(r - g) < 8 and abs(g - b) < 8:
        return "gray"
    return ("red", "green", "blue")[int(np.argmax([r, g, b]))]
