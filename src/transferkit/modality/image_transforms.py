"""The one transform factory for images: every place that turns a decoded photo into model
input (training, feature extraction, evaluation, predict, serve, export checks) builds it here
from the run's data config (input size, mean/std, interpolation, crop), with timm's factory.

Also here: the input side chosen from the data for trained strategies, and the preprocessing of
the from-scratch baselines."""
from __future__ import annotations

import numpy as np
import torch

# Transfer from a pretrained body: never below this side (a stride-32 network then still sees
# a 4x4 map), never above the backbone's own input size.
MIN_TRANSFER_SIDE = 128
SCRATCH_SIDES = (32, 128)  # the from-scratch CNN: the data's native side, clamped to this range
MLP_SIDES = (16, 32)  # the pixel MLP: flattened input, so a small side (32x32x3 = 3,072 inputs)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def resize_hint(data_config: dict) -> int:
    """Shorter side the eval transform resizes to: lets JPEG decode at reduced scale."""
    return int(data_config["input_size"][-1] / data_config.get("crop_pct", 1.0)) + 1


def eval_transform(data_config: dict):
    """Resize, centre crop, to tensor, normalise: PIL RGB image -> float32 (3, H, W)."""
    import timm.data

    return timm.data.create_transform(**{k: data_config[k] for k in _KEYS if k in data_config}, is_training=False)


class _NormalizedArray:
    """PIL RGB image -> normalised float32 CHW tensor, in numpy: the same numbers as
    torchvision's ToTensor + Normalize (to float rounding), without torch's intra-op thread
    pool, which on a few cores fights the backbone's threads over tiny per-image ops."""

    def __init__(self, mean, std):
        self.scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).astype(np.float32)
        self.shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).astype(np.float32)

    def __call__(self, img) -> torch.Tensor:
        a = np.asarray(img, dtype=np.float32)  # H, W, 3
        a = a * self.scale - self.shift
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return "NormalizedArray()"


def fast_eval_transform(data_config: dict):
    """The eval transform with its last two steps (to tensor, normalise) done in numpy; the
    geometric steps (resize, crop) are timm's own, on the PIL image. Any other pipeline is
    used as timm builds it. What extraction, predict and serve run."""
    import torchvision.transforms as T

    tf = eval_transform(data_config)
    steps = list(getattr(tf, "transforms", []))
    if len(steps) >= 2 and type(steps[-2]).__name__ in ("ToTensor", "MaybeToTensor") and isinstance(steps[-1], T.Normalize):
        norm = steps[-1]
        mean, std = (v.tolist() if hasattr(v, "tolist") else list(v) for v in (norm.mean, norm.std))
        if len(mean) == 3 and len(std) == 3:
            return T.Compose(steps[:-2] + [_NormalizedArray(mean, std)])
    return tf


def train_transform(data_config: dict, augment: str = "none"):
    """Training transform for preset `augment` (none | light | strong), from the data config:
    none: the eval transform (resize, center crop, normalise);
    light: random resized crop (50-100% of the area), horizontal flip, rotation up to 10
           degrees, mild colour jitter;
    strong: random resized crop (25-100%), flip, RandAugment (rotate/shear/translate/colour
           ops, magnitude 9), random erasing 25%."""
    import timm.data

    cfg = {k: data_config[k] for k in _KEYS if k in data_config}
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


def native_side(ds, indices, sample: int = 256) -> int | None:
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
    if strategy in ("scratch", "mlp"):
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
