"""The worker side of the RQ runner (:mod:`vss_core.jobs.rq_jobs` is the app side): the chunk functions RQ runs
and ``python -m vss_core worker PROJECT`` (:func:`run_worker`).

A worker is an RQ SimpleWorker: it runs chunks in its own process, so it loads the model once.  While
a chunk runs its StartedJobRegistry entry is renewed every ``heartbeat_s`` (the entry lives
``3 x heartbeat_s``; :class:`~vss_core.compat.HeartbeatingSimpleWorker`, as RQ's SimpleWorker has no
heartbeat of its own).  A worker that dies leaves the entry to expire; RQ's registry maintenance, run by
every idle worker each ``3 x heartbeat_s``, puts the chunk back on the queue (``Retry``) and another
worker takes it.  The loaders skip what is stored (ids from content): every image once.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import redis

from vss_core.errors import VSSError
from vss_core.jobs.board import OWNER
from vss_core.redis.schema import rq_cancel_key as _cancel_key
from vss_core.redis.schema import rq_progress_key as _progress_key
from vss_core.redis.schema import rq_queue_name as queue_name
from vss_core.redis.server import connect

__all__ = ["run_worker", "load_chunk", "predict_chunk", "mine_chunk", "DEFAULT_HEARTBEAT_S", "RESULT_TTL_S"]

DEFAULT_HEARTBEAT_S = 10.0
RESULT_TTL_S = 24 * 3600


# -- the worker's side: chunks --------------------------------------------------------------
@dataclass
class _Context:
    project: Any
    embedder: Any
    stores: Any  # ProjectStores
    decisions: Any

    @property
    def client(self) -> redis.Redis:
        return self.stores.client


_CONTEXTS: dict[str, _Context] = {}
_CONTEXT_LOCK = threading.Lock()


def _open_context(project, device: str | None = None) -> _Context:
    from vss_core.embed.embedder import for_project
    from vss_core.labeling.decisions import Decisions
    from vss_core.redis.project import open_project

    embedder = for_project(project, device)
    stores = open_project(project, embedder.dim, client=connect(project))
    return _Context(project, embedder, stores, Decisions.of(stores, project.promote))


def _context(project_name: str) -> _Context:
    """The worker process's model and stores for a project, opened once (then cached)."""
    with _CONTEXT_LOCK:
        if project_name not in _CONTEXTS:
            from vss_core.config.projects import load_projects

            _CONTEXTS[project_name] = _open_context(load_projects().get(project_name))
        return _CONTEXTS[project_name]


class _ChunkProgress:
    """What a loader reports to inside a chunk: written to the job's progress hash."""

    def __init__(self, client: redis.Redis, parent: str, index: int):
        self.client, self.job_id, self.index, self.done = client, parent, index, 0
        self._checked, self._cancelled = 0.0, False
        self.advance(0)

    def set_total(self, total) -> None:
        if total is not None:
            self.client.hset(_progress_key(self.job_id), f"total:{self.index}", int(total))

    def advance(self, n: int = 1, errors=()) -> None:
        self.done += int(n)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(_progress_key(self.job_id), f"done:{self.index}", self.done)
        pipe.expire(_progress_key(self.job_id), RESULT_TTL_S)
        pipe.execute()

    def __call__(self, done: int, total=None, errors=()) -> None:
        self.set_total(total)
        self.advance(max(0, int(done) - self.done))

    def message(self, text: str) -> None:
        """Messages stay with the worker; the job's message comes from its coordinator."""

    def error(self, item, reason) -> None:
        """Per-item errors come back in the chunk's result."""

    @property
    def cancelled(self) -> bool:
        if not self._cancelled and time.monotonic() - self._checked > 0.2:
            self._checked = time.monotonic()
            self._cancelled = bool(self.client.exists(_cancel_key(self.job_id)))
        return self._cancelled

    def check(self) -> None:
        from vss_core.jobs.registry import JobCancelled

        if self.cancelled:
            raise JobCancelled(self.job_id)


def _chunk(project_name: str, parent: str, index: int, run: Callable[[_Context, _ChunkProgress], dict]) -> dict:
    ctx = _context(project_name)
    progress = _ChunkProgress(ctx.client, parent, index)
    if progress.cancelled:
        return {"cancelled": True, "worker": OWNER}
    try:
        return dict(run(ctx, progress), worker=OWNER)
    except VSSError as e:
        return {"error": str(e), "worker": OWNER}


def bound_path(path: str, roots: list) -> Path:
    """The path a chunk names, bound again to the roots the app checked it against (opened only under them)."""
    from vss_core.files.paths import CheckedPath

    roots = [r for r in (roots[0] if roots else None) or ()]
    return CheckedPath(path, roots=tuple(Path(r) for r in roots)) if roots else Path(path)


def load_chunk(project_name: str, parent: str, index: int, rows: list, added_by: str) -> dict:
    """Load ``rows`` of (path, label, id) into the project's exemplars (an RQ job)."""
    from vss_core.labeling.loader import Item, load_items

    def run(ctx, progress):
        items = [Item(bound_path(p, roots), label, given) for p, label, given, *roots in rows]
        r = load_items(items, ctx.embedder, ctx.stores.exemplars, added_by, progress=progress,
                       cancel=lambda: progress.cancelled)
        return {"loaded": r.loaded, "skipped": r.skipped, "failed": r.failed, "cancelled": r.cancelled}

    return _chunk(project_name, parent, index, run)


def predict_chunk(project_name: str, parent: str, index: int, paths: list, names: list, top_n: int,
                  threshold: float, roots: list | None = None) -> dict:
    """Predict ``paths`` into the project's review pool, as part of job ``parent`` (an RQ job).

    ``roots[i]`` are the folders ``paths[i]`` was checked against: the worker checks again when it opens it."""
    from vss_core.labeling.predict import predict_paths

    def run(ctx, progress):
        d = ctx.decisions
        bound = [bound_path(p, [r]) for p, r in zip(paths, roots or [None] * len(paths))]
        r = predict_paths(bound, ctx.embedder, d.exemplars, d.pool, top_n=top_n,
                          threshold=threshold, names=names, progress=progress,
                          cancel=lambda: progress.cancelled, job=parent)
        return {"predicted": r.predicted, "skipped": r.skipped, "failed": r.failed, "cancelled": r.cancelled,
                "ids": r.ids}

    return _chunk(project_name, parent, index, run)


def mine_chunk(project_name: str, parent: str, index: int, what: str, scope: str, k: int | None) -> dict:
    """Score the pool or the exemplars for ``what`` (novelty, anomaly, mislabel) (an RQ job)."""
    from vss_core.jobs.registry import JobCancelled
    from vss_core.mining.runs import mine_job

    def run(ctx, progress):
        try:
            return {"scored": int(mine_job(what, ctx.stores, scope, k)(progress))}
        except JobCancelled:
            return {"cancelled": True}

    return _chunk(project_name, parent, index, run)


# -- the worker process ----------------------------------------------------------------------
def run_worker(project, device: str | None = None, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
               burst: bool = False) -> bool:
    """Take the project's chunks until stopped (SIGTERM/SIGINT) or, with ``burst``, the queue is empty.

    The model loads once, before the first chunk.  A chunk whose worker died is taken again
    after about ``3 x heartbeat_s`` (RQ's abandoned-job handling with ``Retry``)."""
    from rq import Queue

    from vss_core.compat import HeartbeatingSimpleWorker

    _CONTEXTS[project.name] = _open_context(project, device)
    ttl = max(1, math.ceil(3 * heartbeat_s))
    client = connect(project)
    worker = HeartbeatingSimpleWorker([Queue(queue_name(project.name), connection=client)], connection=client,
                                      worker_ttl=ttl + 15, maintenance_interval=ttl, heartbeat_s=heartbeat_s,
                                      entry_ttl=ttl)
    return worker.work(burst=burst, logging_level="WARNING")
