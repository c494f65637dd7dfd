"""Images: photos in class folders or tables of paths, timm backbones, transforms from the
backbone's data config, thumbnails in reports, files and uploads to predict."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data.images import IMAGE_EXTENSIONS, ImageDecodeError, open_rgb
from ..errors import TransferkitError
from . import image_transforms as T
from .base import InputError, Modality, MultiPreprocessor, Preprocessor, Ref, Refused

# Formats a server accepts after sniffing the bytes, and the content types browsers and curl send.
IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "MPO"}
IMAGE_TYPES = {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/x-ms-bmp", "image/tiff", "image/x-portable-pixmap", "image/x-portable-graymap", "application/octet-stream", ""}
_INTERPOLATIONS = {"nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"}
_CROP_MODES = {"center", "squash", "border"}


def image_paths(inputs, data_root=None) -> list[str]:
    """The image files `inputs` name (files, folders walked in sorted order, tables of paths),
    as `predict` reads them."""
    return [r.id for r in ImageModality().iter_inputs(inputs, {"data_root": data_root})]


class ImageItems(torch.utils.data.Dataset):
    """(transformed image, label) for a list of dataset item indices."""

    def __init__(self, ds, indices, transform, size_hint: int | None = None):
        self.ds, self.indices, self.transform, self.size_hint = ds, [int(i) for i in indices], transform, size_hint

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        try:
            img = self.ds.load(i, self.size_hint)
        except ImageDecodeError as exc:  # changed on disk since loading: fail with its name
            raise ImageDecodeError(f"{self.ds.item_id(i)}: {exc}") from None
        return self.transform(img), self.ds.target(i)


class _ExtractionItems(torch.utils.data.Dataset):
    """Decoded, transformed images for extraction (the very bytes whose hash keys the cache)."""

    def __init__(self, ds, indices: list[int], transform, size_hint: int):
        self.ds, self.indices, self.transform, self.size_hint = ds, indices, transform, size_hint

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        try:
            return self.transform(self.ds.load(i, self.size_hint, verify=True)), j, ""
        except TransferkitError as exc:  # changed on disk since loading; names the file
            return None, j, str(exc)
        except ImageDecodeError as exc:
            return None, j, f"{self.ds.item_id(i)}: {exc}"


def _extraction_collate(batch):
    """Stack the images of a batch; errors travel as text (a worker's exception would arrive
    as a traceback inside a message)."""
    errors = [e for _, _, e in batch if e]
    if errors:
        return None, [j for _, j, _ in batch], errors
    return torch.from_numpy(np.stack([x.numpy() for x, _, _ in batch])), [j for _, j, _ in batch], []


def _worker_init(_id: int) -> None:
    torch.set_num_threads(1)  # a decoding worker's tensor ops must not compete with the backbone's threads


class ImagePreprocessor(Preprocessor):
    """Image files or decoded photos -> (N, 3, H, W) float32, from a data config."""

    input_names = ("image",)

    def __init__(self, data_config: dict):
        self.data_config = dict(data_config)
        self.hint = T.resize_hint(data_config)
        self._tf = None

    @property
    def transform(self):
        if self._tf is None:
            self._tf = T.fast_eval_transform(self.data_config)
        return self._tf

    def load(self, payload):
        if not isinstance(payload, (str, os.PathLike, io.IOBase)):
            return payload  # already a PIL image
        try:
            return open_rgb(payload, self.hint)
        except ImageDecodeError as exc:
            raise InputError(str(exc)) from None

    def item(self, raw):
        return self.transform(raw)

    def collate(self, items: list):
        return torch.stack(items) if items else torch.zeros(0, 3, self.size, self.size)

    @property
    def size(self) -> int:
        return int(self.data_config["input_size"][-1])

    def example(self) -> tuple:
        return (torch.zeros(2, 3, self.size, self.size),)

    def as_arrays(self, batch) -> dict:
        return {"image": np.ascontiguousarray(batch.numpy() if isinstance(batch, torch.Tensor) else batch, dtype=np.float32)}


class ImageModality(Modality):
    name = "image"
    unit = "image"
    channels_last = True
    drop_last = True
    batch_norm = True  # backbones with batch-norm layers (--train-bn)
    clip_grad_norm = None
    augments = ("none", "light", "strong")
    # fine-tuning rates: the top block at lr x 0.2 and the stem at ~lr x 0.2 x 0.9^16 = lr / 27 for
    # a ~17-block CNN (close to fastai's slice(lr/100, lr)); 0.05 and 0.8 left its lower half at < 1e-5
    defaults = dict(body_lr_mult=0.2, layer_decay=0.9, warmup_epochs=1.0, label_smoothing=0.1, head_epochs=2)
    options = frozenset({"image_size", "crop_pct", "engine", "data_root", "train_bn", "augment", "tta"})
    feature_ensembles = True

    @property
    def default_backbone(self) -> str:
        from ..backbones.image import DEFAULT_BACKBONE

        return DEFAULT_BACKBONE

    # ------------------------------------------------------------------ data
    def claims(self, path: Path, options: dict) -> bool:
        from ..data.tables import is_table, table_modality
        from ..data.text_sources import folder_holds_texts

        if path.is_file():
            return is_table(path) and table_modality(path, options.get("text_column")) == "image"
        return path.is_dir() and not folder_holds_texts(path)

    def load(self, path: Path, options: dict):
        from ..data.image_sources import load_image_folder, load_image_table

        check = options.get("check_images", True)
        if path.is_file():
            root = options.get("data_root")
            return load_image_table(path, check, Path(root).expanduser() if root else None, options.get("label_column"), options.get("multi_label"), options.get("label_sep"))
        return load_image_folder(path, check)

    # ------------------------------------------------------------------ backbone and preprocessing
    def is_backbone(self, name: str) -> bool:
        from ..backbones.image import is_image_backbone

        return is_image_backbone(name)

    def knows_backbone(self, name: str) -> bool:
        """A name this modality's registry knows for sure (timm's models, the offline ones)."""
        return self.is_backbone(name)

    def prepare(self, cfg, ds, splits, uses_backbone: bool):
        """(backbone or None, the run's data config): the backbone with the run's input size
        and crop, and for trained strategies a side chosen from the data's native size."""
        from ..backbones.ensemble import is_ensemble
        from ..backbones.image import create_backbone

        if uses_backbone and is_ensemble(cfg.backbone):
            return self._prepare_ensemble(cfg)
        backbone = None
        if uses_backbone:
            backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)
            cfg.extra.update(weights_source=backbone.weights_source, weights_id=backbone.weights_id)
        else:
            cfg.extra.update(weights_source="none (random init)", weights_id="")
        if cfg.strategy == "probe":
            dc = dict(backbone.with_input_size(cfg.image_size).with_crop(cfg.crop_pct).data_config)
        else:
            own = int(backbone.data_config["input_size"][-1]) if backbone is not None else None
            if cfg.image_size:
                side, why = cfg.image_size, "--image-size"
            else:
                side, why = T.choose_side(cfg.strategy, T.native_side(ds, splits.train), own)
                cfg.image_size = side
            cfg.extra["image_size_reason"] = why
            dc = T.baseline_data_config(side) if backbone is None else dict(backbone.with_input_size(side).with_crop(cfg.crop_pct).data_config)
        if backbone is not None:
            backbone = backbone.with_input_size(int(dc["input_size"][-1])).with_crop(dc["crop_pct"])
        return backbone, dc

    def _prepare_ensemble(self, cfg):
        """The probe's feature ensemble: each member at its own side (`name@PX`, else
        --image-size, else its own) and the run's crop."""
        from ..backbones.ensemble import EnsembleBackbone, parse_members
        from ..backbones.image import create_backbone

        members = []
        for name, px in parse_members(cfg.backbone):
            bb = create_backbone(name, pretrained=cfg.pretrained, weights=cfg.weights)
            members.append(bb.with_input_size(px or cfg.image_size).with_crop(cfg.crop_pct))
        ens = EnsembleBackbone(cfg.backbone, members)
        cfg.extra.update(weights_source=ens.weights_source, weights_id=ens.weights_id)
        return ens, ens.data_config

    def check_data_config(self, dc, where: Path) -> dict:
        """The preprocessing a run recorded, checked field by field (it drives timm's transform);
        a feature ensemble has one per member."""
        if isinstance(dc, dict) and isinstance(dc.get("members"), list) and dc["members"]:
            return {"members": [self.check_data_config(m, where) for m in dc["members"]]}
        try:
            size = tuple(int(v) for v in dc["input_size"])
            mean, std = tuple(float(v) for v in dc["mean"]), tuple(float(v) for v in dc["std"])
            out = {"input_size": size, "interpolation": str(dc.get("interpolation", "bilinear")), "mean": mean, "std": std,
                   "crop_pct": float(dc.get("crop_pct", 1.0)), "crop_mode": str(dc.get("crop_mode", "center"))}
            ok = (len(size) == 3 and size[0] == 3 and all(8 <= v <= 4096 for v in size[1:]) and len(mean) == len(std) == 3 and all(v > 0 for v in std)
                  and out["interpolation"] in _INTERPOLATIONS and out["crop_mode"] in _CROP_MODES and 0.05 <= out["crop_pct"] <= 2.0)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise TransferkitError(f"{where}: extra.data_config is missing or out of range (input_size, mean, std, interpolation, crop_pct, crop_mode); train again to rebuild the run folder")
        return out

    def preprocessor(self, data_config: dict, files=None) -> Preprocessor:
        if "members" in data_config:
            return MultiPreprocessor([ImagePreprocessor(m) for m in data_config["members"]], "image")
        return ImagePreprocessor(data_config)

    def describe_inputs(self, ctx) -> str:
        side = int(ctx.data_config["input_size"][-1])
        return f"{side}x{side} px images, augment {ctx.config.augment}"

    # ------------------------------------------------------------------ training batches
    def training_items(self, ds, idx, ctx, augment: str = "none"):
        return ImageItems(ds, idx, T.train_transform(ctx.data_config, augment), T.resize_hint(ctx.data_config))

    def collate(self, ctx):
        return None  # the default: stack images, labels

    def item_lengths(self, ctx, idx):
        return None

    def batch_order(self, n: int, batch: int, gen: torch.Generator, lengths, drop_last: bool) -> list[np.ndarray]:
        """A random permutation (the epoch's generator) cut into batches."""
        perm = torch.randperm(n, generator=gen).numpy()
        stop = (n // batch) * batch if drop_last else n
        return [perm[s : s + batch] for s in range(0, stop, batch)]

    def eval_order(self, ctx, idx) -> np.ndarray:
        return np.arange(len(idx))

    def extraction_order(self, ds, todo: list[int]) -> list[int]:
        return todo

    def extraction_batches(self, backbone, ds, todo: list[int], batch_size: int, workers: int | None, placement):
        from ..loop.data import default_workers, loader

        items = _ExtractionItems(ds, todo, T.fast_eval_transform(backbone.data_config), T.resize_hint(backbone.data_config))
        n = default_workers(len(todo), placement.device, workers)
        if n:
            return torch.utils.data.DataLoader(items, batch_size=batch_size, num_workers=n, persistent_workers=False, prefetch_factor=4,
                                               worker_init_fn=_worker_init, collate_fn=_extraction_collate, pin_memory=placement.pin_memory)
        return loader(items, batch_size, collate_fn=_extraction_collate)

    # ------------------------------------------------------------------ items for prediction, checks, reports
    def raw_item(self, ds, i: int, data_config: dict):
        dc = max(data_config["members"], key=lambda m: T.resize_hint(m)) if "members" in data_config else data_config
        return ds.load(int(i), T.resize_hint(dc))

    preview_kind = "thumbnail"  # how reports draw an item

    def preview(self, ds, i: int, size: int = 128):
        im = ds.load(i, size).copy()
        im.thumbnail((size, size))
        return im

    def prediction_columns(self, ds, idx) -> tuple[list[str], list[list[str]]]:
        return [], [[] for _ in idx]

    # ------------------------------------------------------------------ inputs to predict
    def iter_inputs(self, inputs, options: dict):
        """Image paths, lazily: files as given; folders walked in sorted order (image files
        only, hidden files and folders skipped, symlinked folders not followed); tables row by
        row from their path column, relative to `data_root` (default: the table's folder) and
        inside it, or the table is refused."""
        from ..data.image_sources import within
        from ..data.layout import PATH_COLUMNS, find_column
        from ..data.tables import cell_text, is_table, read_table

        data_root = options.get("data_root")
        for item in inputs:
            if isinstance(item, Ref):
                yield item
                continue
            p = Path(item)
            if p.is_dir():
                for dirpath, dirnames, filenames in os.walk(p):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for f in sorted(filenames):
                        if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."):
                            full = os.path.join(dirpath, f)
                            yield Ref(full, full)
            elif p.is_file() and is_table(p):
                table = read_table(p)
                col = find_column(table.columns, PATH_COLUMNS)
                if col is None:
                    raise TransferkitError(f"{p}: needs a 'path' column listing the images to predict; found {table.columns}")
                root = Path(data_root).expanduser() if data_root else p.parent
                for n, r in table.rows:
                    listed = cell_text(r.get(col)).strip()
                    if not listed:
                        continue  # a blank row names nothing to predict
                    full = within(root, listed)
                    if full is None:
                        raise TransferkitError(f"{p}: line {n}: '{listed}' is outside {os.path.abspath(root)}; paths in a CSV must stay inside its folder; pass --data-root DIR to allow another folder")
                    yield Ref(str(full), str(full))
            else:
                yield Ref(str(p), str(p))

    def check_inputs(self, inputs) -> None:
        for i in inputs:
            if isinstance(i, Ref):
                raise TransferkitError(f"{i.id}: an image model reads image files; --text is for models trained on texts")
            if not Path(i).exists() and Path(i).suffix.lower() not in IMAGE_EXTENSIONS:
                raise TransferkitError(f"{i}: no such file or folder; give image files, folders of images or CSVs with a path column")

    # ------------------------------------------------------------------ serving
    serve_hint = "image files as multipart/form-data in the field 'files'"
    serve_content = "multipart/form-data"

    def serve_schema(self, max_files: int) -> dict:
        return {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": max_files, "description": "image files (JPEG, PNG, WebP, GIF, BMP, TIFF)"}},
            "required": ["files"],
        }}}

    def decode_upload(self, data: bytes, name: str, max_pixels: int, pre: ImagePreprocessor):
        """Bytes of one uploaded file -> a prepared image tensor, or (status, detail) raised as ValueError."""
        from PIL import Image

        if not data:
            raise Refused(422, f"{name}: empty file")
        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                fmt, (w, h) = im.format, im.size
        except Exception:  # noqa: BLE001 - any header failure: not an image we can read
            raise Refused(422, f"{name}: not a readable image (send JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
        if fmt not in IMAGE_FORMATS:
            raise Refused(415, f"{name}: {fmt} images are not accepted (send JPEG, PNG, WebP, GIF, BMP or TIFF)")
        if w * h > max_pixels:
            raise Refused(413, f"{name}: {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:.0f} megapixels (downscale it)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pre.item(open_rgb(io.BytesIO(data), pre.hint))
        except ImageDecodeError as exc:
            raise Refused(422, f"{name}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - truncated or odd files must not reach the worker
            raise Refused(422, f"{name}: cannot decode ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ old run folders
    def legacy_spec(self, meta: dict, shapes: dict, path: Path) -> dict:
        """Run folders written before specs: a timm backbone (classifier kept) + a probe head."""
        kind = meta.get("head", "linear")
        head_shapes = {k[len("head.") :]: v for k, v in shapes.items() if k.startswith("head.")}
        if kind == "mlp" and len(head_shapes.get("0.weight", ())) == 2:
            hidden = head_shapes["0.weight"][0]
        elif kind == "linear":
            hidden = 1
        else:
            raise TransferkitError(f"{path}: unknown or malformed head ({kind!r}); train again to rebuild the run folder")
        return {"kind": "transfer", "classifier_reset": False, "head": {"kind": kind, "hidden": hidden}}

    example_input = "photos/"

    def input_summary(self, extra: dict, data: dict) -> str | None:
        """A line for the run page on how items entered the model (images: the backbone row says the size)."""
        return None

    def predict_steps(self, strategy: str | None) -> str:
        return "decode + preprocess + model"

    def card_input_lines(self, dc: dict, meta: dict) -> list[str]:
        """How to feed an exported image model, for its model card (a feature ensemble: one input per member)."""
        import math

        if "members" in dc:
            lines = [f"- {len(dc['members'])} inputs, `image_0` … `image_{len(dc['members']) - 1}`: the same photo preprocessed for each member backbone:"]
            for i, m in enumerate(dc["members"]):
                lines += [f"  - `image_{i}`: " + self.card_input_lines(m, meta)[1][2:]]
            return lines
        size = int(dc["input_size"][-1])
        resize = int(math.floor(size / dc.get("crop_pct", 1.0)))
        return [
            f"- Input `image`: float32, shape (batch, 3, {size}, {size}), RGB; any batch size.",
            f"- Preprocessing (stored in the file's metadata under `transferkit` → `preprocessing`): resize the shorter side to {resize} px "
            f"({dc['interpolation']}), center-crop {size}×{size}, scale to [0, 1], subtract mean {list(dc['mean'])} and divide by std {list(dc['std'])} per channel.",
        ]

    def what_it_classifies(self, n_classes: int) -> str:
        return f"Given a photo, it returns a probability for each of {n_classes} classes"

