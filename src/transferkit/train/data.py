"""What the loop eats: augmented image batches built from the model's data config with timm's
transform factory, the input resolution chosen from the data, and loaders seeded per epoch."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..data.dataset import ImageDataset
from ..data.images import ImageDecodeError

# Transfer from a pretrained body: never below this side (a stride-32 network then still sees
# a 4x4 map), never above the backbone's own input size.
MIN_TRANSFER_SIDE = 128
SCRATCH_SIDES = (32, 128)  # the from-scratch CNN: the data's native side, clamped to this range
MLP_SIDES = (16, 32)  # the pixel MLP: flattened input, so a small side (32x32x3 = 3,072 inputs)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def native_side(ds: ImageDataset, indices, sample: int = 256) -> int | None:
    """Median shorter side of (a sample of) the items, read from the file headers."""
    from PIL import Image

    if ds.arrays is not None:
        return int(min(ds.arrays.shape[1:3]))
    idx = np.asarray(indices)
    if len(idx) > sample:
        idx = np.random.default_rng(0).choice(idx, sample, replace=False)
    sides = []
    for i in idx:
        try:
            with Image.open(ds.paths[int(i)]) as im:
                sides.append(min(im.size))
        except (OSError, ValueError):
            continue
    return int(np.median(sides)) if sides else None


def _round_up(x: int, m: int = 32) -> int:
    return int(-(-x // m) * m)


def choose_side(strategy: str, native: int | None, backbone_side: int | None) -> tuple[int, str]:
    """(input side, why) for a trained strategy when --image-size is not given.

    Pretrained bodies: the data's native side rounded up to a multiple of 32 when the images are
    smaller than the backbone's input (upsampling adds pixels to process, not information;
    fine-tuning adapts the body to the scale), at least MIN_TRANSFER_SIDE. Baselines: the
    native side within their own range."""
    if strategy == "scratch" or strategy == "mlp":
        lo, hi = SCRATCH_SIDES if strategy == "scratch" else MLP_SIDES
        side = hi if native is None else int(np.clip(_round_up(native, 16), lo, hi))
        return side, f"{strategy} baseline: native side {native} px clamped to {lo}-{hi}"
    if native is None or backbone_side is None or native >= backbone_side:
        return backbone_side, "the backbone's own input size"
    side = min(backbone_side, max(MIN_TRANSFER_SIDE, _round_up(native)))
    return side, f"images are {native} px (median shorter side), smaller than the backbone's {backbone_side} px input"


def baseline_data_config(side: int) -> dict:
    """Preprocessing for networks trained from random init: the whole image, ImageNet stats."""
    return {"input_size": (3, side, side), "interpolation": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 1.0, "crop_mode": "center"}


def build_transform(data_config: dict, augment: str = "none"):
    """Training transform for preset `augment` (none | light | strong), from the data config:
    none: the eval transform (resize, center crop, normalise);
    light: random resized crop (50-100% of the area), horizontal flip, rotation up to 10
           degrees, mild colour jitter;
    strong: random resized crop (25-100%), flip, RandAugment (rotate/shear/translate/colour
           ops, magnitude 9), random erasing 25%."""
    import timm.data

    cfg = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode") if k in data_config}
    if augment == "none":
        return timm.data.create_transform(**cfg, is_training=False)
    cfg.pop("crop_pct", None)
    cfg.pop("crop_mode", None)
    if augment == "light":
        import torchvision.transforms as T

        primary, secondary, final = timm.data.create_transform(**cfg, is_training=True, scale=(0.5, 1.0), color_jitter=0.2, separate=True)
        fill = tuple(int(round(m * 255)) for m in cfg["mean"])
        rotate = T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR, fill=fill)
        return T.Compose([*primary.transforms, rotate, *secondary.transforms, *final.transforms])
    if augment == "strong":
        # mmax9: RandAugment's magnitude (9, noise 0.5) is clipped at 9, not 10: at 10 timm's
        # increasing posterize keeps 0 bits, which Pillow 13 refuses with a ValueError
        # deep inside a DataLoader worker, a few dozen batches into an epoch
        return timm.data.create_transform(**cfg, is_training=True, scale=(0.25, 1.0), auto_augment="rand-m9-mstd0.5-inc1-mmax9", re_prob=0.25)
    raise ValueError(f"unknown augmentation preset {augment!r}")


def resize_hint(data_config: dict) -> int:
    return int(data_config["input_size"][-1] / data_config.get("crop_pct", 1.0)) + 1


class ImageItems(torch.utils.data.Dataset):
    """(transformed image, label) for a list of dataset item indices."""

    def __init__(self, ds: ImageDataset, indices, transform, size_hint: int | None = None):
        self.ds, self.indices, self.transform, self.size_hint = ds, [int(i) for i in indices], transform, size_hint

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        try:
            img = self.ds.load(i, self.size_hint)
        except ImageDecodeError as exc:  # changed on disk since loading: fail with its name
            raise ImageDecodeError(f"{self.ds.item_id(i)}: {exc}") from None
        return self.transform(img), int(self.ds.labels[i])


def default_workers(n_items: int, workers: int | None = None) -> int:
    if workers is not None:
        return workers
    if n_items < 256:
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def loader(dataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None, workers: int = 0, drop_last: bool = False):
    """A DataLoader whose shuffling and worker seeds come from `generator` (seeded per epoch)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        drop_last=drop_last,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
