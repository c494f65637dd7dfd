"""`serve`: a trained classifier over HTTP (FastAPI on uvicorn).

POST /predict takes image uploads (multipart/form-data, field `files`, several per request)
and answers the top-k labels per image; GET /health, GET /labels, GET /docs (OpenAPI) and
GET / (a page where a person drops an image and sees the top-5 labels with bars).

Every limit answers a 4xx with a one-line `detail`: request and file size (413), content type
(415), pixel count (413), files per request (400), undecodable image (422); a bad upload
never takes the worker down. Images from concurrent requests are batched together: one
inference thread takes whatever is queued (up to `max_batch` images) each time it is free.
"""

import asyncio
import io
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.images import ImageDecodeError, open_rgb
from .errors import TransferkitError
from .predictor import Predictor, load_predictor

PAGE = Path(__file__).parent / "static" / "index.html"
# What browsers and curl send for image files; anything else is refused with 415.
IMAGE_TYPES = {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/x-ms-bmp", "image/tiff", "image/x-portable-pixmap", "image/x-portable-graymap", "application/octet-stream", ""}
IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "MPO"}  # Pillow formats accepted after sniffing the bytes


@dataclass
class Limits:
    max_upload_mb: float = 10.0  # per file
    max_files: int = 16  # files per request
    max_pixels: int = 40_000_000  # width x height per image (a 40-megapixel photo is fine)
    max_batch: int = 32  # images per model call when requests are batched together
    batch_wait_ms: float = 0.0  # extra wait for more requests before a model call (0: take what is queued)
    max_queue: int = 512  # images waiting for the model before new requests get 503
    top_k: int = 5  # labels per image unless the request says ?top_k=

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        return self.max_files * self.max_upload_bytes + 1024 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


class MicroBatcher:
    """Queue of (images, future); one thread runs the model on everything queued at once."""

    def __init__(self, predictor: Predictor, limits: Limits):
        self.predictor, self.limits = predictor, limits
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="transferkit-infer")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.queued = 0  # images waiting
        self.stats = {"batches": 0, "images": 0, "max_batch_seen": 0}

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, x: torch.Tensor) -> np.ndarray:
        if self.queued + len(x) > self.limits.max_queue:
            raise HTTPError(503, f"busy: {self.queued} images are waiting for the model; retry in a moment")
        fut = asyncio.get_running_loop().create_future()
        self.queued += len(x)
        await self.queue.put((x, fut))
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            items, n = [first], len(first[0])
            deadline = loop.time() + self.limits.batch_wait_ms / 1000
            while n < self.limits.max_batch:
                try:
                    if self.queue.empty() and loop.time() < deadline:
                        item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                    else:
                        item = self.queue.get_nowait()
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if n + len(item[0]) > self.limits.max_batch:
                    self.queue.put_nowait(item)  # it goes first next time (FIFO otherwise kept)
                    break
                items.append(item)
                n += len(item[0])
            self.queued -= n
            try:
                probs = await loop.run_in_executor(self.executor, self.predictor.predict_proba, torch.cat([x for x, _ in items]))
            except Exception as exc:  # noqa: BLE001 - answer the waiting requests, keep serving
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.stats["batches"] += 1
            self.stats["images"] += n
            self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], n)
            s = 0
            for x, fut in items:
                if not fut.done():
                    fut.set_result(probs[s : s + len(x)])
                s += len(x)


class _BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413 before parsing them."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                too_big = int(cl) > self.limit
            except ValueError:
                return await _send_json(send, 400, "bad Content-Length header")
            if too_big:
                return await _send_json(send, 413, f"request too large: {int(cl) / 1e6:.1f} MB; the limit is {self.limit / 1e6:.1f} MB (a few images per request, each at most the upload limit)")
        received, started = 0, False

        async def limited():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return msg

        async def tracking(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, f"request too large: over {self.limit / 1e6:.1f} MB")


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def decode_upload(data: bytes, name: str, limits: Limits, transform, size_hint: int) -> torch.Tensor:
    """Bytes of one uploaded file -> a preprocessed image tensor, or HTTPError with why not."""
    from PIL import Image

    if not data:
        raise HTTPError(422, f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            fmt, (w, h) = im.format, im.size
    except Exception:  # noqa: BLE001 - any header failure: not an image we can read
        raise HTTPError(422, f"{name}: not a readable image (send JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    if fmt not in IMAGE_FORMATS:
        raise HTTPError(415, f"{name}: {fmt} images are not accepted (send JPEG, PNG, WebP, GIF, BMP or TIFF)")
    if w * h > limits.max_pixels:
        raise HTTPError(413, f"{name}: {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is {limits.max_pixels / 1e6:.0f} megapixels (downscale it)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return transform(open_rgb(io.BytesIO(data), size_hint))
    except ImageDecodeError as exc:
        raise HTTPError(422, f"{name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or odd files must not reach the worker
        raise HTTPError(422, f"{name}: cannot decode ({type(exc).__name__})") from None


def _predict_body(max_files: int) -> dict:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": max_files, "description": "image files (JPEG, PNG, WebP, GIF, BMP, TIFF)"}
                    },
                    "required": ["files"],
                }
            },
            "application/json": {
                "schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "description": "for text models; image models answer 415"}
            },
        },
    }


def create_app(model, limits: Limits | None = None, **overrides):
    """The FastAPI app for `model` (a run folder, an .onnx / TorchScript file or a Predictor)."""
    from contextlib import asynccontextmanager

    try:
        from fastapi import FastAPI, Query, Request
        from fastapi.exceptions import RequestValidationError
    except ImportError:
        raise TransferkitError('serving needs FastAPI and uvicorn: pip install "transferkit[serve]"') from None
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .features.extract import resize_hint_for

    limits = limits or Limits(**overrides)
    pred = load_predictor(model, "serve")
    transform, hint = pred.transform, resize_hint_for(pred.data_config)
    batcher = MicroBatcher(pred, limits)
    started = time.time()

    class Prediction(BaseModel):
        filename: str
        labels: list[str]
        probs: list[float]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]
        model: str

    class Health(BaseModel):
        status: str
        kind: str
        classes: int
        input_size: int
        uptime_s: float
        batches: int
        images: int
        max_batch_seen: int

    class Labels(BaseModel):
        labels: list[str]

    class Error(BaseModel):
        detail: str

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="transferkit classifier",
        version="1",
        description=f"{pred.kind} model from `{pred.source}`: {len(pred.classes)} classes. Upload images to POST /predict.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.predictor, app.state.limits = batcher, pred, limits
    errors = {s: {"model": Error, "description": d} for s, d in ((400, "bad request"), (413, "too large"), (415, "unsupported content"), (422, "not a readable image or bad parameter"), (503, "busy"))}

    @app.exception_handler(HTTPError)
    async def _http_error(request, exc: HTTPError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request, exc):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        msgs = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(msgs)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):  # the worker keeps serving whatever happened
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server keeps running"}, status_code=500)

    @app.get("/health", response_model=Health, summary="liveness and batching counters")
    async def health():
        return Health(status="ok", kind=pred.kind, classes=len(pred.classes), input_size=pred.input_size, uptime_s=time.time() - started, **batcher.stats)

    @app.get("/labels", response_model=Labels, summary="the class labels, in output order")
    async def labels():
        return Labels(labels=pred.classes)

    @app.get("/", response_class=HTMLResponse, summary="a page to drop an image on and see its top-5 labels")
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/predict", response_model=PredictResponse, responses=errors, openapi_extra={"requestBody": _predict_body(limits.max_files)}, summary="top-k labels for uploaded images")
    async def predict(request: Request, top_k: int = Query(limits.top_k, ge=1, le=1000, description="labels per image")):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                body = await request.json()
            except Exception:  # noqa: BLE001
                raise HTTPError(400, "body is not valid JSON") from None
            if isinstance(body, dict) and "text" in body:
                raise HTTPError(415, "this model classifies images, not text: upload image files as multipart/form-data in the field 'files'")
            raise HTTPError(415, "send image files as multipart/form-data in the field 'files'")
        if ctype != "multipart/form-data":
            raise HTTPError(415, f"content type '{ctype or 'none'}' not accepted: send image files as multipart/form-data in the field 'files'")
        form = await request.form(max_files=limits.max_files + 1, max_fields=limits.max_files + 16)
        try:
            parts = form.getlist("files") + form.getlist("file")
            if not parts:
                raise HTTPError(400, "no images: send them as multipart/form-data file fields named 'files'")
            if len(parts) > limits.max_files:
                raise HTTPError(400, f"too many files: {len(parts)}; at most {limits.max_files} per request")
            names, xs = [], []
            for i, part in enumerate(parts):
                if not isinstance(part, UploadFile):
                    raise HTTPError(400, f"field 'files' #{i + 1} is text, not a file upload")
                name = part.filename or f"file {i + 1}"
                ptype = (part.content_type or "").split(";")[0].strip().lower()
                if ptype not in IMAGE_TYPES:
                    raise HTTPError(415, f"{name}: content type '{ptype}' is not an image type (JPEG, PNG, WebP, GIF, BMP, TIFF)")
                if part.size is not None and part.size > limits.max_upload_bytes:
                    raise HTTPError(413, f"{name}: {part.size / 1e6:.1f} MB; the limit is {limits.max_upload_mb:g} MB per file")
                data = await part.read()
                if len(data) > limits.max_upload_bytes:
                    raise HTTPError(413, f"{name}: {len(data) / 1e6:.1f} MB; the limit is {limits.max_upload_mb:g} MB per file")
                xs.append(await run_in_threadpool(decode_upload, data, name, limits, transform, hint))
                names.append(name)
        finally:
            await form.close()
        probs = await batcher.predict(torch.stack(xs))
        k = min(top_k, len(pred.classes))
        out = []
        for name, p in zip(names, probs):
            top = np.argsort(-p, kind="stable")[:k]
            out.append(Prediction(filename=name, labels=[pred.classes[t] for t in top], probs=[round(float(p[t]), 6) for t in top]))
        return PredictResponse(predictions=out, model=pred.kind)

    app.add_middleware(_BodyLimit, limit=limits.max_request_bytes)
    return app


def serve(model, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", **limits) -> None:
    """Run the app on uvicorn (one worker process; the model is loaded once)."""
    try:
        import uvicorn
    except ImportError:
        raise TransferkitError('serving needs FastAPI and uvicorn: pip install "transferkit[serve]"') from None
    app = create_app(model, Limits(**limits))
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, timeout_graceful_shutdown=5)
