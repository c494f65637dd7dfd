"""Texts: tables with a text column or folders of .txt files, transformers encoders (mean
pooled), tokenisation padded per batch, snippets in reports, texts and files to predict."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import TransferkitError
from .base import InputError, Modality, Preprocessor, Ref, Refused

SNIPPET = 300  # characters of a text shown in predictions.csv and reports
MAX_TEXT_CHARS = 1_000_000  # one text to serve, at most (a whole book is ~500k)


def snippet(text: str, n: int = SNIPPET) -> str:
    """The first `n` characters of a text on one line (for CSVs and reports)."""
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict:
    """Input tensors for `texts`: truncated to `max_length` tokens, padded to the longest text
    in this batch (not to max_length: short batches stay cheap)."""
    enc = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


class TextItems(torch.utils.data.Dataset):
    """(text, label) for a list of dataset item indices."""

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        return self.ds.texts[i], self.ds.target(i)


class TokenCollate:
    """A batch of (text, label) -> (token ids + mask, labels); picklable for worker processes."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch):
        ys = [y for _, y in batch]  # class indices, or (L,) float32 rows of label sets
        return tokenize(self.tokenizer, [t for t, _ in batch], self.max_length), (torch.from_numpy(np.stack(ys)) if ys and isinstance(ys[0], np.ndarray) else torch.tensor(ys, dtype=torch.int64))


class _Positioned(torch.utils.data.Dataset):
    """(text, position in the list) for extraction."""

    def __init__(self, ds, todo):
        self.ds, self.todo = ds, todo

    def __len__(self):
        return len(self.todo)

    def __getitem__(self, j):
        return self.ds.texts[self.todo[j]], j


class _PositionedCollate:
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch):
        return tokenize(self.tokenizer, [t for t, _ in batch], self.max_length), [j for _, j in batch], []


class _Unreadable(str):
    """A placeholder text for a file that could not be read; carries the reason."""


class TextPreprocessor(Preprocessor):
    """Texts -> token ids and attention masks (B, T) int64, with the run's tokenizer."""

    input_names = ("input_ids", "attention_mask")
    side_files = True  # its tokenizer travels beside an exported model
    quantization = "dynamic"  # transformer MatMuls: int8 weights, activations quantised per batch

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, int(max_length)

    def load(self, payload):
        if isinstance(payload, _Unreadable):
            raise InputError(f"cannot read ({payload})")
        text = "" if payload is None else str(payload)
        if not text.strip():
            raise InputError("empty text")
        return text

    def collate(self, items: list):
        return tokenize(self.tokenizer, items or [""], self.max_length) if items else {"input_ids": torch.zeros(0, 1, dtype=torch.int64), "attention_mask": torch.zeros(0, 1, dtype=torch.int64)}

    def example(self) -> tuple:
        b = tokenize(self.tokenizer, ["an example text to trace the model with", "a second one"], self.max_length)
        return (b["input_ids"], b["attention_mask"])

    def as_arrays(self, batch) -> dict:
        return {k: np.ascontiguousarray(batch[k].numpy(), dtype=np.int64) for k in self.input_names}

    def dynamic_axes(self) -> dict:
        return {n: {0: "batch", 1: "tokens"} for n in self.input_names}


class RawTextPreprocessor(TextPreprocessor):
    """For models that read the texts themselves (tf-idf): a batch is the list of texts."""

    input_names = ()
    side_files = False

    def __init__(self):
        self.tokenizer, self.max_length = None, 0

    def collate(self, items: list):
        return list(items)

    def example(self) -> tuple:
        raise TransferkitError("a tf-idf model has no tensor inputs to export; the run folder itself predicts and serves (`transferkit predict` / `serve RUN_DIR`)")


def load_tokenizer(folder: Path):
    from .. import _compat  # noqa: F401
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TransferkitError(f"{folder}: cannot load the tokenizer ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); the run folder or export is damaged, train or export again") from None


class TextModality(Modality):
    name = "text"
    unit = "text"
    channels_last = False
    drop_last = False
    batch_norm = False  # backbones with batch-norm layers (--train-bn)
    clip_grad_norm = 1.0  # the usual BERT fine-tuning recipe
    augments = ("none",)
    # the top layer gets lr x 0.05 = 5e-5 (the usual BERT fine-tuning rate), x 0.8 per layer below;
    # a short warm-up; no label smoothing; the head warm-up runs on cached embeddings (cheap epochs)
    defaults = dict(body_lr_mult=0.05, layer_decay=0.8, warmup_epochs=0.3, label_smoothing=0.0, head_epochs=30, augment="none")
    options = frozenset({"text_column", "label_column", "max_length", "activation_checkpointing"})

    @property
    def default_backbone(self) -> str:
        from ..backbones.text import DEFAULT_TEXT_BACKBONE

        return DEFAULT_TEXT_BACKBONE

    # ------------------------------------------------------------------ data
    def claims(self, path: Path, options: dict) -> bool:
        from ..data.tables import is_table, table_modality
        from ..data.text_sources import folder_holds_texts

        if path.is_file():
            return is_table(path) and table_modality(path, options.get("text_column")) == "text"
        return path.is_dir() and folder_holds_texts(path)

    def load(self, path: Path, options: dict):
        from ..data.text_sources import load_text_folder, load_text_table

        if path.is_file():
            return load_text_table(path, options.get("text_column"), options.get("label_column"), options.get("multi_label"), options.get("label_sep"))
        return load_text_folder(path)

    # ------------------------------------------------------------------ backbone and preprocessing
    def is_backbone(self, name: str) -> bool:
        from ..backbones.image import is_image_backbone

        return not is_image_backbone(name)

    def knows_backbone(self, name: str) -> bool:
        """A name known to be a text encoder: the offline and listed ones, or a saved model folder."""
        from ..backbones.text import TEXT_OFFLINE, TEXT_POPULAR

        return name in TEXT_OFFLINE or name in TEXT_POPULAR or (Path(name).expanduser() / "config.json").is_file()

    def prepare(self, cfg, ds, splits, uses_backbone: bool):
        """(encoder or None, the run's data config); records how many texts get truncated."""
        if not uses_backbone:
            cfg.extra.update(weights_source="none", weights_id="")
            return None, {"kind": "text", "features": "tf-idf word 1-2-grams + char 3-5-grams"}
        from ..backbones.text import create_text_backbone
        from ..log import log

        backbone = create_text_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, max_length=cfg.max_length)
        cfg.max_length = backbone.max_length
        cfg.extra.update(weights_source=backbone.weights_source, weights_id=backbone.weights_id)
        lengths = backbone.token_lengths(ds.texts)
        backbone.extra["lengths"] = lengths
        cut = lengths > backbone.max_length
        cfg.extra["truncation"] = {
            "max_length": backbone.max_length, "truncated": int(cut.sum()), "of": len(ds),
            "by_split": {k: int(cut[getattr(splits, k)].sum()) for k in ("train", "val", "test")},
            "tokens_median": float(np.median(lengths)), "tokens_p95": float(np.percentile(lengths, 95)),
        }  # fmt: skip
        log(f"{int(cut.sum())} of {len(ds)} texts are longer than {backbone.max_length} tokens and get truncated (median length {np.median(lengths):.0f} tokens)")
        return backbone, backbone.data_config

    def check_data_config(self, dc, where: Path) -> dict:
        """A text run's input settings: tokens kept per text (a tfidf run has none); an ensemble's, per member."""
        if isinstance(dc, dict) and isinstance(dc.get("members"), list) and dc["members"]:
            return {"members": [self.check_data_config(m, where) for m in dc["members"]]}
        if not isinstance(dc, dict) or dc.get("kind") != "text":
            raise TransferkitError(f"{where}: extra.data_config of a text run must say kind 'text'; train again to rebuild the run folder")
        n = dc.get("max_length")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 4 <= n <= 1_000_000):
            raise TransferkitError(f"{where}: extra.data_config.max_length {n!r} is out of range (4 to 1,000,000 tokens); train again to rebuild the run folder")
        return dict(dc)

    def preprocessor(self, data_config: dict, files: Path | None = None) -> TextPreprocessor:
        """Tokenizer from `files` (the run's encoder/ folder, or an export's tokenizer/ folder);
        a tf-idf run (no max_length) reads texts as they are."""
        if "members" in data_config:  # a run ensemble: each member with its own tokenizer (encoder_0/, encoder_1/, ... beside encoder/)
            from .base import MultiPreprocessor

            base = Path(files).parent if files is not None else Path(".")
            return MultiPreprocessor([self.preprocessor(m, base / f"encoder_{i}") for i, m in enumerate(data_config["members"])], "text")
        if data_config.get("max_length") is None:
            return RawTextPreprocessor()
        if files is None or not Path(files).is_dir():
            raise TransferkitError(f"{files}: the tokenizer files of this text model are missing; train or export it again")
        return TextPreprocessor(load_tokenizer(Path(files)), int(data_config["max_length"]))

    def describe_inputs(self, ctx) -> str:
        return f"texts (up to {ctx.config.max_length} tokens)"

    # ------------------------------------------------------------------ training batches
    def training_items(self, ds, idx, ctx, augment: str = "none"):
        return TextItems(ds, idx)

    def collate(self, ctx):
        return TokenCollate(ctx.backbone.tokenizer, ctx.backbone.max_length)

    def item_lengths(self, ctx, idx):
        lengths = ctx.backbone.extra.get("lengths")
        return lengths[np.asarray(idx)] if lengths is not None else np.asarray([len(ctx.dataset.texts[i]) for i in idx])

    def batch_order(self, n: int, batch: int, gen: torch.Generator, lengths, drop_last: bool, mega: int = 50) -> list[np.ndarray]:
        """Shuffled batches of positions whose texts have similar lengths (less padding): shuffle,
        sort within chunks of `mega` batches by length, cut into batches, shuffle the batches."""
        perm = torch.randperm(n, generator=gen).numpy()
        out = []
        for s in range(0, n, batch * mega):
            chunk = perm[s : s + batch * mega]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            out += [chunk[k : k + batch] for k in range(0, len(chunk), batch)]
        order = torch.randperm(len(out), generator=gen).tolist()
        return [out[i] for i in order]

    def eval_order(self, ctx, idx) -> np.ndarray:
        """Longest first (similar lengths share a batch)."""
        return np.argsort(-self.item_lengths(ctx, idx), kind="stable")

    def extraction_order(self, ds, todo: list[int]) -> list[int]:
        """Longest first: the slowest batches show up at once in the progress bar, and similar
        lengths share a batch (characters are a good enough proxy for tokens here)."""
        return sorted(todo, key=lambda i: -len(ds.texts[i]))

    def extraction_batches(self, backbone, ds, todo: list[int], batch_size: int, workers: int | None, placement):
        """Token batches of the texts at `todo` (in `extraction_order`), tokenised a batch ahead,
        in a thread or `workers` processes."""
        from ..loop.data import default_workers, loader

        spans = [list(range(s, min(s + batch_size, len(todo)))) for s in range(0, len(todo), batch_size)]
        items = _Positioned(ds, todo)
        return loader(items, batch_sampler=spans, workers=default_workers(len(todo), placement.device, workers), collate_fn=_PositionedCollate(backbone.tokenizer, backbone.max_length))

    # ------------------------------------------------------------------ items for prediction, checks, reports
    def raw_item(self, ds, i: int, data_config: dict):
        return ds.texts[int(i)]

    preview_kind = "snippet"  # how reports draw an item

    def preview(self, ds, i: int, size: int = 128):
        return ds.texts[int(i)]

    def prediction_columns(self, ds, idx) -> tuple[list[str], list[list[str]]]:
        """The text itself (a snippet), so a person can read what was misclassified."""
        return ["text"], [[snippet(ds.texts[int(i)])] for i in idx]

    # ------------------------------------------------------------------ inputs to predict
    def iter_inputs(self, inputs, options: dict):
        """(id, text) refs: a str given in Python is a text; a Ref passes through; a .txt file is
        one text; a folder gives its .txt files; a .csv/.tsv/.jsonl gives its text column
        (`text_column`, or found from the header)."""
        from ..data.layout import TEXT_COLUMNS
        from ..data.tables import cell_text, is_table, pick_column, read_table

        for n, item in enumerate(inputs):
            if isinstance(item, Ref):
                yield item
                continue
            if isinstance(item, str) and not isinstance(item, Path) and options.get("strings_are_texts"):
                yield Ref(f"text[{n}]", item)
                continue
            p = Path(item)
            if p.is_dir():
                files = sorted(f for f in p.rglob("*.txt") if f.is_file())
            elif p.is_file() and is_table(p):
                table = read_table(p)
                if table.rows:
                    col = pick_column(p, table.columns, options.get("text_column"), TEXT_COLUMNS, "texts", "--text-column")
                    for line, r in table.rows:
                        yield Ref(table.row_id(line), cell_text(r.get(col)))
                continue
            else:
                files = [p]
            for f in files:
                try:
                    yield Ref(str(f), f.read_text(encoding="utf-8-sig"))
                except (OSError, UnicodeDecodeError) as exc:
                    yield Ref(str(f), _Unreadable(str(exc)))

    def check_inputs(self, inputs) -> None:
        for i in inputs:
            if not isinstance(i, (Ref, str)) and not Path(i).exists():
                raise TransferkitError(f"{i}: no such file or folder; give texts, .txt files, folders of them or CSV/TSV/JSONL files with a text column")

    # ------------------------------------------------------------------ serving
    serve_hint = 'a JSON body {"text": "..."} or {"texts": ["...", ...]}'
    serve_content = "application/json"

    def serve_schema(self, max_files: int) -> dict:
        return {"application/json": {"schema": {
            "oneOf": [
                {"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}}, "required": ["text"], "additionalProperties": False},
                {"type": "object", "properties": {"texts": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}, "minItems": 1, "maxItems": max_files}}, "required": ["texts"], "additionalProperties": False},
            ],
            "description": "one text, or a list of texts to classify",
        }}}  # fmt: skip

    def read_json_texts(self, body, max_items: int) -> list[str]:
        """The texts of a JSON request: {"text": "..."} or {"texts": [...]}, checked."""
        if isinstance(body, dict) and set(body) == {"text"}:
            texts = [body["text"]]
        elif isinstance(body, dict) and set(body) == {"texts"} and isinstance(body["texts"], list):
            texts = body["texts"]
        else:
            raise Refused(422, 'send {"text": "..."} or {"texts": ["...", ...]}')
        if not texts:
            raise Refused(422, "texts: an empty list; send at least one text")
        if len(texts) > max_items:
            raise Refused(400, f"too many texts: {len(texts)}; at most {max_items} per request")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise Refused(422, f"texts[{i}]: not a string")
            if not t.strip():
                raise Refused(422, f"texts[{i}]: empty text")
            if len(t) > MAX_TEXT_CHARS:
                raise Refused(413, f"texts[{i}]: {len(t):,} characters; the limit is {MAX_TEXT_CHARS:,} per text")
        return texts

    # ------------------------------------------------------------------ old run folders
    def legacy_spec(self, meta: dict, shapes: dict, path: Path) -> dict:
        """Text run folders written before specs: the encoder from encoder/config.json, the head
        from the weights file's metadata."""
        import json

        from ..backbones.text import ENCODER_DIR
        from ..heads import POWERS

        enc = path.parent / ENCODER_DIR / "config.json"
        if not enc.is_file():
            raise TransferkitError(f"{path.parent}: a text run without {ENCODER_DIR}/config.json; the run folder is incomplete, train it again")
        try:
            config = json.loads(enc.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TransferkitError(f"{enc}: damaged ({type(exc).__name__}); train the run again") from None
        if meta.get("power", "none") not in POWERS:
            raise TransferkitError(f"{path}: unknown feature power {meta['power']!r} in its metadata; the run folder is damaged or from a newer transferkit, train again")
        config = {k: v for k, v in config.items() if k not in ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype")}
        head = {"kind": meta.get("head", "linear"), "hidden": int(meta.get("hidden", 1024)), "power": POWERS[meta.get("power", "none")]}
        return {"kind": "text_transfer", "encoder_config": config, "head": head}

    example_input = "texts.csv"

    def input_summary(self, extra: dict, data: dict) -> str | None:
        """How texts entered the model: tf-idf, or tokens kept and how many texts were truncated."""
        dc = extra.get("data_config") or {}
        t = data.get("truncation") or extra.get("truncation")
        if not t:
            return str(dc.get("features") or "texts")
        by = t.get("by_split") or {}
        split = f" (test: {by['test']:,})" if by.get("test") is not None else ""
        return (f"texts tokenized, the first {t.get('max_length'):,} tokens kept: {t.get('truncated', 0):,} of {t.get('of', 0):,} texts were longer "
                f"and got truncated{split}; median length {t.get('tokens_median', 0):,.0f} tokens, 95th percentile {t.get('tokens_p95', 0):,.0f}")

    def predict_steps(self, strategy: str | None) -> str:
        return "tf-idf + linear model" if strategy == "tfidf" else "tokenize + encoder + head"

    def card_input_lines(self, dc: dict, meta: dict) -> list[str]:
        """How to feed an exported text model, for its model card."""
        tok = meta.get("tokenizer", "the tokenizer folder")
        return [
            "- Inputs `input_ids` and `attention_mask`: int64, shape (batch, tokens); any batch size and length up to the model's.",
            f"- Preprocessing: the tokenizer saved beside the file (`{tok}/`, load it with transformers' AutoTokenizer), "
            f"truncation to {dc.get('max_length')} tokens, padding to the longest text of the batch; the model mean-pools the token vectors the mask keeps.",
        ]

    def what_it_classifies(self, n_classes: int) -> str:
        return f"Given a text, it returns a probability for each of {n_classes} classes"
