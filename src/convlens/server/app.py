"""The explorer's FastAPI application: ``create_app()``.

Routes (the schema is served at ``/openapi.json``; no ``/docs``: FastAPI's Swagger page
loads its scripts from a CDN, which the Content-Security-Policy forbids):

=======================================================  ===================================
``GET  /``                                               the page (static ES modules)
``GET  /api/info``                                       images, models, colour maps, limits
``POST /api/images``                                     upload an image (multipart ``file``)
``POST /api/models``                                     upload a model file (multipart ``file``)
``POST /api/traces``                                     run a model: a binary frame
``GET  /api/traces/{tid}``                               a held trace's frame, again
``GET  /api/traces/{tid}/stages/{pos}/channels``         channels of one stage: a binary frame
``GET  /api/traces/{tid}/stages/{pos}/explain``          one value's receptive field + arithmetic
``GET  /api/traces/{tid}/stages/{pos}/png``              the stage as a PNG (convlens.render)
``GET  /api/traces/{tid}/npz``                           the Trace (Trace.save)
``GET  /api/traces/{tid}/architecture.svg``              the architecture diagram
``GET  /api/traces/{tid}/gradcam``                       Grad-CAM of the top class (classifiers)
``GET  /api/traces/{tid}/report.html``                   the HTML report
=======================================================  ===================================

Every error is JSON ``{"error": {"status", "type", "message"}}``; no request ever
names a file on the server (an uploaded model is written under a name the server makes,
in a folder it made).  Every response carries the headers of
:mod:`convlens.report.security` (a Content-Security-Policy with no outside source,
``nosniff``, no framing, no referrer).
"""
from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from convlens.errors import ConvlensError, ImageError, ModelError
from convlens.preprocess import PRESETS
from convlens.report import security
from convlens.trace import Trace
from convlens.server import atlas as atlas_routes
from convlens.server import compute, features
from convlens.server.compute import DEFAULT_SPEC
from convlens.server.arithmetic import explain_position
from convlens.server.schemas import (
    Explanation, ImageInfo, Info, ModelInfo, ModelUploadResult, NormName, TraceRequest,
    UploadResult,
)
from convlens.server.pool import QUEUE, WORKERS, Busy, WorkPool
from convlens.server.state import (UPLOAD_FORMATS, ExplorerState, Missing, UnsupportedUpload,
                                   upload_format)

__all__ = ["create_app", "DEFAULT_SPEC", "MAX_UPLOAD_BYTES", "MAX_MODEL_BYTES", "STATIC_DIR"]

log = logging.getLogger("convlens.server")

MAX_UPLOAD_BYTES = 8 << 20
"""The largest image upload, in bytes (``create_app(max_upload_bytes=...)``)."""
MAX_MODEL_BYTES = 200 << 20
"""The largest model-file upload, in bytes (``create_app(max_model_bytes=...)``)."""
_MULTIPART_SLACK = 65536
"""Bytes a multipart body may carry beyond its file (boundaries, part headers)."""
STATIC_DIR = Path(__file__).parent / "static"
_BINARY = {200: {"content": {"application/octet-stream": {}},
                 "description": "a binary frame: b'CLv1', uint32 LE header length, JSON "
                                "header, then 8-byte aligned blobs (see convlens.server.encode)"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad input (one-line message)"},
    404: {"description": "unknown id"},
    413: {"description": "upload too large"},
    415: {"description": "a model file of a format the page does not load"},
    422: {"description": "request failed validation"},
}
_TRACE_ID = r"^t[0-9]{1,9}$"


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "type": kind, "message": message}},
                        status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:4]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
    return "invalid request — " + "; ".join(parts)


def _safe_name(name: str | None) -> str:
    """A display label for an uploaded file (never used as a path)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ]", "_", base)[:80].strip()
    return base or "upload"


class _TooLarge(Exception):
    pass


class _Counted:
    """An ASGI ``receive`` that stops a request body once it passes ``limit`` bytes
    (whatever its ``Content-Length`` said)."""

    def __init__(self, receive: Any, limit: int):
        self.receive, self.limit, self.seen = receive, limit, 0

    async def __call__(self):
        message = await self.receive()
        if message.get("type") == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise _TooLarge()
        return message


_MODEL_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"a {', '.join(UPLOAD_FORMATS)} file"}}}}}}}


def create_app(model: str | None = None, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_model_bytes: int = MAX_MODEL_BYTES,
               allowed_hosts: list[str] | None = None,
               torch_threads: int | None = None,
               traces: Sequence[Trace] | Mapping[str, Trace] = (),
               workers: int = WORKERS, queue: int = QUEUE,
               weights: str | None = None, trust_model_code: bool = False,
               atlases: Sequence[Any] | Mapping[str, Any] = ()) -> FastAPI:
    """The explorer app.  ``model`` is a model file, ``zoo:NAME`` or ``MODULE:CALLABLE``
    (with ``weights``, its state dict; ``trust_model_code`` allows a pickled module:
    both as :func:`convlens.load_model` takes them) offered on the page (loaded on first
    use); the page may also upload model files of :data:`~.state.UPLOAD_FORMATS` up to
    ``max_model_bytes`` (``POST /api/models``); ``allowed_hosts`` limits the ``Host`` header (a guard against
    DNS rebinding when serving on loopback); ``torch_threads`` sets PyTorch's CPU threads
    before each capture (``convlens serve`` uses 1: on a small shared machine one thread
    is faster and steadier for these small batches).  ``traces`` are Traces made
    elsewhere (``convlens.capture``, ``Trace.load``), a mapping gives them labels: the
    page offers them among the models and opens the first; they get ids ``t1``, ``t2``...
    in order.  ``workers`` requests compute at once and ``queue`` more wait; any more
    are answered 503 with ``Retry-After`` (:mod:`.pool`; ``app.state.pool``).  ``atlases``
    are folders written by ``convlens atlas``, served under ``/atlas/<id>/`` and linked
    from the page (:mod:`.atlas`)."""
    from convlens import __version__

    state = ExplorerState(cli_model=model, torch_threads=torch_threads, weights=weights,
                          trust_model_code=trust_model_code)
    held_atlases = atlas_routes.Atlases(atlases)
    items = traces.items() if isinstance(traces, Mapping) else ((None, t) for t in traces)
    for label, tr in items:
        compute.pin_trace(state, tr, label)
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        try:
            yield
        finally:
            state.close()  # uploaded model files go when the server stops

    app = FastAPI(title="convlens explorer", version=__version__,
                  description="See what a CNN does to an image, stage by stage.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.explorer = state
    pool = app.state.pool = WorkPool(workers, queue)

    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    limits = {"/api/images": (max_upload_bytes, "a smaller image"),
              "/api/models": (max_model_bytes, "a smaller model file")}

    @app.middleware("http")
    async def limit_uploads(request: Request, call_next):
        if request.method == "POST" and request.url.path in limits:
            limit, what = limits[request.url.path]
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "LengthRequired", "an upload needs a Content-Length header; "
                              "send the file as multipart/form-data")
            if int(length) > limit + _MULTIPART_SLACK:
                return _error(413, "PayloadTooLarge", f"the upload is {int(length):,} bytes; "
                              f"the limit is {limit:,} — send {what}")
        return await call_next(request)

    @app.exception_handler(Busy)
    async def _busy(_: Request, exc: Busy):
        response = _error(503, "Busy", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(Missing)
    async def _missing(_: Request, exc: Missing):
        return _error(404, "NotFound", str(exc))

    @app.exception_handler(UnsupportedUpload)
    async def _unsupported(_: Request, exc: UnsupportedUpload):
        return _error(415, "UnsupportedModelFormat", str(exc))

    @app.exception_handler(ConvlensError)
    async def _convlens(_: Request, exc: ConvlensError):
        return _error(400, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return _error(422, "ValidationError", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, "HTTPError", str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception):
        log.exception("explorer request failed")
        text = " ".join(str(exc).split())[:300]
        response = _error(500, type(exc).__name__, f"internal error: {text}")
        # a crash's response is sent from outside the middleware stack: secured here
        response.headers.update({**security.HEADERS,
                                 "Content-Security-Policy": security.API_POLICY})
        return response

    # -- the page ------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- API -----------------------------------------------------------------------
    @app.get("/api/info", response_model=Info, summary="What this server offers")
    def info() -> Info:
        from convlens.render import colormaps
        return Info(
            version=__version__,
            images=[ImageInfo(id=i, label=label) for i, label in state.builtin_images()],
            models=[ModelInfo(id=i, label=label) for i, label in state.model_choices()],
            default_model=state.default_model(), default_spec=DEFAULT_SPEC,
            colormaps={n: colormaps.lut(n).reshape(-1).tolist() for n in colormaps.CMAPS},
            sequential=list(colormaps.SEQUENTIAL), diverging=list(colormaps.DIVERGING),
            default_sequential=colormaps.DEFAULT_SEQUENTIAL,
            default_diverging=colormaps.DEFAULT_DIVERGING,
            limits={**compute.LIMITS, "upload_bytes": max_upload_bytes,
                    "model_bytes": max_model_bytes},
            features=features.available(),
            traces=[ModelInfo(id=e.id, label=e.cache["label"]) for e in state.pinned.values()],
            atlases=[ModelInfo(**a) for a in held_atlases.listing()],
            presets=list(PRESETS), model_formats=dict(UPLOAD_FORMATS),
        )

    @app.post("/api/images", response_model=UploadResult, responses=_ERRORS,
              summary="Upload an image (PNG, JPEG, ...); it is checked with convlens.load_image")
    async def upload(file: UploadFile = File(...)) -> UploadResult:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return _error(413, "PayloadTooLarge", f"the file is larger than the limit of "
                          f"{max_upload_bytes:,} bytes — send a smaller image")
        name = _safe_name(file.filename)
        if not data:
            raise ImageError(f"{name}: the file is empty (0 bytes); expected a PNG, JPEG, "
                             "GIF, BMP, TIFF or WebP image")
        entry = await pool.run(state.add_upload, data, name, compute.LIMITS["upload_side"])
        h, w = entry.pixels.shape[:2]
        return UploadResult(id=entry.id, label=entry.label, height=h, width=w, note=entry.note)

    @app.post("/api/models", response_model=ModelUploadResult, responses=_ERRORS,
              openapi_extra=_MODEL_BODY,
              summary=f"Upload a model file ({', '.join(UPLOAD_FORMATS)}: formats that load "
                      "without running code); it is offered among the models")
    async def upload_model(request: Request) -> Any:
        from starlette.formparsers import MultiPartException
        body = Request(request.scope, _Counted(request.receive,
                                                max_model_bytes + _MULTIPART_SLACK))
        try:
            form = await body.form(max_files=1, max_fields=4)
        except _TooLarge:
            return _error(413, "PayloadTooLarge", f"the upload is larger than the limit of "
                          f"{max_model_bytes:,} bytes — send a smaller model file")
        except MultiPartException as exc:
            return _error(400, "BadRequest", f"the upload is not a readable multipart form "
                          f"({exc.message}); send the file as multipart/form-data field 'file'")
        try:
            file = form.get("file")
            if file is None or isinstance(file, str):
                return _error(422, "ValidationError", "invalid request — file: a model file "
                              "is required (multipart/form-data field 'file')")
            label = _safe_name(file.filename)
            suffix = upload_format(label)
            size = file.size if file.size is not None else 0
            if size > max_model_bytes:
                return _error(413, "PayloadTooLarge", f"{label} is {size:,} bytes, larger than "
                              f"the limit of {max_model_bytes:,} — send a smaller model file")
            if size == 0:
                raise ModelError(f"{label}: the file is empty (0 bytes); expected a "
                                 f"{', '.join(UPLOAD_FORMATS)} model file")

            def work():
                file.file.seek(0)
                entry = state.add_model_file(file.file, suffix, label)
                from convlens.capture.adapters import adapter_for
                return ModelUploadResult(id=entry.id, label=entry.label,
                                         format=UPLOAD_FORMATS[suffix],
                                         framework=adapter_for(entry.model).name)
            return await pool.run(work)
        finally:
            await form.close()

    @app.post("/api/traces", responses={**_BINARY, **_ERRORS},
              summary="Run a model on an image; every stage's preview in one frame")
    async def make_trace(req: TraceRequest) -> Response:
        def work() -> bytes:
            entry, ms = compute.make_entry(state, req.image, req.model,
                                           req.spec if req.model == "toy" else None, req.seed,
                                           req.preprocess)
            return compute.journey_frame(entry, features.available(entry.trace,
                                                                   entry.model_id), ms)
        return Response(await pool.run(work), media_type="application/octet-stream")

    @app.get("/api/traces/{tid}", responses={**_BINARY, **_ERRORS},
             summary="A trace the server holds, as the frame POST /api/traces returned")
    async def held_trace(tid: str = _tid()) -> Response:
        def work() -> bytes:
            entry = state.trace(tid)
            return compute.journey_frame(entry, features.available(entry.trace,
                                                                   entry.model_id), 0.0)
        return Response(await pool.run(work), media_type="application/octet-stream")

    @app.get("/api/traces/{tid}/stages/{pos}/channels", responses={**_BINARY, **_ERRORS},
             summary="Channels of one stage, 8 bits per value with each channel's range")
    async def channels(tid: str = _tid(), pos: int = _pos(),
                 start: int = Query(0, ge=0, le=1_000_000),
                 count: int = Query(64, ge=1, le=4096),
                 max_side: int = Query(0, ge=0, le=4096, description="0: full size")) -> Response:
        frame = await pool.run(lambda: compute.channels_frame(state.trace(tid), pos, start,
                                                              count, max_side))
        return Response(frame, media_type="application/octet-stream")

    @app.get("/api/traces/{tid}/stages/{pos}/explain", response_model=Explanation,
             responses=_ERRORS, summary="Receptive field and arithmetic of one output value")
    async def explain(tid: str = _tid(), pos: int = _pos(), channel: int = Query(0, ge=0),
                      row: int = Query(0, ge=0), col: int = Query(0, ge=0)) -> Any:
        return await pool.run(lambda: explain_position(state.trace(tid), pos, channel, row,
                                                       col))

    @app.get("/api/traces/{tid}/stages/{pos}/png", responses=_ERRORS,
             response_class=Response, summary="The stage drawn by convlens.render, as PNG")
    async def stage_png(tid: str = _tid(), pos: int = _pos(), norm: NormName = "stage",
                        cmap: str | None = Query(None, max_length=20)) -> Response:
        from convlens import render
        stage = compute.stage_at(state.trace(tid), pos)
        png = await pool.run(lambda: render.stage(stage, image=0, norm=norm,
                                                  cmap=cmap or None).to_png_bytes())
        name = re.sub(r"[^\w.-]", "_", stage.name)
        return Response(png, media_type="image/png", headers={
            "Content-Disposition": f'attachment; filename="{pos:03d}_{name}.png"'})

    @app.get("/api/traces/{tid}/npz", responses=_ERRORS, response_class=Response,
             summary="The Trace as a .npz file (convlens.Trace.load reads it)")
    async def trace_npz(tid: str = _tid()) -> Response:
        entry = state.trace(tid)

        def work() -> bytes:
            with tempfile.TemporaryDirectory(prefix="convlens-") as tmp:
                return entry.trace.save(Path(tmp) / "trace.npz").read_bytes()
        data = await pool.run(work)
        return Response(data, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="convlens-{entry.id}.npz"'})

    @app.get("/api/traces/{tid}/architecture.svg", responses=_ERRORS, response_class=Response,
             summary="The architecture diagram (convlens.explain)")
    async def architecture(tid: str = _tid()) -> Response:
        svg = await pool.run(features.architecture_svg, state.trace(tid).trace)
        return Response(svg, media_type="image/svg+xml")

    @app.get("/api/traces/{tid}/gradcam", responses=_ERRORS,
             summary="Grad-CAM of a class (default: the top one), as a map over the input")
    async def gradcam(tid: str = _tid(), target: int | None = Query(None, ge=0)) -> Any:
        return await pool.run(features.gradcam, state, state.trace(tid), target)

    @app.get("/api/traces/{tid}/report.html", responses=_ERRORS, response_class=Response,
             summary="The self-contained HTML report of this trace")
    async def report(tid: str = _tid()) -> Response:
        entry = state.trace(tid)
        html = await pool.run(features.report_html, entry.trace)
        return Response(html, media_type="text/html", headers={
            "Content-Disposition": f'attachment; filename="convlens-{entry.id}.html"',
            "Content-Security-Policy": security.page_policy(html)})

    atlas_routes.add_routes(app, held_atlases)
    app.add_middleware(SecurityHeaders)
    return app


class SecurityHeaders:
    """ASGI middleware: :data:`~convlens.report.security.HEADERS` and a
    Content-Security-Policy on every response (the page's, or the API's "nothing"
    unless a route chose one); a plain ASGI wrapper, cheaper than ``@app.middleware``."""

    def __init__(self, app: Any):
        self.app = app
        self.fixed = [(k.lower().encode(), v.encode()) for k, v in security.HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        page = scope.get("path") == "/"

        async def send_secured(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() not in {k for k, _ in self.fixed}]
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    policy = security.EXPLORER_POLICY if page else security.API_POLICY
                    headers.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": headers + self.fixed}
            await send(message)

        await self.app(scope, receive, send_secured)


def _tid():
    from fastapi import Path as PathParam
    return PathParam(..., pattern=_TRACE_ID, description="a trace id from POST /api/traces")


def _pos():
    from fastapi import Path as PathParam
    return PathParam(..., ge=0, le=100_000, description="the stage's position in the trace")
