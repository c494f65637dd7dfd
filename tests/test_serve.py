"""serve: real HTTP requests to a server started by the test on a loopback port."""
import concurrent.futures
import io
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

import transferkit as tk

from serving import cli_server, thread_server

pytest.importorskip("fastapi")


def _png(path) -> bytes:
    return open(path, "rb").read()


@pytest.fixture(scope="module")
def server(tiny_onnx):
    # small limits so the tests can cross them cheaply
    with cli_server(tiny_onnx, "--max-upload-mb", "1", "--max-files", "4", "--max-pixels", "1000000") as base:
        yield base


@pytest.fixture(scope="module")
def photos(tiny_run):
    return tiny_run.parent / "photos"


def test_health_labels_docs_and_page(server):
    h = requests.get(server + "/health").json()
    assert h["status"] == "ok" and h["kind"] == "onnx" and h["classes"] == 3
    assert requests.get(server + "/labels").json() == {"labels": ["blue", "green", "red"]}
    spec = requests.get(server + "/openapi.json").json()
    assert {"/predict", "/health", "/labels", "/"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "swagger" in requests.get(server + "/docs").text.lower()
    page = requests.get(server + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # self-contained: no script, style or font from another host
    assert "http://" not in page.text and "https://" not in page.text and "<script src" not in page.text


def test_uploads_get_the_right_labels(server, photos):
    files = [("files", (f"{c}.png", _png(photos / c / f"{c}_003.png"), "image/png")) for c in ("red", "green", "blue")]
    r = requests.post(server + "/predict", files=files)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["filename"] for p in preds] == ["red.png", "green.png", "blue.png"]
    assert [p["labels"][0] for p in preds] == ["red", "green", "blue"]
    assert all(len(p["labels"]) == 3 and abs(sum(p["probs"]) - 1) < 1e-3 and p["probs"] == sorted(p["probs"], reverse=True) for p in preds)
    # a JPEG from curl-like clients without a declared type works too
    buf = io.BytesIO()
    Image.open(photos / "red" / "red_004.png").save(buf, "JPEG", quality=95)
    r = requests.post(server + "/predict?top_k=1", files={"files": ("x", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 200 and r.json()["predictions"][0]["labels"] == ["red"]


def test_same_answers_as_the_run_folder(server, tiny_run, photos):
    path = photos / "green" / "green_010.png"
    r = requests.post(server + "/predict", files={"files": ("g.png", _png(path), "image/png")}).json()["predictions"][0]
    local = tk.predict(tiny_run, [str(path)], top_k=3)[0]
    assert r["labels"] == local["labels"] and np.allclose(r["probs"], local["probs"], atol=1e-4)


def _big_png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "make, status, words",
    [
        (lambda p: {"json": {"text": "a red flower"}}, 415, "classifies images: send image files"),
        (lambda p: {"data": b"just bytes", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
        (lambda p: {"files": {"files": ("notes.txt", b"hello", "text/plain")}}, 415, "notes.txt: content type 'text/plain'"),
        (lambda p: {"files": {"files": ("fake.png", b"\x89PNG not really", "image/png")}}, 422, "fake.png: not a readable image"),
        (lambda p: {"files": {"files": ("trunc.png", _png(p / "red" / "red_000.png")[:300], "image/png")}}, 422, "trunc.png"),
        (lambda p: {"files": {"files": ("empty.png", b"", "image/png")}}, 422, "empty file"),
        (lambda p: {"files": {"files": ("huge.png", _big_png(1200, 1000), "image/png")}}, 413, "megapixels"),
        (lambda p: {"files": {"files": ("big.jpg", b"\xff" * 1_200_000, "image/jpeg")}}, 413, "the limit is 1 MB per file"),
        (lambda p: {"files": [("files", (f"{i}.png", _png(p / "red" / "red_000.png"), "image/png")) for i in range(5)]}, 400, "too many files: 5; at most 4"),
        (lambda p: {"files": {"other": ("a.png", _png(p / "red" / "red_000.png"), "image/png")}}, 400, "no images"),
        (lambda p: {"data": b"x" * 6_000_000, "headers": {"content-type": "multipart/form-data; boundary=zz"}}, 413, "request too large"),
        (lambda p: {"params": {"top_k": 0}, "files": {"files": ("a.png", _png(p / "red" / "red_000.png"), "image/png")}}, 422, "top_k"),
    ],
    ids=["json-text", "plain-body", "text-part", "not-an-image", "truncated", "empty", "pixels", "file-size", "batch-size", "no-files-field", "body-size", "bad-top-k"],
)
def test_bad_requests_get_a_clear_4xx_and_the_worker_keeps_serving(server, photos, make, status, words):
    r = requests.post(server + "/predict", **make(photos))
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    ok = requests.post(server + "/predict", files={"files": ("r.png", _png(photos / "red" / "red_001.png"), "image/png")})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["labels"][0] == "red"


def _until(cond, what, timeout=60.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_concurrent_requests_are_batched(tiny_run, photos):
    """While the model is busy with one request, the others queue, and the next model call
    takes them all at once. Deterministic, with no gathering window (batch_wait_ms 0): the
    first model call is held until /health counts the five other inputs queued."""
    from transferkit.predictor import load_predictor

    pred = load_predictor(tiny_run)  # served from the run folder (torch)
    real, calls, release = pred.predict_proba, [], threading.Event()

    def held(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            assert release.wait(120), "never released"
        return real(batch)

    pred.predict_proba = held
    app = tk.create_app(pred, max_batch=8)
    names = [f"{c}_{i:03d}.png" for c in ("red", "green", "blue") for i in range(2)]

    def one(name):
        r = requests.post(base + "/predict?top_k=1", files={"files": (name, _png(photos / name.split("_")[0] / name), "image/png")})
        return name, r.json()["predictions"][0]["labels"][0]

    with thread_server(app) as base:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            first = pool.submit(one, names[0])
            _until(lambda: calls == [1], "the first model call")
            rest = [pool.submit(one, n) for n in names[1:]]
            _until(lambda: requests.get(base + "/health").json()["queued"] == 5, "five queued inputs")
            release.set()
            answers = [first.result(120)] + [f.result(120) for f in rest]
        h = requests.get(base + "/health").json()
    assert all(name.startswith(label) for name, label in answers), answers
    assert calls == [1, 5]  # one model call for the five that queued meanwhile
    assert h["inputs"] == 6 and h["batches"] == 2 and h["max_batch_seen"] == 5 and h["queued"] == 0, h


def test_openapi_schema_property_based(server):
    """schemathesis generates requests from the app's own OpenAPI schema: no 5xx, every status
    and body as documented, schema-violating requests rejected with a 4xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()
        modes = [schemathesis.GenerationMode.POSITIVE]
        if op.method.upper() == "POST":  # the GETs take no input, so nothing can be made invalid
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
            def check(case):
                # positive_data_acceptance is left out: the schema can say "binary file" but not
                # "bytes that decode as an image", so random schema-valid files are rightly refused (422)
                case.call_and_validate(base_url=server, excluded_checks=[positive_data_acceptance])

            check()
            ran += 1
    assert ran == 5  # GET /health, /labels, /; POST /predict with valid and invalid requests
    assert requests.get(server + "/health").json()["status"] == "ok"
