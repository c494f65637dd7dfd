"""Fonts for the plots, so class names in any script come out as letters, not empty boxes.

matplotlib draws with one font family unless given a list; since 3.6 a list falls back glyph
by glyph (a label mixing Latin and 猫 takes each character from the first font that has it),
and since 3.11 text is shaped with libraqm, so Arabic letters join and read right to left and
Devanagari clusters are composed. DejaVu Sans, matplotlib's own font and our look, has Latin,
Greek, Cyrillic and basic Arabic but no CJK or Indic scripts; Debian's Noto fonts
(fonts-noto-core, fonts-noto-cjk) cover the rest. Only installed families go into the list: a
missing one would make matplotlib log "findfont: Font family ... not found" for every text.

Where no installed font has a character, the plot is drawn without it (the tables of the
page still show the name) and `note_missing` says so once per process instead of
matplotlib's warning per glyph and per draw.
"""
from __future__ import annotations

import unicodedata
import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterable

PRIMARY = "DejaVu Sans"  # ships with matplotlib: always there
# Tried in order after PRIMARY, for the characters it lacks; the first with a glyph wins.
# Noto (Debian: fonts-noto-core, fonts-noto-cjk; fonts-droid-fallback is a 2 MB CJK stand-in),
# then what macOS and Windows bring.
FALLBACK = (
    "Noto Sans", "Noto Sans CJK JP", "Droid Sans Fallback", "Noto Sans Arabic", "Noto Sans Hebrew", "Noto Sans Devanagari",
    "Noto Sans Bengali", "Noto Sans Gurmukhi", "Noto Sans Gujarati", "Noto Sans Oriya", "Noto Sans Tamil",
    "Noto Sans Telugu", "Noto Sans Kannada", "Noto Sans Malayalam", "Noto Sans Sinhala", "Noto Sans Thai",
    "Noto Sans Lao", "Noto Sans Khmer", "Noto Sans Myanmar", "Noto Sans Georgian", "Noto Sans Armenian",
    "Noto Sans Ethiopic", "Noto Sans Thaana", "Noto Sans Syriac", "Noto Sans Mongolian", "Noto Serif Tibetan",
    "Noto Sans Symbols", "Noto Sans Symbols2", "Noto Sans Math",
    "Arial Unicode MS", "PingFang SC", "Hiragino Sans", "Apple SD Gothic Neo", "Microsoft YaHei", "Yu Gothic",
    "Malgun Gothic", "Nirmala UI", "Segoe UI", "Segoe UI Symbol",
)  # fmt: skip
INSTALL_HINT = "install a font that has them (Debian: apt-get install fonts-noto-core fonts-noto-cjk)"
GLYPH_WARNING = r"Glyph \d+ .*missing from (current )?font"  # matplotlib's per-glyph warning

_noted: set[str] = set()  # characters (and "shaping") already reported in this process


@lru_cache(maxsize=1)
def families() -> tuple[str, ...]:
    """PRIMARY, then the FALLBACK families installed here, for rcParams["font.family"]."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    if not known.issuperset(FALLBACK):
        _add_new_system_fonts(font_manager)
        known = {f.name for f in font_manager.fontManager.ttflist}
    return (PRIMARY,) + tuple(f for f in FALLBACK if f in known)


def configure(rcparams, texts: Iterable[str] | None = None) -> None:
    """Draw with `families()` (per-glyph fallback) from now on: matplotlib's rcParams; given the
    `texts` a figure will show, only the families they need (`families_for`)."""
    rcparams["font.family"] = list(families()) if texts is None else families_for(texts)


def families_for(texts: Iterable[str]) -> list[str]:
    """The families of `families()` that draw `texts`: PRIMARY, and for each character it lacks
    the first family that has it. matplotlib takes each glyph from the first family of the list
    that has it, so this shorter list draws the very same pixels, while every text it lays out
    asks fewer fonts (with the whole list, font lookups were most of a run page's drawing time)."""
    fams, maps = families(), _charmaps()
    keep = {0}
    for t in texts:
        for ch in set(str(t)):
            if _drawn(ch) and ord(ch) not in maps[0]:
                keep.update(next(([i] for i in range(1, len(maps)) if ord(ch) in maps[i]), []))
    return [fams[i] for i in sorted(keep)]


def _add_new_system_fonts(font_manager) -> None:
    """matplotlib caches the font list once (~/.cache/matplotlib/fontlist-*.json) and never
    looks again: fonts installed since (say, by `make setup`) stay invisible. Add the system
    font files the cache lacks to this process's font manager (~0.2 s for 300 files)."""
    cached = {f.fname for f in font_manager.fontManager.ttflist}
    for path in sorted(set(font_manager.findSystemFonts()) - cached):
        try:
            font_manager.fontManager.addfont(path)
        except Exception:  # noqa: BLE001 - a broken font file must not stop a report
            continue


@lru_cache(maxsize=1)
def _charmaps() -> tuple[frozenset, ...]:
    """The characters each family of `families()` has, in order."""
    from matplotlib import font_manager
    from matplotlib.font_manager import FontProperties

    out = []
    for fam in families():
        try:
            path = font_manager.findfont(FontProperties(family=fam), fallback_to_default=False)
            out.append(frozenset(font_manager.get_font(path).get_charmap()))
        except Exception:  # noqa: BLE001 - unreadable: as if absent
            out.append(frozenset())
    return tuple(out)


def _drawn(ch: str) -> bool:
    """Characters that need a glyph: not spaces, controls or invisible format marks (ZWJ)."""
    return not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")


def missing(texts: Iterable[str]) -> str:
    """The characters of `texts` that no font in `families()` has, in order of appearance.
    Private-use and unassigned code points count as missing (no font can be trusted with them)."""
    maps = _charmaps()
    seen: dict[str, None] = {}
    for t in texts:
        for ch in str(t):
            if ch in seen:
                continue
            if not _drawn(ch):
                if unicodedata.category(ch) in ("Co", "Cn"):
                    seen[ch] = None
                continue
            if not any(ord(ch) in m for m in maps):
                seen[ch] = None
    return "".join(seen)


def shapes_text() -> bool:
    """Whether this matplotlib shapes text (libraqm, matplotlib >= 3.11): joined Arabic letters,
    right-to-left words, composed Indic clusters. Before, letters stand alone, left to right."""
    from matplotlib import ft2font

    return bool(getattr(ft2font, "__libraqm_version__", None))


def _needs_shaping(ch: str) -> bool:
    return unicodedata.bidirectional(ch) in ("R", "AL") or (ord(ch) >= 0x0900 and unicodedata.category(ch) in ("Mn", "Mc"))


def note_missing(texts: Iterable[str]) -> str | None:
    """Say once per process what the plots cannot draw right: characters no installed font
    has, and right-to-left or combining scripts where matplotlib cannot shape text. Returns
    the sentence (None when all is well), for a page's notes."""
    texts = [str(t) for t in texts]
    chars = missing(texts)
    said = []
    if chars:
        said.append(
            f"the plots draw {', '.join(_describe(c) for c in chars[:8])}{' and more' if len(chars) > 8 else ''} "
            f"without a glyph (no installed font has them; the tables show the names in full); {INSTALL_HINT}"
        )
    unshaped = not shapes_text() and any(_needs_shaping(ch) for t in texts for ch in t)
    if unshaped:
        said.append("this matplotlib cannot shape text: Arabic or Hebrew labels come out as separate letters left to right, Indic ones uncomposed (matplotlib >= 3.11 shapes them)")
    if not said:
        return None
    sentence = "; ".join(said)
    new = set(chars) | ({"shaping"} if unshaped else set())
    if new - _noted:
        _noted.update(new)
        from ..log import log

        log(sentence)
    return sentence


def _describe(ch: str) -> str:
    return f"'{ch}' (U+{ord(ch):04X})"


@contextmanager
def quiet_missing_glyphs():
    """Drop matplotlib's per-glyph warnings while drawing: `note_missing` has said it once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GLYPH_WARNING)
        yield
