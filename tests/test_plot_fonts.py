"""Plots draw class names in any script: CJK, Greek, Arabic and Devanagari labels come out as
letters (no "Glyph ... missing from font(s) DejaVu Sans" warnings, pixels unlike the empty
boxes DejaVu Sans alone draws), and a character no font has is reported once, not per glyph."""
import functools
import io
import logging
import warnings

import numpy as np
import pytest

from transferkit.report import fonts, plots

LABELS = ["猫", "犬", "γάτα", "σκύλος", "قطة", "كلب", "बिल्ली", "कुत्ता"]
NEED_NOTO = {"猫": "CJK", "बिल्ली": "Devanagari"}  # what DejaVu Sans alone lacks


@functools.lru_cache(maxsize=1)
def _uncovered() -> str:
    """The characters of LABELS no font file on this machine has, asked of the files themselves
    (not of fonts.py, the code under test)."""
    from matplotlib import font_manager

    need = {ch for t in LABELS for ch in t if fonts._drawn(ch)}
    for path in font_manager.findSystemFonts() + [font_manager.findfont("DejaVu Sans")]:
        try:
            need -= {chr(c) for c in font_manager.get_font(path).get_charmap()}
        except Exception:  # noqa: BLE001 - an unreadable font file covers nothing
            continue
    return "".join(sorted(need))


def _require_fonts():
    gone = _uncovered()
    if gone:
        pytest.skip(f"no installed font has {gone!r}: {fonts.INSTALL_HINT}")


def _draw(fig) -> list[str]:
    """Render a figure to PNG bytes the way matplotlib always does, returning every warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png", dpi=80)
    return [str(w.message) for w in caught]


def _pixels(text: str, family) -> np.ndarray:
    plt = plots._plt()
    with plt.rc_context({"font.family": family}):
        fig = plt.figure(figsize=(2.0, 0.6), dpi=80)
        fig.text(0.05, 0.3, text, fontsize=20)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.canvas.draw()
        a = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return a


def test_a_confusion_matrix_with_cjk_greek_arabic_devanagari_labels_draws_every_glyph(caplog):
    _require_fonts()
    cm = np.arange(len(LABELS) ** 2).reshape(len(LABELS), -1)
    with caplog.at_level(logging.WARNING, logger="matplotlib"):
        for normalized in (False, True):
            fig = plots.confusion(cm, LABELS, normalized=normalized)
            ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
            assert ticks == LABELS  # the names themselves, not transliterated or dropped
            got = _draw(fig)
            plots._plt().close(fig)
            assert not [w for w in got if "Glyph" in w or "missing" in w], got
    assert not [r.getMessage() for r in caplog.records if "findfont" in r.getMessage()]  # no family asked for that is not installed


def test_the_fallback_draws_letters_where_dejavu_alone_draws_empty_boxes():
    _require_fonts()
    chosen = list(fonts.families())
    assert chosen[0] == "DejaVu Sans" and len(chosen) > 1
    for label in NEED_NOTO:
        dejavu_only = _pixels(label, ["DejaVu Sans"])
        assert not np.array_equal(_pixels(label, chosen), dejavu_only), label
    # two different CJK words are two different drawings (empty boxes would be identical)
    assert not np.array_equal(_pixels("猫", chosen), _pixels("犬", chosen))
    assert np.array_equal(_pixels("猫", ["DejaVu Sans"]), _pixels("犬", ["DejaVu Sans"]))  # the boxes: same picture


def test_every_plot_with_class_names_renders_them_quietly(caplog):
    _require_fonts()
    n = len(LABELS)
    rng = np.random.default_rng(0)
    figs = [
        plots.class_counts(LABELS, {"train": list(range(1, n + 1)), "test": [2] * n}),
        plots.embedding(rng.normal(size=(40, 2)), np.arange(40) % n, LABELS, "PCA"),
        plots.per_class_f1(["probe · 猫", "mlp"], LABELS, rng.uniform(size=(2, n))),
        plots.f1_vs_support([("probe", list(rng.uniform(size=n)), list(range(n)))], LABELS),
        plots.labelled_grid([(np.zeros((8, 8, 3), np.uint8), "猫", "बिल्ली", 0.9)]),
        plots.accuracy_vs([{"label": "γάτα قطة", "test_accuracy": 0.9, "train_s": 3.0}], "train_s", "time", "t"),
    ]
    with caplog.at_level(logging.WARNING, logger="matplotlib"):
        for fig in figs:
            got = _draw(fig)
            assert not [w for w in got if "Glyph" in w], got
            plots._plt().close(fig)
    assert not caplog.records


def test_a_character_no_font_has_is_reported_once_and_not_per_glyph(monkeypatch, capsys):
    monkeypatch.setattr(fonts, "_noted", set())
    labels = ["cat", "\ue000dog"]  # a private-use character: no font can be trusted with it
    assert fonts.missing(labels) == "\ue000"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            data = plots.png(plots.confusion(np.eye(2), labels, normalized=False))
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    assert err.count("U+E000") == 1 and "without a glyph" in err and "fonts-noto" in err, err
    assert not [str(w.message) for w in caught if "Glyph" in str(w.message)]
    assert "U+E000" in fonts.note_missing(labels)  # the sentence, for a page's notes, every time asked
    assert fonts.note_missing(["cat", "γάτα"]) is None


def test_fonts_installed_after_matplotlib_cached_its_list_are_found(monkeypatch):
    """`make setup` may install Noto after matplotlib wrote ~/.cache/matplotlib/fontlist-*.json:
    the cached list lacks them, and fonts.py must look again."""
    _require_fonts()
    from matplotlib import font_manager

    stale = [f for f in font_manager.fontManager.ttflist if not f.name.startswith("Noto")]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    fonts.families.cache_clear()
    fonts._charmaps.cache_clear()
    try:
        assert "Noto Sans CJK JP" in fonts.families() and fonts.missing(LABELS) == ""
    finally:
        monkeypatch.undo()
        fonts.families.cache_clear()
        fonts._charmaps.cache_clear()
        font_manager.fontManager._findfont_cached.cache_clear()  # answers found with the stale list


def test_arabic_and_hebrew_words_read_right_to_left_when_matplotlib_shapes_text():
    """What we get: matplotlib >= 3.11 shapes with libraqm (letters joined, words right to
    left); an older one draws separate letters left to right, and the log says so once."""
    if not fonts.shapes_text():
        pytest.skip("this matplotlib has no libraqm (before 3.11): Arabic and Hebrew are drawn unshaped, left to right")
    chosen = list(fonts.families())
    for first, phrase in (("قطة", "قطة سوداء"), ("חתול", "חתול שחורים")):
        whole, word = _ink(_pixels_wide(phrase, chosen)), _ink(_pixels_wide(first, chosen))
        x = _best_offset(whole, word)
        assert x > (whole.shape[1] - word.shape[1]) / 2, (phrase, x)  # the first word is on the right
    latin, word = _ink(_pixels_wide("cat black", chosen)), _ink(_pixels_wide("cat", chosen))
    assert _best_offset(latin, word) < 3  # and a left-to-right phrase starts at the left


def _pixels_wide(text, family):
    plt = plots._plt()
    with plt.rc_context({"font.family": family}):
        fig = plt.figure(figsize=(7, 1), dpi=100)
        fig.text(0.02, 0.3, text, fontsize=30)
        fig.canvas.draw()
        a = (np.asarray(fig.canvas.buffer_rgba())[..., 0] < 128).astype(float)
    plt.close(fig)
    return a


def _ink(a):
    cols = np.where(a.any(0))[0]
    return a[:, cols[0] : cols[-1] + 1]


def _best_offset(whole, word) -> int:
    w = word.shape[1]
    return max(range(whole.shape[1] - w + 1), key=lambda s: (whole[:, s : s + w] * word).sum() - 0.5 * (whole[:, s : s + w] != word).sum())


def test_the_fonts_chosen_for_a_figures_names_draw_the_same_pixels_as_the_whole_list():
    """Plots ask only the families their names need (font lookups per family and text were
    most of a page's drawing time); matplotlib's per-glyph fallback then takes every glyph from
    the same font as with the whole list."""
    _require_fonts()
    chosen = list(fonts.families())
    assert fonts.families_for(["cat", "dog 12 %"]) == ["DejaVu Sans"]
    for label in [*LABELS, "cat 猫 γάτα", "बिल्ली / قطة"]:
        fewer = fonts.families_for([label])
        assert fewer[0] == "DejaVu Sans" and set(fewer) <= set(chosen)
        assert np.array_equal(_pixels(label, fewer), _pixels(label, chosen)), label
    assert len(fonts.families_for(["猫"])) == 2 and len(fonts.families_for(LABELS)) < len(chosen)
