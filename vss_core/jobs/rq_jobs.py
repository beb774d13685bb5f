"""Load, predict and mine jobs on RQ workers over the project's own Redis (``jobs.runner: rq``).

The job still belongs to the JobRegistry of the process that started it: its body
(:func:`distributed`) collects the images, splits them into chunks of ``jobs.chunk_size``,
enqueues one RQ job per chunk on the queue ``vss-<project>`` and, while workers take them,
folds their progress into the job's progress (so the job board, the pages, cancel and resume
work as for a thread job).  Mining is not per image: it runs as one chunk.  Keys beside RQ's
own ``rq:*``: ``vss:rq:<job id>:progress`` (HASH ``done:<chunk>``, ``total:<chunk>``) and
``vss:rq:<job id>:cancel`` (the flag running chunks poll).

The chunks run on workers (:mod:`vss_core.jobs.rq_worker`, ``python -m vss_core worker PROJECT``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Callable

from vss_core.errors import JobError
from vss_core.jobs.rq_worker import RESULT_TTL_S, load_chunk, mine_chunk, predict_chunk
from vss_core.redis.schema import rq_cancel_key as _cancel_key
from vss_core.redis.schema import rq_progress_key as _progress_key
from vss_core.redis.schema import rq_queue_name as queue_name
from vss_core.redis.server import connect

__all__ = ["distributed", "queue_name", "CHUNK_RETRIES"]

log = logging.getLogger(__name__)

CHUNK_RETRIES = 3
CHUNK_TIMEOUT_S = 6 * 3600
POLL_S = 0.25
CANCEL_WAIT_S = 30.0





# -- the app's side: split, enqueue, watch -----------------------------------------------------
def distributed(project, kind: str, spec: dict) -> Callable:
    """The body ``fn(progress)`` of a ``kind`` job whose work runs on the project's RQ workers."""
    if kind not in _PLANS:
        raise JobError(f"job kind {kind!r} cannot run on RQ workers (load, predict or mine)")

    def work(progress):
        progress.message("Collecting files…")
        with _PLANS[kind](project, spec, progress.job_id) as (calls, pre_errors, pre_done):
            if pre_errors:
                progress.advance(pre_done, errors=pre_errors)
            return _Watch(project, kind, progress, calls, pre_done).run(pre_errors)

    return work


def roots_of(path) -> list[str]:
    """The roots a checked path is bound to, as a queued RQ job can carry them."""
    return [str(root) for root in getattr(path, "roots", ())]


@contextlib.contextmanager
def _plan_load(project, spec, parent):
    from vss_core.labeling.loader import collected

    with collected(spec["source"], spec["path"], project.data_roots) as (items, refused):  # a zip's files
        rows = [(str(i.path), i.label, i.id, roots_of(i.path)) for i in items]               # live until the end
        size = project.jobs["chunk_size"]
        calls = [(load_chunk, (project.name, parent, n, rows[s:s + size], spec.get("added_by", "")),
                  len(rows[s:s + size])) for n, s in enumerate(range(0, len(rows), size))]
        yield calls, refused, len(refused)


@contextlib.contextmanager
def _plan_predict(project, spec, parent):
    from vss_core.labeling.predict import sources

    uploads = [Path(u) for u in spec.get("uploads") or ()]
    paths, names, refused = sources(spec["source"], spec.get("path"), project.data_roots, uploads,
                                     list(spec.get("names") or ()))
    size = project.jobs["chunk_size"]
    calls = [(predict_chunk, (project.name, parent, n, [str(p) for p in paths[s:s + size]], names[s:s + size],
                              int(spec["top_n"]), float(spec["threshold"]), [roots_of(p) for p in paths[s:s + size]]),
              len(paths[s:s + size]))
             for n, s in enumerate(range(0, len(paths), size))]
    yield calls, refused, 0


@contextlib.contextmanager
def _plan_mine(project, spec, parent):
    yield [(mine_chunk, (project.name, parent, 0, spec["what"], spec.get("scope", ""), spec.get("k")), None)], [], 0


_PLANS = {"load": _plan_load, "predict": _plan_predict, "mine": _plan_mine}


class _Watch:
    """Enqueues a job's chunks and follows them until each finished, failed or was cancelled."""

    def __init__(self, project, kind, progress, calls, pre_done):
        from rq import Queue

        self.project, self.kind, self.progress, self.calls, self.pre_done = project, kind, progress, calls, pre_done
        self.client = connect(project)
        self.queue = Queue(queue_name(project.name), connection=self.client)
        self.parent = progress.job_id
        self.results: dict[int, dict] = {}
        self.failure: str | None = None

    def run(self, pre_errors):
        total = [c[2] for c in self.calls]
        self.progress.set_total(None if None in total else self.pre_done + sum(total))
        ids = self._enqueue()
        pending = dict(enumerate(ids))
        cancel_at = None
        try:
            while pending:
                if cancel_at is None and (self.progress.cancelled or self.failure):
                    cancel_at = self._cancel(pending)
                if cancel_at is not None and time.monotonic() - cancel_at > CANCEL_WAIT_S:
                    break
                self._poll(pending)
                self._report()
                if pending:
                    time.sleep(POLL_S)
        finally:
            self.client.delete(_progress_key(self.parent))
        if self.failure:
            raise JobError(f"{self.kind.title()} job of project '{self.project.name}' failed: {self.failure}")
        return self._result(pre_errors)

    def _enqueue(self) -> list[str]:
        from rq import Retry

        self.progress.message(f"Queued {len(self.calls)} chunk(s) on RQ queue {self.queue.name}…")
        ids = []
        for n, (fn, args, _) in enumerate(self.calls):
            job = self.queue.enqueue(fn, *args, job_id=f"{self.parent}-{n}", job_timeout=CHUNK_TIMEOUT_S,
                                     result_ttl=RESULT_TTL_S, failure_ttl=RESULT_TTL_S,
                                     retry=Retry(max=CHUNK_RETRIES), description=f"{self.kind} {self.parent} #{n}")
            ids.append(job.id)
        return ids

    def _cancel(self, pending: dict[int, str]) -> float:
        from rq.job import Job, JobStatus

        self.client.set(_cancel_key(self.parent), "1", ex=RESULT_TTL_S)
        for job in Job.fetch_many(list(pending.values()), connection=self.client):
            if job is not None and job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED):
                try:
                    job.cancel()
                except Exception as e:  # it started meanwhile: it sees the flag
                    log.info("chunk %s not cancelled: %s", job.id, e)
        return time.monotonic()

    def _poll(self, pending: dict[int, str]) -> None:
        from rq.job import Job, JobStatus

        jobs = Job.fetch_many(list(pending.values()), connection=self.client)
        for (n, _), job in zip(list(pending.items()), jobs):
            status = job.get_status(refresh=False) if job is not None else None
            if status == JobStatus.FINISHED:
                self.results[n] = job.return_value() or {}
                if self.results[n].get("error") and not self.failure:
                    self.failure = f"chunk {n + 1} of {len(self.calls)}: {self.results[n]['error']}"
            elif status == JobStatus.FAILED:
                reason = ((job.exc_info or "").strip().splitlines() or ["unknown error"])[-1]
                self.failure = self.failure or f"chunk {n + 1} of {len(self.calls)} failed on its worker: {reason}"
            elif status is None and not self.progress.cancelled:
                self.failure = self.failure or f"chunk {n + 1} of {len(self.calls)}: its RQ job was deleted"
            elif status not in (None, JobStatus.CANCELED, JobStatus.STOPPED):
                continue
            del pending[n]
            errors = self.results.get(n, {}).get("failed") or ()
            if errors:
                self.progress.advance(0, errors=[tuple(e) for e in errors])
        if pending and not self.progress.cancelled:
            self._say_waiting()

    def _say_waiting(self) -> None:
        from rq import Worker

        if Worker.count(queue=self.queue) == 0:
            self.progress.message(f"Waiting for an RQ worker: start `python -m vss_core worker {self.project.name}`.")
        else:
            self.progress.message(f"{len(self.results)} of {len(self.calls)} chunk(s) done on RQ workers…")

    def _report(self) -> None:
        raw = {k.decode(): int(v) for k, v in self.client.hgetall(_progress_key(self.parent)).items()}
        done = self.pre_done
        totals = []
        for n, call in enumerate(self.calls):
            result = self.results.get(n)
            done += _count(result) if result else raw.get(f"done:{n}", 0)
            totals.append(call[2] if call[2] is not None else raw.get(f"total:{n}"))
        self.progress(done, None if None in totals else self.pre_done + sum(totals))

    def _result(self, pre_errors):
        parts = [self.results[n] for n in sorted(self.results)]
        cancelled = self.progress.cancelled or len(parts) < len(self.calls) or any(p.get("cancelled") for p in parts)
        failed = list(pre_errors) + [tuple(e) for p in parts for e in p.get("failed") or ()]
        if self.kind == "mine":
            scored = sum(int(p.get("scored") or 0) for p in parts)
            self.progress.message(f"{scored:,} scored")
            return scored
        if self.kind == "load":
            from vss_core.labeling.loader import LoadReport

            report = LoadReport(loaded=sum(p.get("loaded", 0) for p in parts),
                                skipped=sum(p.get("skipped", 0) for p in parts), failed=failed, cancelled=cancelled)
        else:
            from vss_core.labeling.predict import PredictReport

            report = PredictReport(predicted=sum(p.get("predicted", 0) for p in parts),
                                   skipped=sum(p.get("skipped", 0) for p in parts), failed=failed,
                                   cancelled=cancelled, ids=[i for p in parts for i in p.get("ids") or ()])
        self.progress.message(report.summary())
        return report


def _count(result: dict) -> int:
    return sum(int(result.get(k) or 0) for k in ("loaded", "predicted", "skipped")) + len(result.get("failed") or ())
