"""vss_core.compat: each workaround is for the library version installed and required, and does its job
(a job on the heartbeating SimpleWorker keeps a short StartedJobRegistry entry alive while it runs)."""

from __future__ import annotations

import re
import signal
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from vss_core.compat import WRITTEN_FOR, HeartbeatingSimpleWorker

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("library", sorted(WRITTEN_FOR))
def test_each_workaround_is_for_the_installed_and_the_required_version(library):
    required = re.search(rf"^{re.escape(library)}==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert required, f"requirements.txt does not pin {library}"
    assert (version(library), required.group(1)) == (WRITTEN_FOR[library], WRITTEN_FOR[library]), (
        f"{library} moved: re-read vss_core/compat.py against the new version, then update WRITTEN_FOR")


def entry_expiries(distinct: int, bound_s: float) -> list[tuple[float, float]]:
    """An RQ job: (expiry, seen at) of its StartedJobRegistry entry while it runs, until ``distinct`` expiries."""
    from rq import get_current_job

    job = get_current_job()
    registry = job.started_job_registry
    seen: list[tuple[float, float]] = []
    end = time.monotonic() + bound_s
    while len({expiry for expiry, _ in seen}) < distinct and time.monotonic() < end:
        entries = registry.connection.zrange(registry.key, 0, -1, withscores=True)
        seen += [(score, time.time()) for member, score in entries if member.decode().startswith(f"{job.id}:")]
        time.sleep(0.05)
    return seen


def test_a_job_on_the_heartbeating_worker_keeps_its_short_registry_entry_alive_while_it_runs(redis_client):
    from rq import Queue

    queue = Queue("compat-heartbeat", connection=redis_client)
    job = queue.enqueue(entry_expiries, 3, 20.0, job_timeout=3600)
    ttl = 2
    worker = HeartbeatingSimpleWorker([queue], connection=redis_client, heartbeat_s=0.2, entry_ttl=ttl,
                                      worker_ttl=ttl + 15, maintenance_interval=ttl)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert worker.work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    seen = job.latest_result().return_value
    assert len({expiry for expiry, _ in seen}) >= 3, "the entry was not renewed while the job ran"
    assert all(at < expiry <= at + ttl for expiry, at in seen), "the entry expired, or lives longer than entry_ttl"
    assert job.get_status(refresh=True) == "finished"
