"""Labelled items whatever they are: `ItemDataset` (classes, labels, content keys, a given
split), `ImageDataset` (files or in-memory arrays) and `TextDataset` (strings)."""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import TransferkitError
from .images import ImageDecodeError, open_rgb


def content_key(data: bytes) -> str:
    """Content hash of an item: the cache key and the split's random source."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass
class Skipped:
    """An item left out of the dataset, and why."""

    item: str
    reason: str


@dataclass
class ItemDataset:
    """What every labelled dataset has, whatever its items are: classes, a label and a content
    key per item, an optional given split. Splits, checks and the feature cache need only this."""

    name: str
    classes: list[str]
    labels: np.ndarray  # int64, (N,), index into classes
    keys: list[str]  # content hash per item
    given_split: list[str] | None = None  # 'train'/'val'/'test' per item when the source came split
    skipped: list[Skipped] = field(default_factory=list)  # unreadable / not images or texts: listed as warnings
    ignored: list[Skipped] = field(default_factory=list)  # OS metadata (.DS_Store, ...): listed, no warning
    notes: list[str] = field(default_factory=list)  # remarks about the source, shown in checks
    root: str | None = None  # folder paths are shown relative to
    kind: str = "image"  # "image" or "text": picks backbones, strategies and prediction inputs
    Y: np.ndarray | None = None  # multi-label data: uint8 (N, L) 0/1, Y[i, j] = 1 if item i has classes[j]; `labels` is then each item's most frequent label (-1: none), for colouring plots only

    @property
    def multilabel(self) -> bool:
        """Whether items carry label sets (`Y`) rather than one label each."""
        return self.Y is not None

    def target(self, i: int):
        """What the loss compares item i's output with: its class index, or its (L,) float32 0/1 row."""
        return self.Y[i].astype(np.float32) if self.Y is not None else int(self.labels[i])

    @property
    def unit(self) -> str:
        """What one item is called in messages: 'image' or 'text'."""
        return self.kind

    def __len__(self) -> int:
        return len(self.labels)

    def item_id(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def display_path(self, i: int) -> str:
        """A stable name a person can find the item by (also the run's split file entries)."""
        return self.item_id(i)

    def class_counts(self) -> dict[str, int]:
        """Items per class (multi-label: items holding each label)."""
        counts = self.Y.sum(0) if self.Y is not None else np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}


@dataclass
class ImageDataset(ItemDataset):
    """Labelled images.

    Each item is either a file path (``paths``) or a row of ``arrays`` (uint8, N×H×W[×C]).
    """

    paths: list[str] | None = None
    arrays: np.ndarray | None = None

    def item_id(self, i: int) -> str:
        """A name a person can find the item by: the path, or `name[i]` for arrays."""
        if self.paths is not None:
            return self.paths[i]
        return f"{self.name}[{i}]"

    def load(self, i: int, size_hint: int | None = None, verify: bool = False) -> Image.Image:
        """Item `i` as an RGB image. `verify`: decode the very bytes whose hash is the item's
        key (the cache key), so a file changed since loading cannot store features under the
        old content's key."""
        if self.paths is not None:
            try:
                if not verify:
                    return open_rgb(self.paths[i], size_hint)
                try:
                    data = Path(self.paths[i]).read_bytes()
                except OSError as exc:
                    raise ImageDecodeError(f"cannot read ({exc.strerror or exc})") from None
                if content_key(data) != self.keys[i]:
                    raise ImageDecodeError("its content changed since the data was loaded")
                return open_rgb(io.BytesIO(data), size_hint)
            except ImageDecodeError as exc:
                raise TransferkitError(f"{self.paths[i]}: {exc}") from None
        arr = self.arrays[i]
        im = Image.fromarray(arr)
        return im.convert("RGB")

    def subset(self, idx: np.ndarray) -> "ImageDataset":
        idx = np.asarray(idx, dtype=np.int64)
        return ImageDataset(
            name=self.name,
            classes=self.classes,
            labels=self.labels[idx],
            keys=[self.keys[i] for i in idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            arrays=None if self.arrays is None else self.arrays[idx],
            given_split=None if self.given_split is None else [self.given_split[i] for i in idx],
            skipped=self.skipped,
            ignored=self.ignored,
            notes=self.notes,
            root=self.root,
            Y=None if self.Y is None else self.Y[idx],
        )

    def display_path(self, i: int) -> str:
        if self.paths is not None and self.root:
            p, prefix = self.paths[i], self.root.rstrip(os.sep) + os.sep
            if p.startswith(prefix) and os.sep * 2 not in p and f"{os.sep}.{os.sep}" not in p[len(prefix) - 1 :]:
                return p[len(prefix) :]  # what relative_to gives for a normalised path, ~9x faster
            try:
                return str(Path(p).relative_to(self.root))
            except ValueError:
                return self.paths[i]
        return self.item_id(i)


@dataclass
class TextDataset(ItemDataset):
    """Labelled texts; item `i` is ``texts[i]``, found by ``ids[i]`` (``file.csv:row``, ``class/doc.txt``, ``r8/test/00012``)."""

    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    kind: str = "text"

    def item_id(self, i: int) -> str:
        return self.ids[i]

    def text(self, i: int) -> str:
        return self.texts[i]

    def load(self, i: int, size_hint: int | None = None, verify: bool = False) -> str:  # same call as ImageDataset.load
        return self.texts[i]

    def subset(self, idx) -> "TextDataset":
        idx = np.asarray(idx, dtype=np.int64)
        return TextDataset(
            name=self.name,
            classes=self.classes,
            labels=self.labels[idx],
            keys=[self.keys[i] for i in idx],
            given_split=None if self.given_split is None else [self.given_split[i] for i in idx],
            skipped=self.skipped,
            ignored=self.ignored,
            notes=self.notes,
            root=self.root,
            Y=None if self.Y is None else self.Y[idx],
            texts=[self.texts[i] for i in idx],
            ids=[self.ids[i] for i in idx],
        )


def text_key(text: str) -> str:
    """Content key of a text: the hash of its UTF-8 bytes (the cache key and the split's source)."""
    return content_key(text.encode("utf-8"))
