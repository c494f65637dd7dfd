"""The text side of a run folder: saving and rebuilding the encoder offline, reading texts to
predict, and predicting them. `Run` (run.py) delegates here when the run's data was text.

A text run folder holds `encoder/` (the encoder's config.json and tokenizer files) beside
`model.safetensors` (encoder + head weights), so it loads with no network and no package;
a tfidf run holds `tfidf.json` (vocabularies) and `model.safetensors` (idf, coefficients).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import TransferkitError

ENCODER_DIR = "encoder"


def snippet(text: str, n: int = 300) -> str:
    """The first `n` characters of a text on one line (for CSVs and reports)."""
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def save_text_encoder(folder: Path, backbone) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    backbone.model.config.save_pretrained(str(folder))
    backbone.tokenizer.save_pretrained(str(folder))


def load_text_model(run_dir: Path, cfg, n_classes: int, model_file: str):
    """(model, tokenizer): a TextTransferModel rebuilt from the run folder, or (TfidfModel, None)."""
    import torch
    from safetensors.torch import load_file

    from . import _compat  # noqa: F401
    from .heads import POWERS, build_head
    from .model import TextTransferModel
    from .run import safetensors_header

    path = run_dir / model_file
    if cfg.strategy == "tfidf":
        from .tfidf import TfidfModel

        return TfidfModel.load(run_dir, model_file), None
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    enc_dir = run_dir / ENCODER_DIR
    if not (enc_dir / "config.json").is_file():
        raise TransferkitError(f"{run_dir}: a text run without {ENCODER_DIR}/config.json; the run folder is incomplete, train it again")
    meta, shapes = safetensors_header(path)
    try:
        config = AutoConfig.from_pretrained(str(enc_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(enc_dir), local_files_only=True)
        hidden = int(meta.get("hidden", cfg.hidden))
        if meta.get("power", "none") not in POWERS:
            raise TransferkitError(f"{path}: unknown feature power {meta['power']!r} in its metadata; the run folder is damaged or from a newer transferkit, train again")
        head_options = {"hidden": hidden, "power": POWERS[meta.get("power", "none")]}
        # the model is first built without memory (meta device) and its shapes checked against
        # the weights file's header: a hostile config.json cannot make us allocate more than the file holds
        with torch.device("meta"):
            skeleton = TextTransferModel(AutoModel.from_config(config), build_head(meta.get("head", "linear"), int(config.hidden_size), n_classes, **head_options))
        want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        if want != shapes:
            bad = sorted(set(want) ^ set(shapes)) or sorted(k for k in want if want[k] != shapes[k])
            raise TransferkitError(f"{path}: weights do not fit the run's encoder/config.json and labels (first difference: {bad[0]}); the run folder is damaged, train again")
        model = TextTransferModel(AutoModel.from_config(config), build_head(meta.get("head", "linear"), int(config.hidden_size), n_classes, **head_options))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TransferkitError(f"{enc_dir}: cannot rebuild the encoder ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); the run folder is damaged, train again") from None
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise TransferkitError(f"{path}: weights do not fit the run's model ({str(exc).splitlines()[0][:200]})") from None
    return model.eval(), tokenizer


def read_text_inputs(inputs: Iterable[str | os.PathLike], text_column: str | None = None) -> list[tuple[str, str]]:
    """(id, text) pairs from files: a .txt file is one text; a folder gives its .txt files; a
    .csv/.tsv/.jsonl gives its text column (`text_column`, or found from the header)."""
    from .data.texts import JSONL_SUFFIXES, TABLE_SUFFIXES, _pick_column, _read_records, TEXT_COLUMNS

    out: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.txt") if f.is_file())
        elif p.is_file() and (p.suffix.lower() in TABLE_SUFFIXES or p.suffix.lower() in JSONL_SUFFIXES):
            records, _ = _read_records(p)
            if records:
                columns = list(dict.fromkeys(c for _, r in records[:1000] for c in r))
                col = _pick_column(p, columns, text_column, TEXT_COLUMNS, "texts", "--text-column")
                out += [(rid, "" if r.get(col) is None else str(r.get(col))) for rid, r in records]
            continue
        else:
            files = [p]
        for f in files:
            try:
                out.append((str(f), f.read_text(encoding="utf-8-sig")))
            except (OSError, UnicodeDecodeError) as exc:
                out.append((str(f), _Unreadable(str(exc))))
    return out


class _Unreadable(str):
    """A placeholder text for a file that could not be read; carries the reason."""


def predict_text_iter(model, tokenizer, max_length: int, classes: list[str], items: list[tuple[str, str]], top_k: int, batch_size: int = 32) -> Iterator[dict]:
    """One dict per (id, text): {'path', 'labels', 'probs', 'error'} (error '' when fine)."""
    import torch

    from .model import text_logits

    k = min(top_k, len(classes))
    for s in range(0, len(items), 256):
        chunk = items[s : s + 256]
        ok = [j for j, (_, t) in enumerate(chunk) if not isinstance(t, _Unreadable) and t.strip()]
        texts = [chunk[j][1] for j in ok]
        if not texts:
            probs = np.zeros((0, len(classes)))
        elif tokenizer is None:  # tfidf
            probs = model.predict_proba(texts)
        else:
            probs = torch.from_numpy(text_logits(model, tokenizer, max_length, texts, batch_size)).softmax(-1).numpy()
        rows = dict(zip(ok, probs))
        for j, (rid, t) in enumerate(chunk):
            if j not in rows:
                why = f"cannot read ({t})" if isinstance(t, _Unreadable) else "empty text"
                yield {"path": rid, "labels": [], "probs": [], "error": why}
                continue
            top = np.argsort(-rows[j])[:k]
            yield {"path": rid, "labels": [classes[t] for t in top], "probs": [float(rows[j][t]) for t in top], "error": ""}
