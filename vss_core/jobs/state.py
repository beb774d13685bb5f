"""Job states: the immutable :class:`JobSnapshot` everyone reads, and :class:`LiveJob`, the mutable
state a registry keeps of the jobs it runs.

Shared by :mod:`vss_core.jobs.registry` (which makes snapshots of its own jobs) and the job board
(:mod:`vss_core.jobs.board`, snapshots of other processes' jobs, as records in Redis).

Per-item errors: a job keeps the first ``ERROR_SAMPLE`` of them and their exact count; the full list
is appended to ``errors_file`` (JSON lines ``[item, reason]``) as they come, so a record stays small
(a load of 100,000 missing files is a few KB on the board, not megabytes rewritten every heartbeat).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from vss_core.jobs.board import JobBoard

__all__ = ["QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "INTERRUPTED", "ACTIVE_STATES",
           "FINAL_STATES", "EXCLUSIVE_KINDS", "ERROR_SAMPLE", "JobSnapshot", "LiveJob", "to_record", "snapshot_of",
           "remove_old_errors"]

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
INTERRUPTED = "interrupted"  # its owning process stopped sending heartbeats
ACTIVE_STATES = frozenset({QUEUED, RUNNING})
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED, INTERRUPTED})
EXCLUSIVE_KINDS = frozenset({"load", "predict", "mine"})
ERROR_SAMPLE = 100
"""Per-item errors a job's snapshot and record carry; the rest are counted and in its errors file."""
ERRORS_KEEP_S = 7 * 24 * 3600
"""Errors files older than this are removed."""


@dataclass(frozen=True)
class JobSnapshot:
    """What a job looked like at one moment; never changes after it is made."""

    id: str
    kind: str
    project: str | None
    state: str
    done: int
    total: int | None
    rate: float | None          # items per second over the recent window
    eta_s: float | None         # seconds left at that rate, when the total is known
    errors: tuple[tuple[str, str], ...]
    message: str
    started_at: float | None    # epoch seconds
    finished_at: float | None
    result: Any = None
    created_at: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    owner: str = ""             # "host:pid" of the process running it, for jobs of other processes
    error_count: int = -1       # every per-item error (``errors`` is the first ERROR_SAMPLE); -1: len(errors)
    errors_file: str = ""       # all of them, one JSON list [item, reason] a line ("" when there were none)

    def __post_init__(self):
        if self.error_count < 0:
            object.__setattr__(self, "error_count", len(self.errors))

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def eta(self) -> float | None:
        return self.eta_s

    @property
    def fraction(self) -> float | None:
        """done / total clipped to [0, 1]; None while the total is unknown."""
        if not self.total:
            return 1.0 if self.state == DONE else None
        return max(0.0, min(1.0, self.done / self.total))

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at




def to_record(snap: JobSnapshot) -> dict:
    """A snapshot as a JSON-able record for the job board."""
    return {"id": snap.id, "kind": snap.kind, "project": snap.project, "state": snap.state,
            "done": snap.done, "total": snap.total, "rate": snap.rate, "eta_s": snap.eta_s,
            "errors": [list(e) for e in snap.errors], "message": snap.message,
            "started_at": snap.started_at, "finished_at": snap.finished_at, "result": snap.result,
            "created_at": snap.created_at, "meta": dict(snap.meta), "error_count": snap.error_count,
            "errors_file": snap.errors_file}


def snapshot_of(record: Mapping) -> JobSnapshot:
    """A job of another process, from its board record; ``interrupted`` once its owner went quiet."""
    from vss_core.jobs.board import JobBoard

    state = INTERRUPTED if JobBoard.stale(record) else record["state"]
    message = record.get("message") or ""
    if state == INTERRUPTED:
        message = f"Interrupted: its process ({record.get('owner', '?')}) stopped."
    return JobSnapshot(
        id=record["id"], kind=record["kind"], project=record.get("project"), state=state,
        done=int(record.get("done") or 0), total=record.get("total"), rate=record.get("rate"),
        eta_s=record.get("eta_s") if state in ACTIVE_STATES else None,
        errors=tuple(tuple(e) for e in record.get("errors") or ()), message=message,
        started_at=record.get("started_at"), finished_at=record.get("finished_at"),
        result=record.get("result"), created_at=float(record.get("created_at") or 0.0),
        meta=MappingProxyType(dict(record.get("meta") or {})), owner=record.get("owner", ""),
        error_count=int(record.get("error_count", -1)), errors_file=record.get("errors_file") or "")


class LiveJob:
    """A job's mutable state in the process that runs it; only touched under its registry's lock."""

    def __init__(self, job_id: str, kind: str, project: str | None, meta: dict):
        self.id = job_id
        self.kind = kind
        self.project = project
        self.meta = MappingProxyType(dict(meta))
        self.state = QUEUED
        self.done = 0
        self.total: int | None = None
        self.errors: tuple[tuple[str, str], ...] = ()
        self.error_count = 0
        self.errors_path: Path | None = None  # where the full list goes (set by the registry)
        self.errors_file = ""                  # set once the file holds an error
        self._error_log = None
        self._error_lock = threading.Lock()
        self.message = ""
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: Any = None
        self.cancel_event = threading.Event()
        self.samples: deque[tuple[float, int]] = deque()
        self.thread: threading.Thread | None = None
        self.board: JobBoard | None = None
        self.publish_lock = threading.Lock()

    def count_errors(self, new: tuple[tuple[str, str], ...]) -> None:
        """Count ``new`` errors and keep them while the sample has room (under the registry's lock)."""
        self.error_count += len(new)
        room = ERROR_SAMPLE - len(self.errors)
        if room > 0:
            self.errors = self.errors + new[:room]

    def log_errors(self, new: tuple[tuple[str, str], ...]) -> None:
        """Append ``new`` errors to the job's errors file (outside the registry's lock)."""
        if not new or self.errors_path is None:
            return
        with self._error_lock:
            try:
                if self._error_log is None:
                    self.errors_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    self._error_log = open(self.errors_path, "a", encoding="utf-8")
                    self.errors_file = str(self.errors_path)
                self._error_log.write("".join(json.dumps(list(e), ensure_ascii=False) + "\n" for e in new))
                self._error_log.flush()
            except OSError as exc:
                log.warning("job %s: cannot write its errors to %s: %s", self.id, self.errors_path, exc)

    def close_errors(self) -> None:
        with self._error_lock:
            if self._error_log is not None:
                self._error_log.close()
                self._error_log = None

    def rate(self, now: float) -> float | None:
        """Items per second: over the recent window while running, overall once finished."""
        if self.started_at is None:
            return None
        if self.finished_at is not None:
            elapsed = self.finished_at - self.started_at  # both wall-clock
            return self.done / elapsed if elapsed > 1e-4 and self.done else None
        if len(self.samples) >= 2:
            t0, d0 = self.samples[0]  # monotonic, like ``now``
            if now - t0 > 1e-4:
                return (self.done - d0) / (now - t0)
        return None

    def snapshot(self) -> JobSnapshot:
        now = time.monotonic()
        rate = self.rate(now)
        eta = None
        if self.state in ACTIVE_STATES and self.total is not None and rate and rate > 0:
            eta = max(0.0, (self.total - self.done) / rate)
        elif self.state == DONE:
            eta = 0.0
        return JobSnapshot(
            id=self.id, kind=self.kind, project=self.project, state=self.state,
            done=self.done, total=self.total, rate=rate, eta_s=eta, errors=self.errors,
            message=self.message, started_at=self.started_at, finished_at=self.finished_at,
            result=self.result, created_at=self.created_at, meta=self.meta,
            error_count=self.error_count, errors_file=self.errors_file,
        )


def remove_old_errors(folder: Path) -> None:
    """Remove the errors files in ``folder`` older than ``ERRORS_KEEP_S``."""
    cutoff = time.time() - ERRORS_KEEP_S
    try:
        for path in folder.glob("*.jsonl"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot clean old job error files in %s: %s", folder, exc)
