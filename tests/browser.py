"""Headless Chromium driven through chromedriver's W3C WebDriver HTTP API (standard library
only): open a page from disk, run JavaScript in it, take screenshots.

Debian packages: chromium, chromium-driver (`make browser` installs them where apt is usable)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--hide-scrollbars",
]


def find_chromium() -> tuple[str | None, str | None, str]:
    """(chromium, chromedriver, reason when one is missing)."""
    chrome = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if chrome and driver:
        return chrome, driver, ""
    return chrome, driver, "headless Chromium is not installed (needs `chromium` and `chromedriver`; `make browser` installs the Debian packages chromium and chromium-driver, as root with apt)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One chromedriver process and one Chromium session with a fresh profile."""

    def __init__(self, chrome: str, driver: str, width: int = 1280, height: int = 900, mobile: bool = False):
        """`mobile`: emulate a phone `width` CSS pixels wide (Chromium's windows are ≥ 500 px)."""
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="tk-chromium-")
        self.proc = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("chromedriver did not start")
                time.sleep(0.2)
        opts = {"binary": chrome, "args": CHROME_FLAGS + [f"--user-data-dir={self.profile}", f"--window-size={max(width, 500)},{height}"]}
        if mobile:
            opts["mobileEmulation"] = {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": True}}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": opts}}}
        try:
            self.session = self._call("POST", "/session", caps, timeout=120)["sessionId"]
        except Exception:
            self.close()
            raise

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webdriver {method} {path}: {exc.read()[:500]!r}") from None

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def open(self, path: Path) -> None:
        self._call("POST", self._s("/url"), {"url": Path(path).resolve().as_uri()})

    def js(self, script: str, *args):
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def resize(self, width: int, height: int) -> None:
        self._call("POST", self._s("/window/rect"), {"width": width, "height": height})

    def screenshot(self, path: Path, full_page: bool = True, width: int | None = None) -> Path:
        """Save a PNG; `full_page` grows the window to the document's height first."""
        if full_page:
            w = width or self.js("return window.outerWidth")
            h = self.js("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
            self.resize(int(w), int(min(h + 120, 16000)))
        Path(path).write_bytes(base64.b64decode(self._call("GET", self._s("/screenshot"))))
        return Path(path)

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._call("DELETE", self._s(""), timeout=30)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
