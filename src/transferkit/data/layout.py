"""How labelled data is laid out on disk, in one table for images and texts alike: split
folder names, the OS files to ignore, and the column names looked for in a table.

A leaf: imports nothing of ours. Both modalities read these, so a CSV of image paths and a
CSV of texts are told apart by the same column table (`data/tables.py`)."""
from __future__ import annotations

# Folder names (and `split` column values) that mean a split; anything else is a class.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
SPLIT_NAMES = ("train", "val", "test")

# OS metadata: ignored (listed as ignored, never as a skipped item).
JUNK_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
JUNK_DIRS = frozenset({"__macosx", "@eadir", "$recycle.bin"})

TEXT_SUFFIXES = (".txt",)
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}  # suffix -> delimiter
JSONL_SUFFIXES = (".jsonl", ".ndjson")

# Column names tried, in order, when the user does not name them (case-insensitive).
PATH_COLUMNS = ("path", "file", "filename", "image", "filepath", "image_path", "img", "file_path")
TEXT_COLUMNS = ("text", "sentence", "content", "document", "review", "body", "message", "comment", "tweet", "abstract", "question")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "sentiment", "intent", "topic", "tags", "y")
SPLIT_COLUMN = "split"


def is_junk(name: str) -> bool:
    """Hidden files and OS metadata files or folders."""
    low = name.lower()
    return name.startswith(".") or low in JUNK_FILES or low in JUNK_DIRS


def find_column(header, names: tuple[str, ...]) -> str | None:
    """The first header cell (as written) matching one of `names`, case-insensitively."""
    norm = {h.strip().lower(): h for h in header if h}
    return next((norm[n] for n in names if n in norm), None)
