"""The page at GET /, driven in headless Chromium through selenium: choose or drop an image,
see its labels. The server runs in this process (the CLI server is covered by test_serve)."""
import base64
import shutil
import tempfile

import pytest

from browser import find_chromium
from serving import thread_server

CHROMIUM, CHROMEDRIVER, WHY = find_chromium()

pytestmark = [pytest.mark.skipif(bool(WHY), reason=WHY or "-")]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tk-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=900,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, fn, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(fn)


def _cards(driver):
    """[(file name, [(label, bar width %, shown percent)])] for each result card, newest first."""
    return driver.execute_script(
        """return Array.from(document.querySelectorAll('.prediction')).map(c => [
             c.querySelector('.name').textContent,
             Array.from(c.querySelectorAll('.row')).map(r => [r.querySelector('.label').textContent,
               parseFloat(r.querySelector('.bar').style.width), r.querySelector('.pct').textContent])]);"""
    )


def test_choose_and_drop_an_image_and_see_top_labels(browser, tiny_onnx, tiny_run, tmp_path):
    from transferkit.server import create_app

    photos = tiny_run.parent / "photos"
    with thread_server(create_app(tiny_onnx)) as base:
        browser.get(base + "/")
        _wait(browser, lambda d: "3 classes" in d.find_element("id", "about").text)
        # 1. the file picker
        browser.find_element("id", "file").send_keys(str(photos / "red" / "red_005.png"))
        _wait(browser, lambda d: len(_cards(d)) == 1)
        name, rows = _cards(browser)[0]
        assert name == "red_005.png" and rows[0][0] == "red"
        assert [r[0] for r in rows] and len(rows) == 3  # top-5 of a 3-class model: all 3
        widths = [r[1] for r in rows]
        assert widths == sorted(widths, reverse=True) and widths[0] > 50 and rows[0][2].endswith("%")
        # 2. a real drop event carrying a file, as a person dragging from their desktop
        data = base64.b64encode((photos / "green" / "green_007.png").read_bytes()).decode()
        browser.execute_script(
            """const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
               const dt = new DataTransfer();
               dt.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
               const zone = document.getElementById('drop');
               for (const t of ['dragenter', 'dragover', 'drop'])
                 zone.dispatchEvent(new DragEvent(t, {dataTransfer: dt, bubbles: true, cancelable: true}));""",
            data,
        )
        _wait(browser, lambda d: len(_cards(d)) == 2)
        name, rows = _cards(browser)[0]
        assert name == "dropped.png" and rows[0][0] == "green"
        # 3. a bad file shows the server's message instead of results
        (tmp_path / "notes.png").write_bytes(b"not an image")
        browser.find_element("id", "file").send_keys(str(tmp_path / "notes.png"))
        _wait(browser, lambda d: "not a readable image" in d.find_element("id", "error").text)
        assert len(_cards(browser)) == 2
        browser.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 1000
