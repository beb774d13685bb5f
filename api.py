"""fastapi-vss's REST API served from VSS's engine: ``uvicorn api:app`` (``make serve``).

Same paths, status codes and response shapes as fastapi-vss (errors are HTTP 200
with an ``{"error": ...}`` body; only malformed requests get 422), plus
OpenAPI at ``/docs``, Prometheus at ``/metrics``, CORS from
``FASTAPI_VSS_CORS_ORIGINS`` and an optional bearer token from ``VSS_API_TOKEN``
for the endpoints that start work.  Every endpoint is a thin call into vss_core.

Limits a client meets (each with a 4xx answer saying which): the token is checked before a byte of
the body is read (401); uploads are streamed, each file at most ``MAX_UPLOAD_BYTES`` (the cap VSS
reads image files with; 413 as soon as one passes it), at most ``BATCH_SIZE`` files kept;
``top_n`` at most ``MAX_TOP_N`` (1,000).

Nothing is read at import but ``FASTAPI_VSS_CORS_ORIGINS``: the app's lifespan opens the
:class:`~vss_core.rest.service.Service` (``app.state.service``) and closes it at shutdown; endpoints take it
through ``Depends(get_service)`` (tests override it).  A bad config does not stop the server:
``/health`` and ``/projects`` list what is wrong under ``config_errors``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_fastapi_instrumentator import Instrumentator
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import HTTPConnection

from vss_core.errors import VSSError
from vss_core.fastapi_vss.results import job_status
from vss_core.rest.service import MAX_TOP_N, MAX_UPLOAD_BYTES, Service, Upload, gpu_memory, top_n_error

log = logging.getLogger("vss.api")

__version__ = "1.0.0"
TOKEN_ENV = "VSS_API_TOKEN"
CORS_ENV = "FASTAPI_VSS_CORS_ORIGINS"
WS_PENDING_EVERY_S = 0.5   # a websocket hears "pending" this often; "done" as soon as it is
WS_MAX_WAIT_S = 300

router = APIRouter()
_bearer = HTTPBearer(auto_error=False)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Open the service (projects from ``CONFIG_PATH``) for the server's life, close it at shutdown."""
    service = await run_in_threadpool(Service)
    for error in service.config_errors:
        log.warning("config: %s", error)
    app.state.service = service
    try:
        yield
    finally:
        service.close()


def get_service(connection: HTTPConnection) -> Service:
    """The app's :class:`Service`; 503 when the app runs without its lifespan."""
    service = getattr(connection.app.state, "service", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "The VSS service is not started.")
    return service


def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """When VSS_API_TOKEN is set, the request must carry ``Authorization: Bearer <it>``."""
    expected = os.environ.get(TOKEN_ENV)
    if not expected:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Missing or wrong bearer token.",
                            headers={"WWW-Authenticate": "Bearer"})


def _invalid(service: Service, project: str) -> dict | None:
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


async def _uploads(request: Request, batch_size: int) -> list[Upload] | dict:
    """The ``files`` of a multipart body, streamed and capped; fastapi-vss's error for too many files."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise _missing_files()
    files = _Files("files", batch_size)
    parser = MultipartParser(params[b"boundary"], files.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "There was an error parsing the body") from None
    if files.count > batch_size:
        return {"error": f"Images should be less than batch size {batch_size}"}
    if not files.files:
        raise _missing_files()
    return files.files


def _missing_files() -> RequestValidationError:
    return RequestValidationError([{"type": "missing", "loc": ("body", "files"), "msg": "Field required",
                                    "input": None}])


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


async def _too_large(request: Request, exc: UploadTooLarge):
    return JSONResponse({"error": str(exc)}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)


def _with_config_errors(body: dict, service: Service) -> dict:
    """``body``, plus ``config_errors`` (one line per bad file or setting) when the config has any."""
    if service.config_errors:
        body["config_errors"] = [str(e) for e in service.config_errors]
    return body


@router.get("/")
async def root():
    return {"message": f"Welcome to VSS's fastapi-vss API version {__version__}"}


@router.get("/health", status_code=status.HTTP_200_OK)
async def health(service: Service = Depends(get_service)):
    return _with_config_errors({"status": "ok", "version": __version__}, service)


@router.get("/gpu-memory")
def gpu_memory_endpoint():
    return gpu_memory()


@router.get("/projects")
async def projects(service: Service = Depends(get_service)):
    return _with_config_errors({"projects": list(service.projects)}, service)


@router.get("/ids/{project}")
def ids(project: str, service: Service = Depends(get_service)):
    """The first 100 exemplar ids of the project and their labels (``classes``)."""
    try:
        return _invalid(service, project) or service.ids(project)
    except VSSError as e:
        return {"error": f"Error getting ids: {e}"}


@router.post("/knn/{top_n}/{project}", dependencies=[Depends(require_token)], openapi_extra=_UPLOAD_DOC)
async def knn(top_n: int, project: str, request: Request, service: Service = Depends(get_service)):
    """Start a job finding each image's ``top_n`` nearest exemplars; poll it with /predict/job."""
    refused = _invalid(service, project)
    if refused:
        return refused
    if top_n < 1:
        return {"error": "Please provide a valid top_n value greater than 0"}
    if top_n > MAX_TOP_N:
        return JSONResponse({"error": top_n_error(top_n)}, status_code=status.HTTP_400_BAD_REQUEST)
    uploads = await _uploads(request, service.batch_size)
    if isinstance(uploads, dict):
        return uploads
    try:
        job_id = await run_in_threadpool(service.start_knn, project, uploads, top_n)
    except VSSError as e:
        return {"error": f"Error predicting images: {e}"}
    return {"job_id": job_id, "Comment": f"Use /predict/job/{job_id}/{project} to check status."}


@router.post("/embed/{project}", dependencies=[Depends(require_token)], openapi_extra=_UPLOAD_DOC)
async def embed(project: str, request: Request, service: Service = Depends(get_service)):
    """Start a job computing each image's embedding; poll it with /predict/job."""
    refused = _invalid(service, project)
    if refused:
        return refused
    uploads = await _uploads(request, service.batch_size)
    if isinstance(uploads, dict):
        return uploads
    try:
        job_id = await run_in_threadpool(service.start_embed, project, uploads)
    except VSSError as e:
        return {"error": f"Error getting embeddings: {e}"}
    return {"job_id": job_id, "Comment": f"Use /predict/job/{job_id}/{project} to check status."}


@router.get("/predict/job/{job_id}/{project}")
def predict_job(job_id: str, project: str, service: Service = Depends(get_service)):
    """``pending`` while the job runs, ``done`` with ``result`` (and ``results``), or ``failed``."""
    refused = _invalid(service, project)
    if refused:
        return refused
    snap = service.job(project, job_id)
    if snap is None:
        return {"error": f"Job ID {job_id} does not exist in project {project}"}
    return job_status(snap)


@router.websocket("/ws/predict/job/{job_id}/{project}")
async def ws_predict_job(websocket: WebSocket, job_id: str, project: str, service: Service = Depends(get_service)):
    """Streams ``{"status": "pending"}`` every 0.5 s, then the final status as soon as the job ends."""
    await websocket.accept()
    try:
        await _stream_job(websocket, service, job_id, project)
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


async def _stream_job(websocket: WebSocket, service: Service, job_id: str, project: str) -> None:
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


def create_app() -> FastAPI:
    """The API, with CORS for the origins in ``FASTAPI_VSS_CORS_ORIGINS`` and Prometheus at /metrics."""
    app = FastAPI(title=f"VSS API version {__version__}", version=__version__, lifespan=lifespan,
                  description="fastapi-vss's vector similarity search API, served by VSS's engine.")
    origins = [o.strip() for o in os.environ.get(CORS_ENV, "").split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=True,
                           allow_methods=["*"], allow_headers=["*"], expose_headers=["*"])
    app.add_exception_handler(UploadTooLarge, _too_large)
    app.include_router(router)
    Instrumentator().instrument(app).expose(app)
    return app


app = create_app()
