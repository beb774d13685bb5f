"""The engine behind the REST API (``api.py``): projects, their models and stores, and jobs.

One :class:`Service` per server process.  It opens a project's embedder, store
and :class:`~vss_core.rest.batching.Batcher` on first use, once however many requests
ask at the same time, and keeps them; knn and
embed requests become jobs of its :class:`~vss_core.jobs.registry.JobRegistry`, which
publishes them to the project's job board, so the Streamlit app shows them and
any process over the same Redis can answer a poll.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from vss_core.config.keys import shown
from vss_core.config.projects import DEFAULT_BATCH_SIZE, ProjectConfig, ProjectSet, batch_size, load_projects
from vss_core.errors import ConfigError, InputError, JobError, VSSError
from vss_core.fastapi_vss.results import embed_result, write_result
from vss_core.files.images import MAX_FILE_BYTES
from vss_core.jobs.board import FINISHED_TTL_S
from vss_core.jobs.registry import JobRegistry, JobSnapshot
from vss_core.rest.batching import Batcher

__all__ = ["Service", "Upload", "RESULT_TTL_ENV", "JOB_TIMEOUT_S", "MAX_TOP_N", "MAX_UPLOAD_BYTES",
           "top_n_error"]

RESULT_TTL_ENV = "VSS_RESULT_TTL_S"
"""Seconds a finished job's result stays readable (default: RQ's result_ttl, 500), read when a Service opens."""
JOB_TIMEOUT_S = 120.0           # longest a request's batch may take before its job fails
IDS_LIMIT = 100
MAX_TOP_N = 1000
"""Most neighbours one knn request may ask for per image (each poll returns them all)."""
MAX_UPLOAD_BYTES = MAX_FILE_BYTES
"""Largest uploaded file: the cap every image file is read with."""


def top_n_error(top_n: int) -> str | None:
    """Why a knn request may not ask for ``top_n`` neighbours per image; None when it may."""
    if top_n < 1:
        return "Please provide a valid top_n value greater than 0"
    if top_n > MAX_TOP_N:
        return f"top_n {top_n:,} is more than {MAX_TOP_N:,}, the most neighbours a request may ask for"
    return None


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name as the client sent it and its bytes."""

    filename: str
    data: bytes


@dataclass
class _Engine:
    project: ProjectConfig
    embedder: Any
    stores: Any  # a ProjectStores (exemplars only: the REST API never opens the pool)
    batcher: Batcher


class Service:
    """Projects from ``CONFIG_PATH`` and the jobs run on them; thread-safe.

    A bad config never raises here: the projects that loaded are served and ``config_errors`` says
    what is wrong (a bad ``BATCH_SIZE`` leaves no project).
    """

    def __init__(self, config_dir=None):
        found = _load(config_dir)
        self.projects: dict[str, ProjectConfig] = found.projects
        self.config_errors: list[ConfigError] = found.errors
        self.batch_size = _batch_size()
        self.result_ttl_s = _result_ttl_s(self.config_errors)
        self._lock = threading.Lock()
        self._opening: dict[tuple, threading.Lock] = {}
        self._engines: dict[str, _Engine] = {}
        self._embedders: dict[tuple, Any] = {}
        self._clients: dict[str, Any] = {}
        self.registry = JobRegistry(keep_finished=None, finished_ttl_s=self.result_ttl_s, boards=self.client)

    # -- resources -----------------------------------------------------------
    def _once(self, cache: dict, kind: str, key, make: Callable[[], Any]):
        """``cache[key]``, made by ``make()`` the first time; callers racing that first time wait for it
        (one lock per key, so other keys are not held up).  A ``make`` that raises caches nothing."""
        with self._lock:
            if key in cache:
                return cache[key]
            gate = self._opening.setdefault((kind, key), threading.Lock())
        with gate:
            with self._lock:
                if key in cache:
                    return cache[key]
            value = make()
            with self._lock:
                cache[key] = value
            return value

    def client(self, name: str):
        """The redis client of project ``name`` (started if embedded); None for an unknown one."""
        project = self.projects.get(name)
        if project is None:
            return None
        from vss_core.redis.server import connect

        return self._once(self._clients, "client", name, lambda: connect(project))

    def engine(self, name: str) -> _Engine:
        """The project's embedder, store and batcher, opened on first use: concurrent first requests
        wait for one open (the model loads once)."""
        return self._once(self._engines, "engine", name, lambda: self._open(name))

    def _open(self, name: str) -> _Engine:
        from vss_core.embed import embedder as embedders
        from vss_core.redis.project import open_project

        project = self.projects[name]
        key = (project.model, project.device, project.batch_size)
        embedder = self._once(self._embedders, "embedder", key, lambda: embedders.for_project(project))
        stores = open_project(project, embedder.dim, client=self.client(name))
        return _Engine(project, embedder, stores, Batcher(embedder, stores.exemplars, max_images=4 * project.batch_size))

    def close(self) -> None:
        """Close the projects' Redis connections and forget their engines (embedded servers stop at exit)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            self._engines.clear()
        for client in clients:
            client.close()

    # -- jobs ----------------------------------------------------------------
    def start_knn(self, name: str, uploads: Sequence[Upload], top_n: int) -> str:
        """Start a knn job for the uploads; its result is fastapi-vss's payload (see fastapi_compat)."""
        problem = top_n_error(top_n)
        if problem:
            raise InputError(problem)
        engine = self.engine(name)

        def work(progress):
            progress.set_total(len(uploads))
            future = engine.batcher.search([u.data for u in uploads], [u.filename for u in uploads], top_n)
            results = _wait(future, name)
            progress.advance(len(uploads), errors=[(r.filename, r.error) for r in results.errors])
            payload = results.to_fastapi_json()
            payload["output_path"] = str(write_result(engine.project.output_path, payload))
            return payload

        return self.registry.start("knn", work, project=name, **_meta(uploads, f"top {top_n}"))

    def start_embed(self, name: str, uploads: Sequence[Upload]) -> str:
        """Start an embed job; its result is ``{"filenames", "embeddings", "errors"}``."""
        engine = self.engine(name)

        def work(progress):
            progress.set_total(len(uploads))
            embedded = _wait(engine.batcher.embed([u.data for u in uploads], [u.filename for u in uploads]), name)
            errors = {uploads[e.index].filename: e.reason for e in embedded.errors}
            progress.advance(len(uploads), errors=errors.items())
            return embed_result([uploads[i].filename for i in embedded.ok], embedded.vectors, errors)

        return self.registry.start("embed", work, project=name, **_meta(uploads, "embeddings"))

    def job(self, name: str, job_id: str) -> JobSnapshot | None:
        """The job's snapshot, from this process or the project's board; None once its result expired."""
        snap = self.registry.get(job_id, project=name)
        if snap is None or snap.project != name:
            return None
        if snap.finished and snap.finished_at and time.time() - snap.finished_at > self.result_ttl_s:
            return None
        return snap

    def wait(self, name: str, job_id: str, timeout: float) -> JobSnapshot | None:
        """Like :meth:`job`, returning as soon as the job finishes or ``timeout`` passes."""
        try:
            self.registry.wait(job_id, timeout)
        except JobError:  # another process's job: poll its board record
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                snap = self.job(name, job_id)
                if snap is None or snap.finished:
                    return snap
                time.sleep(0.05)
        return self.job(name, job_id)

    # -- listings ------------------------------------------------------------
    def ids(self, name: str, limit: int = IDS_LIMIT) -> dict:
        """Up to ``limit`` exemplar ids and their labels: ``{"ids": [...], "classes": [...]}``."""
        from vss_core.redis.exemplars import VectorStore
        from vss_core.redis.schema import layout_for

        store = VectorStore(self.client(name), layout_for(self.projects[name]).exemplars)
        ids, classes = [], []
        for label in sorted(store.label_counts()):
            for exemplar in store.exemplars(label, limit=limit - len(ids)):
                ids.append(exemplar.id)
                classes.append(exemplar.label)
            if len(ids) >= limit:
                break
        return {"ids": ids, "classes": classes}


def _load(config_dir) -> ProjectSet:
    """The projects under ``config_dir``; a bad ``BATCH_SIZE`` (which every project needs) is an error, not a raise."""
    try:
        return load_projects(config_dir)
    except ConfigError as e:
        return ProjectSet(errors=[e])


def _batch_size() -> int:
    try:
        return batch_size()
    except ConfigError:  # already in config_errors, from load_projects: no project to upload to
        return DEFAULT_BATCH_SIZE


def _result_ttl_s(errors: list) -> float:
    raw = os.environ.get(RESULT_TTL_ENV)
    try:
        ttl = float(raw) if raw else FINISHED_TTL_S
    except ValueError:
        ttl = -1.0
    if not 0 <= ttl < float("inf"):
        errors.append(ConfigError(f"must be a number of seconds, got {shown(raw)}; using {FINISHED_TTL_S:g}",
                                  key=RESULT_TTL_ENV))
        ttl = FINISHED_TTL_S
    return ttl


def gpu_memory() -> dict:
    """Used and total memory of GPU 0, or fastapi-vss's error when there is none."""
    import torch

    if not torch.cuda.is_available():
        return {"error": "No GPU available"}
    free, total = torch.cuda.mem_get_info(0)
    return {"used_memory": int(total - free), "total_memory": int(total)}


def _wait(future, name: str):
    try:
        return future.result(timeout=JOB_TIMEOUT_S)
    except TimeoutError:
        raise VSSError(f"Project '{name}': the model did not answer within {JOB_TIMEOUT_S:.0f} s.") from None


def _meta(uploads: Sequence[Upload], what: str) -> dict:
    first = uploads[0].filename if uploads else ""
    more = f" +{len(uploads) - 1}" if len(uploads) > 1 else ""
    return {"label": f"{len(uploads)} image(s), {what} ({first}{more})", "files": len(uploads)}
