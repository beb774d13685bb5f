"""fastapi-vss's REST API served from VSS's engine: ``uvicorn api:app`` (``make serve``).

Same paths, status codes and response shapes as fastapi-vss (errors are HTTP 200
with an ``{"error": ...}`` body; only malformed requests get 422), plus
OpenAPI at ``/docs``, Prometheus at ``/metrics``, CORS from
``FASTAPI_VSS_CORS_ORIGINS`` and an optional bearer token from ``VSS_API_TOKEN``
for the endpoints that start work.  Every endpoint is a thin call into vss_core.

Limits a client meets (each with a 4xx answer saying which): the token is checked before a byte of
the body is read (401); uploads are streamed, each file at most ``MAX_UPLOAD_BYTES`` (the cap VSS
reads image files with; 413 as soon as one passes it), at most ``BATCH_SIZE`` files kept;
``top_n`` at most ``MAX_TOP_N`` (400).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_fastapi_instrumentator import Instrumentator
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from vss_core.errors import VSSError
from vss_core.fastapi_compat import job_status
from vss_core.service import MAX_TOP_N, MAX_UPLOAD_BYTES, Service, Upload, gpu_memory, top_n_error

log = logging.getLogger("vss.api")

__version__ = "1.0.0"
TOKEN_ENV = "VSS_API_TOKEN"
CORS_ENV = "FASTAPI_VSS_CORS_ORIGINS"
WS_PENDING_EVERY_S = 0.5   # a websocket hears "pending" this often; "done" as soon as it is
WS_MAX_WAIT_S = 300

app = FastAPI(title=f"VSS API version {__version__}", version=__version__,
              description="fastapi-vss's vector similarity search API, served by VSS's engine.")
_origins = [o.strip() for o in os.environ.get(CORS_ENV, "").split(",") if o.strip()]
if _origins:
    app.add_middleware(CORSMiddleware, allow_origins=_origins, allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"], expose_headers=["*"])
Instrumentator().instrument(app).expose(app)

service = Service()
for _error in service.config_errors:
    log.warning("config: %s", _error)
_bearer = HTTPBearer(auto_error=False)


def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """When VSS_API_TOKEN is set, the request must carry ``Authorization: Bearer <it>``."""
    expected = os.environ.get(TOKEN_ENV)
    if not expected:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Missing or wrong bearer token.",
                            headers={"WWW-Authenticate": "Bearer"})


def _invalid(project: str) -> dict | None:
    return None if project in service.projects else {"error": f"Invalid project name {project}"}


class UploadTooLarge(Exception):
    """A file of the upload passed :data:`MAX_UPLOAD_BYTES`."""


class _Files:
    """Streaming multipart callbacks keeping the files of one form field, each capped, at most ``keep``
    of them (the others are counted, not kept); other parts are skipped unread."""

    def __init__(self, field: str, keep: int):
        self.field, self.keep = field.encode(), keep
        self.files: list[Upload] = []
        self.count = 0
        self._header, self._value, self._disposition = b"", b"", b""
        self._name: str | None = None
        self._data = bytearray()

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end")}

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._data = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == self.field and b"filename" in options:
            self.count += 1
            if self.count <= self.keep:
                self._name = options[b"filename"].decode("utf-8", "replace") or f"file{self.count - 1}"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            return
        if len(self._data) + end - start > MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"{self._name}: over the cap of {MAX_UPLOAD_BYTES:,} bytes per file")
        self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._name is not None:
            self.files.append(Upload(self._name, bytes(self._data)))
        self._name, self._data = None, bytearray()


async def _uploads(request: Request) -> list[Upload] | dict:
    """The ``files`` of a multipart body, streamed and capped; fastapi-vss's error for too many files."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise _missing_files()
    files = _Files("files", service.batch_size)
    parser = MultipartParser(params[b"boundary"], files.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "There was an error parsing the body") from None
    if files.count > service.batch_size:
        return {"error": f"Images should be less than batch size {service.batch_size}"}
    if not files.files:
        raise _missing_files()
    return files.files


def _missing_files() -> RequestValidationError:
    return RequestValidationError([{"type": "missing", "loc": ("body", "files"), "msg": "Field required",
                                    "input": None}])


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


@app.exception_handler(UploadTooLarge)
async def _too_large(request: Request, exc: UploadTooLarge):
    return JSONResponse({"error": str(exc)}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)


@app.get("/")
async def root():
    return {"message": f"Welcome to VSS's fastapi-vss API version {__version__}"}


@app.get("/health", status_code=status.HTTP_200_OK)
async def health():
    return {"status": "ok", "version": __version__}


@app.get("/gpu-memory")
def gpu_memory_endpoint():
    return gpu_memory()


@app.get("/projects")
async def projects():
    return {"projects": list(service.projects)}


@app.get("/ids/{project}")
def ids(project: str):
    """The first 100 exemplar ids of the project and their labels (``classes``)."""
    try:
        return _invalid(project) or service.ids(project)
    except VSSError as e:
        return {"error": f"Error getting ids: {e}"}


@app.post("/knn/{top_n}/{project}", dependencies=[Depends(require_token)], openapi_extra=_UPLOAD_DOC)
async def knn(top_n: int, project: str, request: Request):
    """Start a job finding each image's ``top_n`` nearest exemplars; poll it with /predict/job."""
    refused = _invalid(project)
    if refused:
        return refused
    if top_n < 1:
        return {"error": "Please provide a valid top_n value greater than 0"}
    if top_n > MAX_TOP_N:
        return JSONResponse({"error": top_n_error(top_n)}, status_code=status.HTTP_400_BAD_REQUEST)
    uploads = await _uploads(request)
    if isinstance(uploads, dict):
        return uploads
    try:
        job_id = await run_in_threadpool(service.start_knn, project, uploads, top_n)
    except VSSError as e:
        return {"error": f"Error predicting images: {e}"}
    return {"job_id": job_id, "Comment": f"Use /predict/job/{job_id}/{project} to check status."}


@app.post("/embed/{project}", dependencies=[Depends(require_token)], openapi_extra=_UPLOAD_DOC)
async def embed(project: str, request: Request):
    """Start a job computing each image's embedding; poll it with /predict/job."""
    refused = _invalid(project)
    if refused:
        return refused
    uploads = await _uploads(request)
    if isinstance(uploads, dict):
        return uploads
    try:
        job_id = await run_in_threadpool(service.start_embed, project, uploads)
    except VSSError as e:
        return {"error": f"Error getting embeddings: {e}"}
    return {"job_id": job_id, "Comment": f"Use /predict/job/{job_id}/{project} to check status."}


@app.get("/predict/job/{job_id}/{project}")
def predict_job(job_id: str, project: str):
    """``pending`` while the job runs, ``done`` with ``result`` (and ``results``), or ``failed``."""
    refused = _invalid(project)
    if refused:
        return refused
    snap = service.job(project, job_id)
    if snap is None:
        return {"error": f"Job ID {job_id} does not exist in project {project}"}
    return job_status(snap)


@app.websocket("/ws/predict/job/{job_id}/{project}")
async def ws_predict_job(websocket: WebSocket, job_id: str, project: str):
    """Streams ``{"status": "pending"}`` every 0.5 s, then the final status as soon as the job ends."""
    await websocket.accept()
    try:
        await _stream_job(websocket, job_id, project)
    except WebSocketDisconnect:
        return
    except Exception as e:  # noqa: BLE001 - tell the client, as fastapi-vss does, then close
        log.exception("websocket for job %s of %s", job_id, project)
        try:
            await websocket.send_json({"status": "error", "message": str(e)})
        except Exception:  # noqa: BLE001 - the client is gone
            pass
    finally:
        try:
            await websocket.close()
        except RuntimeError:  # already closed by the client
            pass


async def _stream_job(websocket: WebSocket, job_id: str, project: str) -> None:
    if project not in service.projects:
        await websocket.send_json({"status": "error", "message": f"Invalid project name {project}"})
        return
    end = time.monotonic() + WS_MAX_WAIT_S
    while time.monotonic() < end:
        snap = await run_in_threadpool(service.wait, project, job_id, WS_PENDING_EVERY_S)
        if snap is None:
            await websocket.send_json({"status": "error",
                                       "message": f"Job ID {job_id} does not exist in project {project}"})
            return
        body = job_status(snap)
        await websocket.send_json(body)
        if body["status"] != "pending":
            return
        await asyncio.sleep(0)
    await websocket.send_json({"status": "error", "message": "Timed out waiting for job"})
