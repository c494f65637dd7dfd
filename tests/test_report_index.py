"""`write_index(folder)`: one page listing every run and comparison under a folder, read from
disk (file://) in headless Chromium: every link opens the page of the run it names, and a
click on a column's name sorts the rows by it."""
import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.errors import TransferkitError
from transferkit.report.facts import load_run_facts
from transferkit.report.index_page import write_index

from browser import Browser, find_chromium
from conftest import TINY, write_class_folder
from test_page_layout import SIZES, assert_fits_the_screen, assert_no_overlaps, click, screenshot, wait

# red and crimson are nearly the same colour: the image run makes mistakes, so accuracies differ
CLASSES = {"red": (200, 40, 40), "crimson": (185, 45, 50), "green": (40, 180, 60)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """runs/ with an image run, a text run, a comparison (two runs inside), a run whose page
    was never written, and a hidden folder and a plain folder that are not runs."""
    from textdata import make_texts, write_csv

    base = tmp_path_factory.mktemp("index")
    root = base / "runs"
    colours = write_class_folder(base / "colours", per_class=14, classes=CLASSES)
    tk.train(str(colours), out=str(root / "images" / "lite"), image_size=64, cache_dir=str(base / "cache"), **TINY)
    data = write_csv(base / "topics.csv", make_texts(30, length=(1, 4)))
    tk.train(str(data), strategy="tfidf", out=str(root / "texts" / "tfidf"))
    photos = write_class_folder(base / "photos", per_class=12)
    tk.compare(str(photos), strategies="probe,mlp", backbones=TINY["backbone"], out=str(root / "study"), pretrained=False, image_size=32, epochs=2, batch_size=16, workers=0, cache_dir=str(base / "cache"), ensemble=False)
    shutil.copytree(root / "texts" / "tfidf", root / "texts" / "no page yet")
    (root / "texts" / "no page yet" / "report.html").unlink()
    shutil.copytree(root / "texts" / "tfidf", root / ".trash" / "old")  # hidden: not listed
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    return root


RUNS = ["images/lite", "texts/tfidf", "texts/no page yet", "study/probe-test_efficientnet", "study/mlp"]


def _rows(page: str) -> dict[str, str]:
    """{folder path: kind} of the index table's rows."""
    return {m[2]: m[1] for m in re.finditer(r'<tr data-kind="(\w+)" data-path="([^"]+)">', page)}


def test_the_index_lists_every_run_and_comparison_with_its_numbers(runs):
    path = write_index(runs)
    assert path == runs / "index.html"
    page = path.read_text(encoding="utf-8")
    rows = _rows(page)
    assert rows == {**{p: "run" for p in RUNS}, "study": "comparison"}  # not .trash, not notes
    for p in RUNS:
        m = json.loads((runs / p / "metrics.json").read_text())
        row = page.split(f'data-path="{p}"')[1].split("</tr>")[0]
        assert f'data-field="test_accuracy" data-v="{m["test"]["accuracy"]}">{m["test"]["accuracy"]:.4f}<' in row
        assert f'data-field="macro_f1" data-v="{m["test"]["macro_f1"]}">' in row
        assert datetime.fromtimestamp((runs / p / "metrics.json").stat().st_mtime).strftime("%Y-%m-%d %H:%M") in row
        assert (f'href="{p.replace(" ", "%20")}/report.html"' in row) == (p != "texts/no page yet")
        assert (p.startswith("study/")) == ("in study" in row)
    study = page.split('data-path="study"')[1].split("</tr>")[0]
    board = json.loads((runs / "study" / "leaderboard.json").read_text())
    best = max(board, key=lambda r: r["test_accuracy"])
    assert f">{best['test_accuracy']:.4f}<" in study and "probe, mlp" in study and "2 runs" in study
    assert "1 folder has no report.html yet (texts/no page yet)" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing fetched


def test_a_folder_without_runs_is_refused_with_what_it_needs(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(TransferkitError, match=r"no run folders \(config.json \+ metrics.json\) or comparison folders \(leaderboard.json\)"):
        write_index(tmp_path / "empty")
    assert not (tmp_path / "empty" / "index.html").exists()


def _expected_title(folder: Path) -> str:
    if (folder / "leaderboard.json").is_file():
        return f"transferkit comparison: {folder.name}"
    return f"transferkit run: {load_run_facts(folder).title}"


@pytest.fixture(scope="module")
def chromium():
    chrome, driver, why = find_chromium()
    if why:
        pytest.skip(why)
    return chrome, driver


ORDER = "return Array.from(document.querySelectorAll('#index-table tbody tr')).map(tr => tr.dataset.path)"
COLUMN = "return Array.from(document.querySelectorAll('#index-table tbody tr')).map(tr => tr.cells[arguments[0]].dataset.v)"


def test_every_link_opens_its_run_and_headers_sort(runs, chromium, tmp_path):
    index = write_index(runs)
    b = Browser(*chromium, width=1280, height=900)
    b.size_name = "laptop"
    try:
        b.open(index)
        hrefs = b.js("return Array.from(document.querySelectorAll('#index-table a')).map(a => [a.closest('tr').dataset.path, a.getAttribute('href')])")
        assert sorted(p for p, _ in hrefs) == sorted(set(RUNS + ["study"]) - {"texts/no page yet"})
        for path, href in hrefs:
            b.open(index)
            start = b.js("return location.href")
            click(b, f'#index-table a[href="{href}"]')  # a real click on the link
            wait(b, "return location.href !== arguments[0] && document.readyState === 'complete'", start)
            where, title, h1 = b.js("const h = document.querySelector('h1'); return [decodeURI(location.pathname), document.title, h ? h.textContent.trim() : null]")
            assert where == (runs / path / "report.html").resolve().as_posix(), (path, where)
            want = _expected_title(runs / path)
            assert title == want and h1 == want, (path, title, h1)

        b.open(index)
        before = b.js(ORDER)
        dates = [float(v) for v in b.js(COLUMN, 7)]
        assert dates == sorted(dates, reverse=True)  # newest first until asked otherwise
        click(b, "#index-table th:nth-child(1) button")  # name: A to Z
        names = b.js(ORDER)
        assert names == sorted(before, key=str.lower) and names != before
        click(b, "#index-table th:nth-child(1)")  # again: Z to A
        assert b.js(ORDER) == names[::-1]
        click(b, "#index-table th:nth-child(6) button")  # test accuracy, as numbers
        acc = [float(v) for v in b.js(COLUMN, 5)]
        assert acc == sorted(acc) and b.js("return document.querySelector('#index-table th:nth-child(6)').getAttribute('aria-sort')") == "ascending"
        assert acc[0] < 1.0, "the image run (red vs crimson) should make mistakes: something to sort"
        click(b, "#index-table th:nth-child(6) button")
        assert [float(v) for v in b.js(COLUMN, 5)] == sorted(acc, reverse=True)
        click(b, "#index-table th:nth-child(2) button")  # kind: the comparison first
        assert b.js(ORDER)[0] == "study"
        screenshot(b, _shots(tmp_path), "index")
    finally:
        b.close()


def _shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("TRANSFERKIT_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_the_index_fits_a_phone(runs, chromium, tmp_path):
    index = write_index(runs)
    w, h, mobile = SIZES["phone"]
    b = Browser(*chromium, width=w, height=h, mobile=mobile)
    b.size_name = "phone"
    try:
        b.open(index)
        assert_fits_the_screen(b, "index page")
        assert_no_overlaps(b, "body", "index page")
        moved = b.js("const s = document.querySelector('.scroll'); s.scrollLeft = 60; return [s.scrollWidth > s.clientWidth, s.scrollLeft, getComputedStyle(s).overflowX]")
        assert moved[0] and moved[1] > 0 and moved[2] == "auto"  # the wide table scrolls in its box
        screenshot(b, _shots(tmp_path), "index")
    finally:
        b.close()
