"""The job board: job snapshots published to a project's Redis, so every process sees them.

The Streamlit app and the REST server (``uvicorn api:app``) are separate
processes over the same Redis.  Each publishes its jobs here; each reads the
others' from here.  The keys (named in :mod:`vss_core.redis.schema`, used as follows):

- ``vss:job:<id>`` -- STRING, the job's record as JSON (a snapshot plus ``owner``
  and ``heartbeat``).  While the job runs its owner rewrites it every
  ``heartbeat_s`` and on each state change, with a TTL of ``ACTIVE_TTL_S``; once
  finished the TTL is ``FINISHED_TTL_S`` (then results expire, as RQ's do).
- ``vss:jobs:<project>`` -- ZSET of job ids by creation time (trimmed to ``KEEP``).
- ``vss:job:<id>:cancel`` -- STRING flag another process sets; the owner polls it.
- ``vss:joblock:<project>:<kind>`` -- STRING, the id of the one running job of an
  exclusive kind; set with NX and a TTL of ``STALE_S`` that heartbeats renew.

A record whose heartbeat is older than ``STALE_S`` belongs to a process that
died: it reads as ``interrupted``, with its meta kept so it can be resumed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any, Mapping

import redis

from vss_core.redis.schema import job_cancel_key as cancel_key
from vss_core.redis.schema import job_key
from vss_core.redis.schema import job_list_key as list_key
from vss_core.redis.schema import job_lock_key as lock_key

__all__ = ["JobBoard", "OWNER", "STALE_S", "ACTIVE_TTL_S", "FINISHED_TTL_S", "job_key", "list_key",
           "cancel_key", "lock_key"]

log = logging.getLogger(__name__)

OWNER = f"{socket.gethostname()}:{os.getpid()}"
STALE_S = 10.0
ACTIVE_TTL_S = 24 * 3600
FINISHED_TTL_S = 500
KEEP = 500

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"






def _serializable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _meta(meta: Mapping) -> dict:
    return {str(k): v if _serializable(v) else str(v) for k, v in meta.items()}


class JobBoard:
    """One project's jobs in its Redis.  Every method is a few round trips; none raises on a
    Redis error except :meth:`acquire` (a start must not go ahead unchecked)."""

    def __init__(self, client: redis.Redis, project: str):
        self.client = client
        self.project = project

    # -- the owner's side ----------------------------------------------------
    def publish(self, record: dict, finished: bool) -> None:
        """Write a job's record (``record['id']``); list it under the project."""
        body = dict(record, meta=_meta(record.get("meta") or {}), result=record.get("result") if _serializable(record.get("result")) else None,
                    owner=OWNER, heartbeat=time.time())
        ttl = FINISHED_TTL_S if finished else ACTIVE_TTL_S
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(job_key(body["id"]), json.dumps(body), ex=ttl)
            pipe.zadd(list_key(self.project), {body["id"]: body.get("created_at") or time.time()})
            pipe.zremrangebyrank(list_key(self.project), 0, -KEEP - 1)
            if finished:
                pipe.delete(cancel_key(body["id"]))
            pipe.execute()
        except redis.RedisError as e:
            log.warning("could not publish job %s of %s: %s", body["id"], self.project, e)

    def acquire(self, kind: str, job_id: str) -> str | None:
        """Take the (project, kind) lock for ``job_id``; None on success, else the holder's id."""
        key = lock_key(self.project, kind)
        if self.client.set(key, job_id, nx=True, px=int(STALE_S * 1000)):
            return None
        holder = self.client.get(key)
        return holder.decode() if isinstance(holder, bytes) else (holder or "?")

    def renew(self, kind: str, job_id: str) -> None:
        try:
            key = lock_key(self.project, kind)
            if self._text(self.client.get(key)) == job_id:
                self.client.pexpire(key, int(STALE_S * 1000))
        except redis.RedisError as e:
            log.warning("could not renew the %s lock of %s: %s", kind, self.project, e)

    def release(self, kind: str, job_id: str) -> None:
        try:
            self.client.eval(_RELEASE, 1, lock_key(self.project, kind), job_id)
        except redis.RedisError as e:
            log.warning("could not release the %s lock of %s: %s", kind, self.project, e)

    def cancel_requested(self, job_id: str) -> bool:
        try:
            return bool(self.client.exists(cancel_key(job_id)))
        except redis.RedisError:
            return False

    # -- everyone's side -----------------------------------------------------
    def request_cancel(self, job_id: str) -> bool:
        """Ask the owner of a running job to stop; True when the job was running."""
        record = self.record(job_id)
        if record is None or record["state"] not in ("queued", "running") or self.stale(record):
            return False
        self.client.set(cancel_key(job_id), "1", ex=ACTIVE_TTL_S)
        return True

    def record(self, job_id: str) -> dict | None:
        try:
            raw = self.client.get(job_key(job_id))
        except redis.RedisError as e:
            log.warning("could not read job %s of %s: %s", job_id, self.project, e)
            return None
        return json.loads(raw) if raw else None

    def records(self, limit: int = 50) -> list[dict]:
        """The project's job records, newest first; ids whose record expired are dropped."""
        try:
            ids = [self._text(i) for i in self.client.zrevrange(list_key(self.project), 0, limit - 1)]
            raws = self.client.mget([job_key(i) for i in ids]) if ids else []
        except redis.RedisError as e:
            log.warning("could not list the jobs of %s: %s", self.project, e)
            return []
        gone = [i for i, raw in zip(ids, raws) if raw is None]
        if gone:
            try:
                self.client.zrem(list_key(self.project), *gone)
            except redis.RedisError:
                pass
        return [json.loads(raw) for raw in raws if raw is not None]

    @staticmethod
    def stale(record: Mapping, now: float | None = None) -> bool:
        """True when a running job's owner has not been heard from for ``STALE_S``."""
        return (record.get("state") in ("queued", "running")
                and (now or time.time()) - float(record.get("heartbeat") or 0) > STALE_S)

    @staticmethod
    def _text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)
