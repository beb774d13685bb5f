"""Where VSS needs a library to do what its public API does not offer: the one module that leans on a
library's internals, each workaround written for the version in ``WRITTEN_FOR`` (tests/test_compat.py
fails when the installed or required version differs, so an upgrade starts by re-reading this file).

RQ (:class:`HeartbeatingSimpleWorker`): a VSS worker runs its chunks in its own process (an RQ
``SimpleWorker``) so that the model and its CUDA context are loaded once; a forking ``Worker`` would
hand each chunk to a forked child, where CUDA cannot be used.  RQ documents that a ``SimpleWorker``
does not heartbeat while a job runs: its StartedJobRegistry entry then lives the whole job timeout
(hours), and the chunk of a worker that died would wait that long before RQ's abandoned-job handling
queues it again.  RQ's own heartbeat (``job_monitoring_interval``) runs only in a forking worker's
parent.  So a thread renews the running job's entry through ``Worker.maintain_heartbeats(job)``: a
public name, but RQ calls it only from that parent loop, never from a second thread; it reads
``worker.execution``, which RQ clears when the job ends; and RQ's repository has already changed its
signature (rq/rq#2431 passes the execution in).  The thread runs only between the public hooks
``prepare_execution`` and ``handle_execution_ended``, while the execution exists.
"""

from __future__ import annotations

import threading

import redis
from rq import SimpleWorker

__all__ = ["WRITTEN_FOR", "HeartbeatingSimpleWorker"]

WRITTEN_FOR = {"rq": "2.12.0"}
STOP_WAIT_S = 90.0
"""Longest wait for a renewal in flight when the job ends: one pipeline, under redis_server.SOCKET_TIMEOUT."""


class HeartbeatingSimpleWorker(SimpleWorker):
    """A SimpleWorker whose running job's StartedJobRegistry entry lives ``entry_ttl`` seconds and is
    renewed every ``heartbeat_s``: the job of a worker that died is abandoned ``entry_ttl`` after its
    last renewal."""

    def __init__(self, *args, heartbeat_s: float, entry_ttl: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.heartbeat_s, self.entry_ttl = heartbeat_s, entry_ttl
        self._beat: _JobHeartbeat | None = None

    def get_heartbeat_ttl(self, job) -> int:
        return self.entry_ttl

    def prepare_execution(self, job):
        execution = super().prepare_execution(job)
        self._beat = _JobHeartbeat(self, job)
        return execution

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        self._stop_beat()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def execute_job(self, job, queue):
        try:
            return super().execute_job(job, queue)
        finally:
            self._stop_beat()

    def _stop_beat(self) -> None:
        if self._beat is not None:
            self._beat.stop()
            self._beat = None


class _JobHeartbeat:
    """A thread that calls ``worker.maintain_heartbeats(job)`` every ``worker.heartbeat_s`` until stopped."""

    def __init__(self, worker: HeartbeatingSimpleWorker, job):
        self.worker, self.job = worker, job
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vss-rq-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=STOP_WAIT_S)

    def _run(self) -> None:
        while not self._stopped.wait(self.worker.heartbeat_s):
            try:
                self.worker.maintain_heartbeats(self.job)
            except redis.RedisError as e:
                self.worker.log.warning("heartbeat of job %s failed: %s", self.job.id, e)
