"""What a person sees: the boxes of the serve page, a run page and a comparison page in
headless Chromium at laptop (1280 px) and phone (390 px) width, measured with
getBoundingClientRect: the drop zone is a box around its text, result cards sit below it
without overlapping, images have their size, nothing is wider than the screen, wide tables
scroll inside their own box. Screenshots go to $TRANSFERKIT_SCREENSHOTS when set (else a
temporary folder); look at them."""
import base64
import json
import os
import time
from pathlib import Path

import pytest
import requests

from browser import Browser, find_chromium
from conftest import TINY, write_class_folder
from serving import cli_server, thread_server

CHROMIUM, CHROMEDRIVER, WHY = find_chromium()
pytestmark = [pytest.mark.skipif(bool(WHY), reason=WHY or "-")]

PAGE = Path(__file__).resolve().parents[1] / "src" / "transferkit" / "static" / "index.html"
SIZES = {"laptop": (1280, 900, False), "phone": (390, 844, True)}
# a long name and two scripts: labels that must neither widen nor break the pages
CLASSES = {"red": (200, 40, 40), "猫 neko": (40, 180, 60), "a_rather_long_class_name_for_blue_things": (40, 60, 200)}
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver key of an element reference


# --------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module", params=list(SIZES))
def browser(request):
    w, h, mobile = SIZES[request.param]
    b = Browser(CHROMIUM, CHROMEDRIVER, width=w, height=h, mobile=mobile)
    b.size_name, b.width = request.param, w
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("TRANSFERKIT_SCREENSHOTS")
    d = Path(out) if out else tmp_path_factory.mktemp("screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def goto(b: Browser, url: str) -> None:
    b._call("POST", b._s("/url"), {"url": url})


def wait(b: Browser, script: str, *args, timeout: float = 60):
    """Poll a JavaScript expression's `return` until it is truthy; returns its value."""
    t0 = time.time()
    while True:
        v = b.js(script, *args)
        if v:
            return v
        if time.time() - t0 > timeout:
            raise TimeoutError(f"still false after {timeout} s: {script}")
        time.sleep(0.2)


def element(b: Browser, css: str) -> str:
    return b._call("POST", b._s("/element"), {"using": "css selector", "value": css})[ELEMENT]


def click(b: Browser, css: str) -> None:
    """A real click (WebDriver moves the pointer there: the element must be visible and on top)."""
    b._call("POST", b._s(f"/element/{element(b, css)}/click"), {})


def type_into(b: Browser, css: str, text: str) -> None:
    b._call("POST", b._s(f"/element/{element(b, css)}/value"), {"text": text})


def screenshot(b: Browser, folder: Path, name: str) -> Path:
    """The whole page (beyond the viewport, also with phone emulation) as a PNG."""
    cdp = lambda cmd, params=None: b._call("POST", b._s("/goog/cdp/execute"), {"cmd": cmd, "params": params or {}})  # noqa: E731
    size = cdp("Page.getLayoutMetrics")["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
    data = cdp("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
    path = folder / f"{name}-{b.size_name}.png"
    path.write_bytes(base64.b64decode(data))
    assert path.stat().st_size > 2000
    return path


# ---------------------------------------------------------------------- boxes, in page px
BOXES = """
const out = [];
for (const e of document.querySelectorAll(arguments[0])) {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  out.push({left: r.left + scrollX, top: r.top + scrollY, right: r.right + scrollX, bottom: r.bottom + scrollY, width: r.width, height: r.height,
            display: s.display, overflowX: s.overflowX, content: e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight), scrollWidth: e.scrollWidth, clientWidth: e.clientWidth, clientHeight: e.clientHeight,
            naturalWidth: e.naturalWidth || 0, naturalHeight: e.naturalHeight || 0, complete: e.complete === undefined ? true : e.complete,
            text: (e.textContent || '').trim().slice(0, 80), cls: e.className});
}
return out;"""

# the boxes of the text lines inside an element (a Range's client rects): what a reader sees
TEXT_BOXES = """
const out = [];
const walker = document.createTreeWalker(document.querySelector(arguments[0]), NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!n.textContent.trim()) continue;
  const range = document.createRange(); range.selectNodeContents(n);
  for (const r of range.getClientRects()) out.push({left: r.left + scrollX, top: r.top + scrollY, right: r.right + scrollX, bottom: r.bottom + scrollY, text: n.textContent.trim().slice(0, 40)});
}
return out;"""

# sibling boxes that overlap (inline boxes and table internals excepted: they wrap or are laid out by the table)
OVERLAPS = """
const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
const boxed = e => { const s = getComputedStyle(e);
  return !['inline', 'contents', 'none', 'table-row', 'table-cell', 'table-row-group', 'table-header-group', 'table-column', 'table-column-group'].includes(s.display)
    && !['absolute', 'fixed'].includes(s.position) && !['SCRIPT', 'STYLE', 'BR'].includes(e.tagName); };
const bad = [];
const root = document.querySelector(arguments[0]);
for (const parent of [root, ...root.querySelectorAll('*')]) {
  const kids = Array.from(parent.children).filter(boxed).map(e => [e, e.getBoundingClientRect()]).filter(([e, r]) => r.width > 0.5 && r.height > 0.5);
  for (let i = 0; i < kids.length; i++) for (let j = i + 1; j < kids.length; j++) {
    const [a, ra] = kids[i], [b, rb] = kids[j];
    const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left), h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
    if (w > 1 && h > 1) bad.push(name(a) + ' overlaps ' + name(b) + ' by ' + Math.round(w) + 'x' + Math.round(h) + ' px');
  }
}
return bad;"""

# elements reaching past the screen's edges that are not inside a box scrolling sideways
OUTSIDE = """
const W = document.documentElement.clientWidth;
const scroller = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
  if (['auto', 'scroll'].includes(getComputedStyle(p).overflowX)) return p; } return null; };
const bad = [];
for (const e of document.body.querySelectorAll('*')) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if ((r.right > W + 1 || r.left < -1) && !scroller(e)) bad.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className + ' [' + Math.round(r.left) + ', ' + Math.round(r.right) + ']');
}
return {bad: bad.slice(0, 20), docWidth: document.documentElement.scrollWidth, viewport: W};"""


def boxes(b, css):
    return b.js(BOXES, css)


def box(b, css):
    got = boxes(b, css)
    assert len(got) == 1, (css, len(got))
    return got[0]


def inside(inner, outer, tol=1.0) -> bool:
    return inner["left"] >= outer["left"] - tol and inner["right"] <= outer["right"] + tol and inner["top"] >= outer["top"] - tol and inner["bottom"] <= outer["bottom"] + tol


def overlap(a, b) -> bool:
    return min(a["right"], b["right"]) - max(a["left"], b["left"]) > 1 and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 1


def assert_fits_the_screen(b, what: str) -> None:
    got = b.js(OUTSIDE)
    assert got["docWidth"] <= got["viewport"] + 1, f"{what}: the page is {got['docWidth']} px wide on a {got['viewport']} px screen"
    assert not got["bad"], f"{what}: past the screen's edge: {got['bad']}"


def assert_no_overlaps(b, root: str, what: str) -> None:
    bad = b.js(OVERLAPS, root)
    assert not bad, f"{what}: {bad[:10]}"


def assert_stacked(cards: list[dict], above: dict, what: str) -> None:
    """Cards one under the other, in order, all below `above`, none over another."""
    assert cards, what
    assert cards[0]["top"] >= above["bottom"] - 1, f"{what}: the first card starts above what it follows"
    for a, c in zip(cards, cards[1:]):
        assert c["top"] >= a["bottom"] - 1, f"{what}: a card overlaps the one before it"
    for i, a in enumerate(cards):
        for c in cards[i + 1 :]:
            assert not overlap(a, c), what


def assert_texts_inside(b, css: str, outer: dict, what: str) -> None:
    lines = b.js(TEXT_BOXES, css)
    assert lines, f"{what}: no text"
    out = [t["text"] for t in lines if not inside(t, outer)]
    assert not out, f"{what}: text outside its box: {out}"


# -------------------------------------------------------------------------- the serve page
def _drop_files(b, files: list[tuple[str, bytes]]) -> None:
    """A real drop event carrying files, as from a desktop."""
    b.js(
        """const dt = new DataTransfer();
           for (const [name, b64] of arguments[0]) dt.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name, {type: 'image/png'}));
           const zone = document.getElementById('drop');
           for (const t of ['dragenter', 'dragover', 'drop']) zone.dispatchEvent(new DragEvent(t, {dataTransfer: dt, bubbles: true, cancelable: true}));""",
        [[n, base64.b64encode(data).decode()] for n, data in files],
    )


def _card_rows_fit(b, card_css: str, what: str) -> None:
    """In every card: the label, its bar and its percentage side by side inside the card,
    the percentage not cut off."""
    cards = boxes(b, card_css)
    for i, c in enumerate(cards):
        rows = b.js(
            """const c = document.querySelectorAll(arguments[0])[arguments[1]];
               return Array.from(c.querySelectorAll('.row')).map(r => Array.from(r.children).map(e => { const q = e.getBoundingClientRect();
                 return {left: q.left + scrollX, right: q.right + scrollX, top: q.top + scrollY, bottom: q.bottom + scrollY, sw: e.scrollWidth, cw: e.clientWidth, cls: e.className}; }));""",
            card_css,
            i,
        )
        assert rows, f"{what}: card {i} has no label rows"
        for cells in rows:
            assert [x["cls"] for x in cells] == ["label", "track", "pct"], cells
            for x in cells:
                assert inside(x, c), f"{what}: {x['cls']} outside card {i}"
            label, track, pct = cells
            assert label["right"] <= track["left"] + 0.5 and track["right"] <= pct["left"] + 0.5, f"{what}: label, bar and % overlap"
            assert track["right"] - track["left"] >= 40, f"{what}: the bar is {track['right'] - track['left']:.0f} px wide"
            assert pct["sw"] <= pct["cw"] + 1, f"{what}: the percentage is cut off ({pct['sw']} > {pct['cw']} px)"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_class_folder(tmp_path_factory.mktemp("layout") / "photos", per_class=16, classes=CLASSES)


@pytest.fixture(scope="module")
def image_run(photos) -> Path:
    """A tiny run (test_efficientnet, random weights), as conftest's tiny_run, on class names
    that are long or not Latin."""
    import transferkit as tk

    out = photos.parent / "run"
    tk.train(str(photos), out=str(out), image_size=64, cache_dir=str(photos.parent / "cache"), **TINY)
    return out


@pytest.fixture(scope="module")
def comparison(photos) -> Path:
    import transferkit as tk

    out = photos.parent / "study"
    tk.compare(str(photos), strategies="probe,mlp", backbones=TINY["backbone"], out=str(out), pretrained=False, image_size=32, epochs=2, batch_size=16, workers=0, cache_dir=str(photos.parent / "cache"))
    return out


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    import transferkit as tk
    from textdata import make_texts, write_csv

    root = tmp_path_factory.mktemp("text-layout")
    data = write_csv(root / "topics.csv", make_texts(30))
    return Path(tk.train(str(data), strategy="tfidf", out=str(root / "run")).dir)


def test_serve_page_drop_zone_and_image_cards(browser, image_run, photos, shots):
    from transferkit.server import create_app

    files = [(p.name, p.read_bytes()) for p in (sorted((photos / c).iterdir())[0] for c in CLASSES)]
    files[0] = ("a_photo_with_a_very_long_file_name_that_cannot_fit_on_one_line_of_a_phone.png", files[0][1])
    with thread_server(create_app(image_run)) as base:
        goto(browser, base + "/")
        wait(browser, "return document.querySelector('main').dataset.mode === 'image' && document.getElementById('about').textContent.includes('3 classes')")
        main = box(browser, "main")
        zone, about, wrap = box(browser, "#drop"), box(browser, "#about"), box(browser, "#image-mode")
        assert zone["display"] == "block" and box(browser, "#text-mode")["height"] == 0
        # a box across its container, below the classes line, around its text
        assert abs(zone["width"] - wrap["width"]) <= 1 and abs(wrap["width"] - main["content"]) <= 1, (zone, wrap, main)
        assert zone["top"] >= about["bottom"] - 1, "the drop zone overlaps the classes line"
        assert zone["height"] >= 80, zone
        assert_texts_inside(browser, "#drop", zone, "drop zone")
        assert_texts_inside(browser, "#about", about, "classes line")
        screenshot(browser, shots, "serve-empty")

        _drop_files(browser, files)
        wait(browser, "return document.querySelectorAll('.prediction').length === 3")
        picked = sorted((photos / "red").iterdir())[1]
        type_into(browser, "#file", str(picked))  # the file picker too (its input is hidden, not gone)
        wait(browser, "return document.querySelectorAll('.prediction').length === 4")
        cards = boxes(browser, ".prediction")
        assert_stacked(cards, zone, "image cards")
        names = browser.js("return Array.from(document.querySelectorAll('.prediction .name')).map(e => e.textContent)")
        assert names == [picked.name] + [n for n, _ in files]  # newest first; a drop's files in the order dropped
        tops = browser.js("return Array.from(document.querySelectorAll('.prediction .row.top .label')).map(e => e.textContent)")
        assert len(tops) == 4 and set(tops) <= set(CLASSES)  # each card leads with one of the model's classes
        for c in cards:
            assert c["left"] >= main["left"] and c["right"] <= main["right"] + 0.5
        side = 132 if browser.size_name == "laptop" else 84
        imgs = boxes(browser, ".prediction img")
        assert len(imgs) == 4
        for img, c in zip(imgs, cards):
            assert img["complete"] and img["naturalWidth"] > 0, "an image did not load"
            assert abs(img["width"] - side) < 0.5 and abs(img["height"] - side) < 0.5, (img["width"], img["height"], side)
            assert inside(img, c)
        for name, c in zip(boxes(browser, ".prediction .name"), cards):  # a long file name ends in "…" inside its card
            assert name["right"] <= c["right"] + 0.5 and name["height"] < 30
        _card_rows_fit(browser, ".prediction", "image cards")
        assert_no_overlaps(browser, "main", "serve page")
        assert_fits_the_screen(browser, "serve page")
        screenshot(browser, shots, "serve-images")


def _contract_app(modality: str, labels: list[str], seen: list):
    """A stand-in server speaking the serve contract (issue 23): /health with "modality",
    text predictions with "text", answers below the confidence floor marked "uncertain"."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse

    app = FastAPI()

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "modality": modality, "classes": len(labels)}

    @app.get("/labels")
    async def get_labels():
        return {"labels": labels}

    def ranked(i: int, sure: bool) -> dict:
        order = labels[i % len(labels) :] + labels[: i % len(labels)]
        probs = [0.91, 0.06, 0.03] if sure else [0.41, 0.33, 0.26]
        return {"labels": order, "probs": probs, "uncertain": not sure}

    @app.post("/predict")
    async def predict(request: Request, top_k: int = 5):
        if modality == "text":
            body = await request.json()
            seen.append(body)
            texts = body.get("texts") or [body["text"]]
            preds = [{"text": t if len(t) <= 120 else t[:119] + "…", **ranked(i, "maybe" not in t)} for i, t in enumerate(texts)]
        else:
            form = await request.form()
            files = form.getlist("files")
            seen.append([f.filename for f in files])
            preds = [{"filename": f.filename, **ranked(i, i != 1)} for i, f in enumerate(files)]
        return {"predictions": preds, "model": "stand-in"}

    return app


TEXTS = [
    "the team won the cup after a late goal",
    "maybe rain, maybe sun: the forecast cannot decide",
    "profit and loss " * 12 + "in one very long line that must wrap inside its card and not widen the page",
]


def _text_mode_checks(b, shots, name: str, texts: list[str]) -> list[dict]:
    """Type texts (one per line, a blank line among them), press Classify; check the cards'
    boxes. Returns the cards' texts and labels."""
    wait(b, "return document.querySelector('main').dataset.mode === 'text' && /\\d+ classes/.test(document.getElementById('about').textContent)")
    form, area = box(b, "#text-mode"), box(b, "#texts")
    assert box(b, "#image-mode")["height"] == 0 and box(b, "#drop")["height"] == 0, "the drop zone shows for a text model"
    main = box(b, "main")
    assert area["height"] >= 80 and abs(area["width"] - main["content"]) <= 1, area
    assert area["top"] >= box(b, "#about")["bottom"] - 1
    button = box(b, "#classify")
    assert inside(button, form) and button["top"] >= area["bottom"] - 1
    type_into(b, "#texts", "\n".join(texts[:1] + [""] + texts[1:]))
    click(b, "#classify")
    wait(b, "return document.querySelectorAll('.prediction').length === arguments[0]", len(texts))
    cards = boxes(b, ".prediction")
    assert_stacked(cards, form, "text cards")
    for c in cards:
        assert c["left"] >= main["left"] and c["right"] <= main["right"] + 0.5
    assert not boxes(b, ".prediction img")
    for t, c in zip(boxes(b, ".prediction .name"), cards):
        assert inside(t, c), "a text reaches out of its card"
    _card_rows_fit(b, ".prediction", "text cards")
    assert_no_overlaps(b, "main", "text page")
    assert_fits_the_screen(b, "text page")
    screenshot(b, shots, name)
    return b.js(
        """return Array.from(document.querySelectorAll('.prediction')).map(c => ({
             text: c.querySelector('.name').textContent, uncertain: c.classList.contains('uncertain'),
             flag: c.querySelector('.flag') ? c.querySelector('.flag').textContent : null,
             labels: Array.from(c.querySelectorAll('.row .label')).map(e => e.textContent),
             color: getComputedStyle(c.querySelector('.row .label')).color, bar: getComputedStyle(c.querySelector('.bar')).backgroundColor}));"""
    )


def test_serve_page_text_mode_follows_the_contract(browser, shots):
    """Against a stand-in server speaking the contract: works before the real text server does."""
    labels = ["sport", "weather", "money"]
    seen: list = []
    with thread_server(_contract_app("text", labels, seen)) as base:
        goto(browser, base + "/")
        cards = _text_mode_checks(browser, shots, "serve-text-contract", TEXTS)
    assert seen == [{"texts": TEXTS}]  # one request, one text per line, the blank line dropped
    assert [c["text"] for c in cards[:2]] == TEXTS[:2] and cards[2]["text"].endswith("…")  # as the server shortened it
    assert [c["labels"][0] for c in cards] == ["sport", "weather", "money"]
    sure, unsure = cards[0], cards[1]
    assert unsure["uncertain"] and unsure["flag"] == "uncertain" and not sure["uncertain"] and sure["flag"] is None
    assert unsure["color"] != sure["color"] and unsure["bar"] != sure["bar"]  # greyed


def test_serve_page_greys_uncertain_image_answers(browser, photos, shots):
    labels = list(CLASSES)
    seen: list = []
    files = [(f"{i}.png", (sorted((photos / c).iterdir())[0]).read_bytes()) for i, c in enumerate(CLASSES)]
    with thread_server(_contract_app("image", labels, seen)) as base:
        goto(browser, base + "/")
        wait(browser, "return document.querySelector('main').dataset.mode === 'image'")
        _drop_files(browser, files)
        wait(browser, "return document.querySelectorAll('.prediction').length === 3")
        flags = browser.js("return Array.from(document.querySelectorAll('.prediction')).map(c => [c.classList.contains('uncertain'), c.querySelector('.flag') && c.querySelector('.flag').textContent, getComputedStyle(c.querySelector('img')).filter])")
        assert flags[1][:2] == [True, "uncertain"] and flags[1][2] != "none" and flags[0] == [False, None, "none"]
        assert_stacked(boxes(browser, ".prediction"), box(browser, "#drop"), "image cards")
        assert_fits_the_screen(browser, "serve page, uncertain answers")
        screenshot(browser, shots, "serve-uncertain")
    assert seen == [[n for n, _ in files]]


def test_serve_page_classifies_texts_with_a_text_run(browser, text_run, shots):
    # needs text serving (issue 17): `transferkit serve TEXT_RUN` with "modality": "text" in
    # /health and {"texts": [...]} on POST /predict. Fails until the integrator lands it.
    with cli_server(text_run) as base:
        health = requests.get(base + "/health", timeout=10).json()
        assert health.get("modality") == "text", f"needs text serving (issue 17): /health says {health}"
        classes = requests.get(base + "/labels", timeout=10).json()["labels"]
        goto(browser, base + "/")
        texts = ["goal match team player coach league win cup", "rain storm wind cloud snow forecast cold", "bank market stock price share profit dividend"]
        cards = _text_mode_checks(browser, shots, "serve-text-run", texts)
    assert [c["text"] for c in cards] == texts
    assert [c["labels"][0] for c in cards] == ["sport", "weather", "money"]
    assert all(set(c["labels"]) <= set(classes) for c in cards)


# ------------------------------------------------------------------- run and comparison pages
def _report_checks(b, page: Path, shots, name: str) -> dict:
    b.open(page)
    wait(b, "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)")
    main = box(b, "main")
    assert_fits_the_screen(b, name)
    assert_no_overlaps(b, "body", name)
    # sections one below the other, each inside main
    secs = boxes(b, "main > section")
    assert secs
    for a, c in zip(secs, secs[1:]):
        assert c["top"] >= a["bottom"] - 1
    for s in secs:
        assert s["left"] >= main["left"] - 0.5 and s["right"] <= main["right"] + 0.5
    h1 = box(b, "header.top h1")
    assert h1["scrollWidth"] <= h1["clientWidth"] + 1, "the title is cut off"
    # plots: loaded, never stretched beyond their pixels, never squashed, inside their column
    for img in boxes(b, "figure img"):
        assert img["complete"] and img["naturalWidth"] > 0
        w, h = img["clientWidth"], img["clientHeight"]  # inside the border
        assert w <= img["naturalWidth"] + 0.5, f"{name}: a plot is stretched to {w} px from {img['naturalWidth']} px"
        ratio = img["naturalHeight"] / img["naturalWidth"]
        assert abs(h / w - ratio) < 0.01 * ratio + 1.5 / w, f"{name}: a plot lost its proportions ({w}x{h}, drawn {img['naturalWidth']}x{img['naturalHeight']})"
        assert img["left"] >= main["left"] - 0.5 and img["right"] <= main["right"] + 0.5
    # tables: each in a box of its own that scrolls sideways, inside the screen
    scrolls = boxes(b, ".scroll")
    assert scrolls
    for s in scrolls:
        assert s["overflowX"] == "auto" and s["right"] <= b.js("return document.documentElement.clientWidth") + 1
    wide = b.js(
        """return Array.from(document.querySelectorAll('.scroll')).filter(s => s.scrollWidth > s.clientWidth + 1).map(s => {
             s.scrollLeft = 40; const moved = s.scrollLeft; s.scrollLeft = 0; return {id: s.querySelector('table') && s.querySelector('table').id, moved}; });"""
    )
    assert all(w["moved"] > 0 for w in wide), wide  # a wide table scrolls in its box, the page does not
    screenshot(b, shots, name)
    return {"wide": [w["id"] for w in wide], "main": main}


def test_run_page_layout(browser, image_run, shots):
    got = _report_checks(browser, image_run / "report.html", shots, "run-page")
    cards = boxes(browser, ".cards .card")
    assert len(cards) >= 4
    for i, a in enumerate(cards):
        for c in cards[i + 1 :]:
            assert not overlap(a, c)
    per_row: dict = {}
    for c in cards:
        per_row[round(c["top"])] = per_row.get(round(c["top"]), 0) + 1
    pair = boxes(browser, "#fig-confusion_counts, #fig-confusion_normalized")
    assert len(pair) == 2
    if browser.size_name == "laptop":  # the width is used: cards in one row, the two matrices side by side
        assert len(per_row) == 1 and abs(pair[0]["top"] - pair[1]["top"]) < 1 and pair[1]["left"] >= pair[0]["right"]
        assert got["wide"] == []  # every table fits at 1280 px
    else:  # a phone: two cards a row, the matrices one under the other
        assert max(per_row.values()) <= 2 and len(per_row) >= 2 and pair[1]["top"] >= pair[0]["bottom"] - 1


def test_comparison_page_layout(browser, comparison, shots):
    got = _report_checks(browser, comparison / "report.html", shots, "comparison-page")
    board, wrap = box(browser, "#leaderboard-table"), boxes(browser, ".scroll")[0]
    assert inside(board, wrap) or browser.size_name == "phone"
    if browser.size_name == "laptop":
        assert "leaderboard-table" not in got["wide"] and board["width"] <= got["main"]["width"]
    else:  # twelve columns do not fit a phone: the leaderboard scrolls inside its box
        assert "leaderboard-table" in got["wide"] and board["width"] > wrap["width"]
    links = browser.js("return Array.from(document.querySelectorAll('#leaderboard-table a')).map(a => a.getAttribute('href'))")
    assert sorted(links) == sorted(f"{r['run_dir']}/report.html" for r in json.loads((comparison / "leaderboard.json").read_text()) if r.get("run_dir"))
