"""Jobs that every process sees: the job board in the project's Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.test_jobs import wait_for
from vss_core.errors import JobError
from vss_core.jobs import board as jobboard
from vss_core.jobs.registry import CANCELLED, DONE, INTERRUPTED, RUNNING, JobRegistry


@pytest.fixture
def two_processes(redis_client):
    """Two registries over one Redis, as the app and the REST server are."""
    a = JobRegistry(boards=lambda project: redis_client, heartbeat_s=0.05)
    b = JobRegistry(boards=lambda project: redis_client, heartbeat_s=0.05)
    return a, b


def slow(stop: threading.Event):
    def work(progress):
        progress.set_total(100)
        while not progress.cancelled and not stop.wait(0.01):
            progress.advance(1)
        return {"loaded": 3}
    return work


def test_a_job_of_one_process_shows_in_the_other_and_can_be_cancelled_from_it(two_processes):
    a, b = two_processes
    stop = threading.Event()
    job_id = a.start("load", slow(stop), project="p1", label="folder fish", added_by="ann")
    assert wait_for(lambda: any(s.id == job_id and s.state == RUNNING and s.done > 0
                                for s in b.jobs("p1", kind="load")))
    seen = b.get(job_id, project="p1")
    assert seen.owner == jobboard.OWNER and seen.meta["label"] == "folder fish" and seen.total == 100
    assert b.cancel(job_id, project="p1") is True
    assert a.wait(job_id, 5).state == CANCELLED
    assert wait_for(lambda: b.get(job_id, project="p1").state == CANCELLED)


def test_second_exclusive_job_is_refused_across_processes_naming_the_running_one(two_processes):
    a, b = two_processes
    stop = threading.Event()
    job_id = a.start("load", slow(stop), project="p1", label="folder fish")
    with pytest.raises(JobError, match=f"job {job_id}.*folder fish"):
        b.start("load", slow(stop), project="p1")
    with pytest.raises(JobError, match=f"job {job_id}"):
        a.start("load", slow(stop), project="p1")
    other = b.start("load", slow(stop), project="p2")  # another project is free
    stop.set()
    a.wait(job_id, 5), b.wait(other, 5)
    again = b.start("load", lambda p: "ok", project="p1")  # free once the first ended
    assert b.wait(again, 5).state == DONE


def test_per_request_jobs_run_side_by_side(two_processes):
    a, _ = two_processes
    gate = threading.Event()
    ids = [a.start("knn", lambda p: gate.wait(5) and {"n": 1}, project="p1") for _ in range(4)]
    assert wait_for(lambda: len(a.jobs("p1", kind="knn", active=True)) == 4)
    gate.set()
    assert all(a.wait(i, 5).state == DONE for i in ids)


def test_a_finished_result_is_readable_elsewhere_and_expires(two_processes, redis_client):
    a, b = two_processes
    job_id = a.start("knn", lambda p: {"filenames": ["x.png"]}, project="p1")
    assert a.wait(job_id, 5).state == DONE  # the final record is on the board before wait() returns
    seen = b.get(job_id, project="p1")
    assert (seen.state, seen.result) == (DONE, {"filenames": ["x.png"]})
    assert 0 < redis_client.ttl(jobboard.job_key(job_id)) <= jobboard.FINISHED_TTL_S


def test_a_job_whose_process_died_reads_interrupted_with_its_meta(embedded_redis, redis_client, monkeypatch):
    # a project of its own: a late write of an earlier test's job thread (after the flush) cannot show here
    script = textwrap.dedent(f"""
        import time, redis
        from vss_core.jobs.registry import JobRegistry
        client = redis.Redis(unix_socket_path={str(embedded_redis.socket_path)!r})
        reg = JobRegistry(boards=lambda p: client, heartbeat_s=0.05)
        reg.start("load", lambda p: time.sleep(60), project="died", source="folder", path="/data/fish")
        print("started", flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "started"
        reader = JobRegistry(boards=lambda project: redis_client)
        assert wait_for(lambda: [s.state for s in reader.jobs("died")] == [RUNNING], timeout=15)
    finally:
        owner.kill()
        owner.wait(10)
    monkeypatch.setattr(jobboard, "STALE_S", 0.3)
    assert wait_for(lambda: reader.jobs("died")[0].state == INTERRUPTED)
    snap = reader.jobs("died")[0]
    assert snap.meta["path"] == "/data/fish" and snap.finished and not snap.active
    assert str(owner.pid) in snap.message


def test_the_exemplars_page_offers_resume_for_a_load_whose_process_died(app_env, monkeypatch):
    """A load published by another process that went quiet reads 'interrupted'; Resume reruns it here."""
    from tests.test_app import EXEMPLARS, open_app, run_until
    from vss_core.config.projects import load_projects
    from vss_core.jobs.board import JobBoard
    from vss_core.redis.exemplars import connect_store
    from vss_core.redis.server import connect

    project = load_projects(app_env.config).get("gamma")
    client = connect(project)
    connect_store(project).client.flushall()
    meta = {"source": "folder", "path": str(app_env.exemplars), "label": "folder exemplars", "added_by": "ann"}
    board = JobBoard(client, "gamma")
    board.publish({"id": "deadbeef0001", "kind": "load", "project": "gamma", "state": "running",
                   "done": 5, "total": 18, "created_at": time.time(), "meta": meta}, finished=False)
    monkeypatch.setattr(jobboard, "STALE_S", 0.2)
    assert wait_for(lambda: JobBoard.stale(board.record("deadbeef0001")))  # its heartbeat is STALE_S old
    at = open_app("gamma", annotator="tester", page=EXEMPLARS)
    lines = [m.value for m in at.markdown if "**Load**" in m.value]
    assert lines and "folder exemplars by ann — interrupted" in lines[0]
    at.button(key="resume_deadbeef0001").click().run()
    run_until(at, lambda a: any("**Load**" in m.value and "by tester — done" in m.value for m in a.markdown))
    assert {m.label: m.value for m in at.metric}["Exemplars"] == "18"
