"""What a modality is: the one place that knows what an item is.

A modality (images, texts; a new one — audio, tabular — is one more module) supplies:
recognising and loading data, the backbone factory, item -> model input (transforms or
tokenisation) for training, extraction and prediction, how inputs to predict are read (files,
folders, tables, HTTP requests), how an item is drawn in a report, and the defaults that differ
by kind of data. Everything downstream — splits, the cache, heads, the loop, calibration,
evaluation, run folders, reports, export, predict, serve — exists once and asks the modality.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator


class Refused(Exception):
    """A request input a server answers with an HTTP status and a one-line detail."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class InputError(Exception):
    """An input to predict that cannot be used (unreadable file, empty text); its row gets the reason."""


@dataclass
class Ref:
    """One input to predict: `id` names it in the output (a path, `text[3]`, `file.csv:12`),
    `payload` is what the modality's `load` turns into an item (a path, or the text itself)."""

    id: str
    payload: Any


class Preprocessor:
    """Raw inputs -> model inputs for one trained model, the same in a run folder, an exported
    file and a server: `load(payload)` reads an input (decodes an image file; a text is
    itself), `item(raw)` prepares one (image transforms; may run in DataLoader workers),
    `collate(items)` makes a batch (stacked tensor, or token ids and masks)."""

    input_names: tuple[str, ...] = ()
    side_files = False  # an export needs files beside the model (a tokenizer)
    quantization = "static"  # int8 export: "static" (calibrated activations) or "dynamic"

    def load(self, payload):
        raise NotImplementedError

    def item(self, raw):
        return raw

    def collate(self, items: list):
        raise NotImplementedError

    def batch(self, raws: list):
        return self.collate([self.item(r) for r in raws])

    def example(self) -> tuple:
        """Example model inputs (batch of 2) for tracing an export."""
        raise NotImplementedError

    def as_arrays(self, batch) -> dict:
        """The batch as numpy arrays by input name (what ONNX Runtime is fed)."""
        raise NotImplementedError

    def dynamic_axes(self) -> dict:
        return {n: {0: "batch"} for n in self.input_names}


class MultiPreprocessor(Preprocessor):
    """Several members' preprocessing of the same input (a feature ensemble): `item` gives one
    prepared item per member, `collate` a dict of batches named by `input_names` (input_0, ...)."""

    def __init__(self, members: list, prefix: str):
        self.members = members
        self.input_names = tuple(f"{prefix}_{i}" for i in range(len(members)))
        self.side_files = any(m.side_files for m in members)
        self.quantization = members[0].quantization

    def load(self, payload):  # decoded once, at the size the largest member needs
        return max(self.members, key=lambda m: getattr(m, "hint", 0)).load(payload)

    def item(self, raw):
        return tuple(m.item(raw) for m in self.members)

    def collate(self, items: list):
        return {n: m.collate([it[i] for it in items]) for i, (n, m) in enumerate(zip(self.input_names, self.members))}

    def example(self) -> tuple:
        return tuple(m.example()[0] for m in self.members)

    def as_arrays(self, batch) -> dict:
        return {n: next(iter(m.as_arrays(batch[n]).values())) for n, m in zip(self.input_names, self.members)}

    def dynamic_axes(self) -> dict:
        return {n: {0: "batch"} for n in self.input_names}


class Modality:
    """The interface (documented here, implemented by ImageModality and TextModality)."""

    name = ""  # "image" | "text"
    unit = ""  # what one item is called in messages
    default_backbone = ""
    channels_last = False  # training/inference memory format for 4-D inputs
    drop_last = False  # drop a last training batch smaller than the batch (batch-norm needs > 1)
    batch_norm = False  # its backbones have batch-norm layers whose statistics --train-bn updates
    clip_grad_norm: float | None = None  # gradient clipping in the loop (None: none)
    augments = ("none",)  # --augment presets it has
    defaults: dict = {}  # config fields whose default differs by modality
    options: frozenset = frozenset()  # config fields that only this modality has
    feature_ensembles = False  # --backbone a+b@size: several backbones' cached features in one probe

    def claims(self, path, options: dict) -> bool:  # a file or folder this modality reads
        raise NotImplementedError

    def load(self, path, options: dict):
        raise NotImplementedError

    def iter_inputs(self, inputs, options: dict) -> Iterator[Ref]:
        raise NotImplementedError
