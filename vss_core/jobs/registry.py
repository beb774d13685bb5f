"""Background jobs with progress that any browser session can watch.

:class:`JobRegistry` runs a worker ``fn(progress)`` in a daemon thread.  The
worker reports through :class:`Progress` (``set_total``, ``advance``,
``message``) and the registry hands readers immutable :class:`JobSnapshot`
objects, so a page can poll a job from a fragment without touching the worker's
state.  The registry itself is meant to be held once per server process (the
app keeps it in ``st.cache_resource``), so a page reload or a second tab finds
the same jobs.  This module never imports streamlit.

Across processes: given ``boards`` (project name -> that project's redis client,
or None), the registry publishes its jobs of the project to the project's Redis
(:mod:`vss_core.jobs.board`, which names the keys) and lists other processes'
jobs with its own; a job whose owner died reads ``interrupted``.  Kinds in
``EXCLUSIVE_KINDS`` (load, predict, mine) run one at a time per project, across
processes; other kinds -- the REST API's per-request knn and embed -- run side
by side and are never refused.

Per-item errors: a job's snapshot (and board record) holds the first ``ERROR_SAMPLE`` and the exact
count; all of them go to ``<errors_dir>/job-errors/<job id>.jsonl`` (``errors_dir`` defaults to
``VSS_DATA_DIR``).  Finished jobs are forgotten after ``finished_ttl_s`` and/or beyond ``keep_finished``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import redis

from vss_core.errors import JobError, VSSError
from vss_core.jobs.board import JobBoard
from vss_core.jobs.state import (
    ACTIVE_STATES, CANCELLED, DONE, ERROR_SAMPLE, EXCLUSIVE_KINDS, FAILED, FINAL_STATES, INTERRUPTED, QUEUED, RUNNING,
    JobSnapshot)
from vss_core.jobs.state import LiveJob as _Job
from vss_core.jobs.state import remove_old_errors, snapshot_of, to_record

__all__ = [
    "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "INTERRUPTED", "ACTIVE_STATES", "FINAL_STATES",
    "EXCLUSIVE_KINDS", "ERROR_SAMPLE", "ERRORS_FOLDER",
    "JobCancelled", "JobSnapshot", "Progress", "JobRegistry",
]

log = logging.getLogger(__name__)

_RATE_WINDOW_S = 15.0
ERRORS_FOLDER = "job-errors"


class JobCancelled(Exception):
    """Raised inside a worker by :meth:`Progress.check` once the job is cancelled."""


class Progress:
    """The reporter a worker gets: counts, per-item errors, a message, and cancel.

    Reporting never raises, so a worker can report from anywhere.  A worker
    stops on cancel either by calling :meth:`check` (raises
    :class:`JobCancelled`; the job ends ``cancelled`` without a result) or by
    polling :attr:`cancelled` -- or handing ``lambda: progress.cancelled`` on --
    and returning (the job ends ``cancelled`` and keeps what it returned).
    """

    def __init__(self, registry: "JobRegistry", job: _Job):
        self._registry = registry
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def cancel_event(self) -> threading.Event:
        return self._job.cancel_event

    @property
    def cancelled(self) -> bool:
        return self._job.cancel_event.is_set()

    def check(self) -> None:
        if self._job.cancel_event.is_set():
            raise JobCancelled(self._job.id)

    def set_total(self, total: int | None) -> None:
        with self._registry._lock:
            self._job.total = None if total is None else max(0, int(total))

    def advance(self, n: int = 1, errors: Iterable[tuple[Any, Any]] = ()) -> None:
        """Count ``n`` more items handled (loaded, skipped or failed) and record errors."""
        new_errors = tuple((str(item), str(reason)) for item, reason in errors)
        with self._registry._lock:
            job = self._job
            job.done += int(n)
            if new_errors:
                job.count_errors(new_errors)
            now = time.monotonic()
            job.samples.append((now, job.done))
            while len(job.samples) > 2 and now - job.samples[0][0] > _RATE_WINDOW_S:
                job.samples.popleft()
        self._job.log_errors(new_errors)

    def error(self, item: Any, reason: Any) -> None:
        """Record one per-item error without counting an item."""
        self.advance(0, errors=((item, reason),))

    def message(self, text: str) -> None:
        with self._registry._lock:
            self._job.message = str(text)

    def __call__(self, done: int, total: int | None = None, errors: Iterable = ()) -> None:
        """Absolute-count form: ``progress(done, total)``, for callbacks that report totals."""
        with self._registry._lock:
            if total is not None:
                self._job.total = int(total)
            delta = int(done) - self._job.done
        self.advance(max(0, delta), errors=errors)


class JobRegistry:
    """Thread-safe set of background jobs, newest first.

    ``start(kind, fn, project=..., **meta)`` returns a job id at once and runs
    ``fn(progress)`` in a daemon thread.  When ``fn`` returns its value becomes
    ``result`` and the job is ``done`` (``cancelled`` if a cancel was asked
    for); a :class:`VSSError` makes it ``failed`` with the error's message as
    is, any other exception ``failed`` with the type name in front.
    Finished jobs beyond ``keep_finished`` (None: no count) or finished more than ``finished_ttl_s``
    ago (None: kept) are forgotten, oldest first.  A job's full error list goes to a file under
    ``errors_dir`` (default ``VSS_DATA_DIR``).
    ``boards(project)`` gives the project's redis client for the job board (or
    None); it is only called from the threads that start or read jobs.
    """

    def __init__(self, keep_finished: int | None = 50, boards: Callable[[str], Any] | None = None,
                 heartbeat_s: float = 0.5, finished_ttl_s: float | None = None, errors_dir: Path | None = None):
        self._lock = threading.RLock()
        self._finished_ttl_s = finished_ttl_s
        self._errors_dir = Path(errors_dir) if errors_dir is not None else None
        self._errors_cleaned = False
        self._jobs: dict[str, _Job] = {}
        self._order = itertools.count()
        self._seq: dict[str, int] = {}
        self._keep_finished = keep_finished
        self._board_client = boards
        self._boards: dict[str, JobBoard] = {}
        self._heartbeat_s = heartbeat_s
        self._beating = False

    # -- starting and running ------------------------------------------------
    def start(self, kind: str, fn: Callable[[Progress], Any], project: str | None = None,
              **meta: Any) -> str:
        if not callable(fn):
            raise JobError(f"Job '{kind}' cannot start: its worker is not callable.")
        job_id = uuid.uuid4().hex[:12]
        job = _Job(job_id, kind, project, meta)
        job.errors_path = self._errors_folder() / f"{job_id}.jsonl"
        job.board = self.board(project)
        job.thread = threading.Thread(target=self._run, args=(job, fn), daemon=True,
                                      name=f"vss-job-{kind}-{job_id}")
        with self._lock:
            self._check_exclusive(job)
            self._jobs[job_id] = job
            self._seq[job_id] = next(self._order)
            self._prune()
        self._publish(job)
        job.thread.start()
        if job.board is not None:
            self._start_heartbeat()
        return job_id

    def _check_exclusive(self, job: _Job) -> None:
        """Refuse a second running job of an exclusive kind in one project, here or elsewhere."""
        if job.kind not in EXCLUSIVE_KINDS or job.project is None:
            return
        for other in self._jobs.values():
            if other.kind == job.kind and other.project == job.project and other.state in ACTIVE_STATES:
                raise JobError(_busy(job, other.id, other.meta, "this process"))
        if job.board is None:
            return
        try:
            holder = job.board.acquire(job.kind, job.id)
        except redis.RedisError as e:
            raise JobError(f"{job.kind.title()} job of project '{job.project}' cannot start: "
                           f"its Redis did not answer ({e}).") from e
        if holder is not None:
            record = job.board.record(holder) or {}
            raise JobError(_busy(job, holder, record.get("meta") or {}, record.get("owner") or "?"))

    def _run(self, job: _Job, fn: Callable[[Progress], Any]) -> None:
        progress = Progress(self, job)
        with self._lock:
            early = job.cancel_event.is_set()
            if early:
                job.state, job.finished_at = CANCELLED, time.time()
                job.message = job.message or "Cancelled before it started."
            else:
                job.state = RUNNING
                job.started_at = time.time()
                job.samples.append((time.monotonic(), 0))
        if early:
            self._ended(job)
            return
        self._publish(job)
        try:
            result = fn(progress)
        except JobCancelled:
            self._finish(job, CANCELLED, None, "Cancelled.")
        except VSSError as e:
            self._finish(job, FAILED, None, str(e))
        except Exception as e:  # a bug in a worker: keep the type for the report
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, FAILED, None, f"{type(e).__name__}: {e}")
        else:
            if job.cancel_event.is_set():
                self._finish(job, CANCELLED, result, "Cancelled.")
            else:
                self._finish(job, DONE, result, None)

    def _finish(self, job: _Job, state: str, result: Any, message: str | None) -> None:
        job.close_errors()
        with self._lock:
            job.state = state
            job.result = result
            if message is not None:
                job.message = message
            job.finished_at = time.time()
        self._ended(job)

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINAL_STATES), key=lambda j: self._seq[j.id])
        excess = 0 if self._keep_finished is None else max(0, len(finished) - self._keep_finished)
        if self._finished_ttl_s is not None:
            cutoff = time.time() - self._finished_ttl_s
            excess = max(excess, sum(1 for j in finished if (j.finished_at or 0) < cutoff))
        for j in finished[:excess]:
            del self._jobs[j.id]
            del self._seq[j.id]

    def _errors_folder(self) -> Path:
        """Where jobs' error lists go; older ones are removed when it is first used."""
        if self._errors_dir is None:
            from vss_core.config.projects import settings

            self._errors_dir = settings().data_dir
        folder = self._errors_dir / ERRORS_FOLDER
        if not self._errors_cleaned:
            self._errors_cleaned = True
            remove_old_errors(folder)
        return folder

    # -- the job board (other processes) ---------------------------------------
    def board(self, project: str | None) -> JobBoard | None:
        """The project's job board, or None (no ``boards`` hook, or its Redis is unreachable)."""
        if project is None or self._board_client is None:
            return None
        with self._lock:
            found = self._boards.get(project)
        if found is not None:
            return found
        try:
            client = self._board_client(project)
        except VSSError as e:
            log.warning("no job board for %s: %s", project, e)
            return None
        if client is None:
            return None
        with self._lock:
            return self._boards.setdefault(project, JobBoard(client, project))

    def _publish(self, job: _Job) -> None:
        """Write the job's record; snapshots are taken and written in one order, so a heartbeat
        racing the final state change can never leave an older state on the board."""
        if job.board is None:
            return
        with job.publish_lock:
            with self._lock:
                snap = job.snapshot()
            job.board.publish(to_record(snap), finished=snap.finished)

    def _ended(self, job: _Job) -> None:
        self._publish(job)
        if job.board is not None and job.kind in EXCLUSIVE_KINDS:
            job.board.release(job.kind, job.id)

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._beating:
                return
            self._beating = True
        threading.Thread(target=self._heartbeat, daemon=True, name="vss-job-heartbeat").start()

    def _heartbeat(self) -> None:
        """Every ``heartbeat_s``: publish running jobs, renew their locks, pick up cancels."""
        while True:
            with self._lock:
                running = [j for j in self._jobs.values() if j.board is not None and j.state in ACTIVE_STATES]
                if not running:
                    self._beating = False
                    return
            for job in running:
                self._publish(job)
                if job.kind in EXCLUSIVE_KINDS:
                    job.board.renew(job.kind, job.id)
                if job.board.cancel_requested(job.id) and not job.cancel_event.is_set():
                    self.cancel(job.id)
            time.sleep(self._heartbeat_s)

    # -- reading -------------------------------------------------------------
    def _get(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError(f"No job with id '{job_id}' (it may have finished long ago and been forgotten).")
        return job

    def snapshot(self, job_id: str, project: str | None = None) -> JobSnapshot:
        snap = self.get(job_id, project)
        if snap is None:
            raise JobError(f"No job with id '{job_id}' (it may have finished long ago and been forgotten).")
        return snap

    def get(self, job_id: str | None, project: str | None = None) -> JobSnapshot | None:
        """A job's snapshot, from this process or (given its project) from the board; None if unknown."""
        if not job_id:
            return None
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.snapshot()
        board = self.board(project)
        record = board.record(job_id) if board is not None else None
        return snapshot_of(record) if record else None

    def jobs(self, project: str | None = None, kind: str | None = None,
             active: bool | None = None) -> list[JobSnapshot]:
        """Snapshots of the jobs, newest first, optionally filtered; a project's include other processes'."""
        with self._lock:
            self._prune()
            chosen = [j for j in self._jobs.values()
                      if (project is None or j.project == project)
                      and (kind is None or j.kind == kind)]
            chosen.sort(key=lambda j: self._seq[j.id], reverse=True)
            snaps = [j.snapshot() for j in chosen]
            mine = set(self._jobs)
        board = self.board(project)
        if board is not None:
            others = [snapshot_of(r) for r in board.records()
                      if r["id"] not in mine and (kind is None or r.get("kind") == kind)]
            snaps = sorted(snaps + others, key=lambda s: s.created_at, reverse=True)
        if active is not None:
            snaps = [s for s in snaps if s.active == active]
        return snaps

    # -- control -------------------------------------------------------------
    def cancel(self, job_id: str, project: str | None = None) -> bool:
        """Ask a job to stop (here, or through the board in the process running it);
        True when it was still queued or running."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                if job.state in FINAL_STATES:
                    return False
                job.cancel_event.set()
                job.message = "Cancelling…"
                return True
        board = self.board(project)
        if board is None or board.record(job_id) is None:
            self._get(job_id)  # raises JobError naming the id
        return board.request_cancel(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until the job has finished (or ``timeout`` passes); return its snapshot."""
        with self._lock:
            thread = self._get(job_id).thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot(job_id)


def _busy(job: _Job, other_id: str, meta: Mapping, where: str) -> str:
    what = meta.get("label") or meta.get("path") or ""
    who = f" by {meta['added_by']}" if meta.get("added_by") else ""
    return (f"A {job.kind} job is already running for project '{job.project}': job {other_id}"
            f"{' (' + str(what) + ')' if what else ''}{who} in {where}. Wait for it or cancel it first.")
