"""`serve`: a trained classifier over HTTP (FastAPI on uvicorn), for images and texts.

POST /predict takes what the model's modality reads — image uploads (multipart/form-data,
field `files`, several per request) or texts (JSON `{"text": ...}` or `{"texts": [...]}`) —
and answers the top-k labels per input; GET /health, GET /labels, GET /docs (OpenAPI, which
says exactly which request body the model accepts) and GET / (a page to drop images on, or
type texts into, and see the top-5 labels with bars).

Every limit answers a 4xx with a one-line `detail`: request and file size (413), content type
(415), pixel count (413), inputs per request (400), undecodable image or bad text (422); a bad
request never takes the worker down. Inputs from concurrent requests are batched together: one
inference thread takes whatever is queued (up to `max_batch` inputs) each time it is free.
Answers whose top probability is below `--min-confidence` are marked `"uncertain": true`.
"""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TransferkitError
from .modality import Refused
from .modality.image import IMAGE_TYPES
from .predictor import Predictor, load_predictor
from .topk import above
from .topk import top_k as top_labels

PAGE = Path(__file__).parent / "static" / "index.html"


@dataclass
class Limits:
    max_upload_mb: float = 10.0  # per file
    max_files: int = 16  # files per request
    max_pixels: int = 40_000_000  # width x height per image (a 40-megapixel photo is fine)
    max_batch: int = 32  # inputs per model call when requests are batched together
    batch_wait_ms: float = 0.0  # extra wait for more requests before a model call (0: take what is queued)
    max_queue: int = 512  # inputs waiting for the model before new requests get 503
    top_k: int = 5  # labels per input unless the request says ?top_k=
    min_confidence: float = 0.0  # answers whose top probability is below this are marked uncertain

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
    """Queue of (prepared inputs, future); one thread collates and runs the model on everything
    queued at once."""

    def __init__(self, predictor: Predictor, limits: Limits):
        self.predictor, self.limits = predictor, limits
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="transferkit-infer")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.queued = 0  # images waiting
        self.stats = {"batches": 0, "inputs": 0, "max_batch_seen": 0}

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, x: list) -> np.ndarray:
        if self.queued + len(x) > self.limits.max_queue:
            raise HTTPError(503, f"busy: {self.queued} inputs are waiting for the model; retry in a moment")
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
                pre = self.predictor.preprocessor
                probs = await loop.run_in_executor(self.executor, lambda: self.predictor.predict_proba(pre.collate([v for x, _ in items for v in x])))
            except Exception as exc:  # noqa: BLE001 - answer the waiting requests, keep serving
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.stats["batches"] += 1
            self.stats["inputs"] += n
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


def create_app(model, limits: Limits | None = None, device: str = "cpu", **overrides):
    """The FastAPI app for `model` (a run folder, an .onnx / TorchScript file or a Predictor),
    run on `device` (cpu, auto, cuda, cuda:N, mps)."""
    from contextlib import asynccontextmanager

    try:
        from fastapi import FastAPI, Query, Request
        from fastapi.exceptions import RequestValidationError
    except ImportError:
        raise TransferkitError('serving needs FastAPI and uvicorn: pip install "transferkit[serve]"') from None
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = limits or Limits(**overrides)
    if not 0.0 <= limits.min_confidence < 1.0:
        raise TransferkitError(f"--min-confidence {limits.min_confidence}: give a probability between 0 and 1 (e.g. 0.8)")
    from .loop.devices import choose

    placement = choose(device, "fp32")
    pred = load_predictor(model, placement)
    mod = pred.modality
    batcher = MicroBatcher(pred, limits)
    started = time.time()

    class Prediction(BaseModel):
        filename: str | None = None  # image models: the uploaded file's name
        text: str | None = None  # text models: the text (shortened to 300 characters)
        labels: list[str]  # multi-label models: every label at or above its threshold (maybe none), most probable first
        probs: list[float]
        uncertain: bool = False  # the top probability is below --min-confidence
        top_labels: list[str] | None = None  # multi-label models: the top-k labels whatever their thresholds
        top_probs: list[float] | None = None

    class PredictResponse(BaseModel):
        predictions: list[Prediction]
        model: str

    class Health(BaseModel):
        status: str
        kind: str
        modality: str
        classes: int
        input_size: int | None
        device: str
        min_confidence: float
        uptime_s: float
        batches: int
        inputs: int
        max_batch_seen: int
        queued: int  # inputs waiting for the model now

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
        description=f"{pred.kind} {mod.name} model from `{pred.source}`: {len(pred.classes)} classes. POST /predict {mod.serve_hint}.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.predictor, app.state.limits = batcher, pred, limits
    errors = {s: {"model": Error, "description": d} for s, d in ((400, "bad request"), (413, "too large"), (415, "unsupported content"), (422, f"not a readable {mod.unit} or bad parameter"), (503, "busy"))}

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
        return Health(status="ok", kind=pred.kind, modality=mod.name, classes=len(pred.classes), input_size=pred.input_size, device=str(placement.device), min_confidence=limits.min_confidence, uptime_s=time.time() - started, queued=batcher.queued, **batcher.stats)

    @app.get("/labels", response_model=Labels, summary="the class labels, in output order")
    async def labels():
        return Labels(labels=pred.classes)

    @app.get("/", response_class=HTMLResponse, summary="a page to try the model: drop images or type texts, see the top-5 labels")
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": mod.serve_schema(limits.max_files)}}, summary=f"top-k labels for {mod.unit}s")
    async def predict(request: Request, top_k: int = Query(limits.top_k, ge=1, le=1000, description=f"labels per {mod.unit}")):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != mod.serve_content:
            raise HTTPError(415, f"this model classifies {mod.unit}s: send {mod.serve_hint} (content type '{ctype or 'none'}' not accepted)")
        try:
            if ctype == "application/json":
                try:
                    body = await request.json()
                except Exception:  # noqa: BLE001
                    raise HTTPError(400, "body is not valid JSON") from None
                texts = mod.read_json_texts(body, limits.max_files)
                names, xs = [("text", _snippet(t)) for t in texts], texts
            else:
                names, xs = await _uploads(request, limits, mod, pred.preprocessor)
        except Refused as exc:
            raise HTTPError(exc.status, exc.detail) from None
        probs = await batcher.predict(xs)
        out = []
        for (field, name), p in zip(names, probs):
            labels, ps = top_labels(p, pred.classes, top_k)
            if pred.thresholds is not None:  # label sets
                chosen, cps = above(p, pred.classes, pred.thresholds)
                out.append(Prediction(**{field: name}, labels=chosen, probs=[round(v, 6) for v in cps], top_labels=labels, top_probs=[round(v, 6) for v in ps]))
                continue
            out.append(Prediction(**{field: name}, labels=labels, probs=[round(v, 6) for v in ps], uncertain=bool(ps[0] < limits.min_confidence)))
        return PredictResponse(predictions=out, model=pred.kind)

    app.add_middleware(_BodyLimit, limit=limits.max_request_bytes)
    return app


async def _uploads(request, limits: Limits, mod, pre) -> tuple[list, list]:
    """The image files of a multipart request, each checked and prepared (or Refused)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

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
            xs.append(await run_in_threadpool(mod.decode_upload, data, name, limits.max_pixels, pre))
            names.append(("filename", name))
        return names, xs
    finally:
        await form.close()


def _snippet(text: str) -> str:
    from .modality.text import snippet

    return snippet(text)


def serve(model, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", device: str = "cpu", **limits) -> None:
    """Run the app on uvicorn (one worker process; the model is loaded once)."""
    try:
        import uvicorn
    except ImportError:
        raise TransferkitError('serving needs FastAPI and uvicorn: pip install "transferkit[serve]"') from None
    app = create_app(model, Limits(**limits), device=device)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, timeout_graceful_shutdown=5)
