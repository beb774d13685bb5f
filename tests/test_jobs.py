import dataclasses
import threading
import time

import pytest

from vss_core.errors import ImageError, JobError
from vss_core.jobs.registry import CANCELLED, DONE, FAILED, RUNNING, JobRegistry, JobSnapshot


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


def test_progress_and_result():
    reg = JobRegistry()
    gate = threading.Event()

    def work(p):
        p.set_total(10)
        p.message("loading")
        for i in range(10):
            if i == 5:
                gate.wait(5)
            p.advance(1, errors=[(f"img{i}.png", "not an image")] if i == 3 else ())
            time.sleep(0.002)
        return {"loaded": 9}

    jid = reg.start("load", work, project="p1", source="folder")
    assert wait_for(lambda: reg.snapshot(jid).done == 5)
    mid = reg.snapshot(jid)
    assert mid.state == RUNNING and mid.total == 10 and mid.message == "loading"
    assert mid.fraction == 0.5
    assert mid.rate and mid.rate > 0
    assert mid.eta_s is not None and mid.eta_s >= 0
    assert mid.errors == (("img3.png", "not an image"),)
    assert mid.kind == "load" and mid.project == "p1" and mid.meta["source"] == "folder"
    assert mid.started_at and mid.finished_at is None and mid.active
    gate.set()
    snap = reg.wait(jid, 5)
    assert snap.state == DONE and snap.done == 10 and snap.result == {"loaded": 9}
    assert snap.finished_at >= snap.started_at and snap.eta_s == 0.0 and snap.fraction == 1.0
    assert snap.rate == pytest.approx(10 / (snap.finished_at - snap.started_at))
    assert not snap.active and snap.finished


def test_absolute_progress_callback():
    reg = JobRegistry()

    def work(p):
        for d in (2, 5, 7):
            p(d, 7)

    snap = reg.wait(reg.start("x", work), 5)
    assert snap.done == 7 and snap.total == 7 and snap.state == DONE


def test_cancel_raises_in_check():
    reg = JobRegistry()
    started = threading.Event()
    seen = []

    def work(p):
        p.set_total(1000)
        for i in range(1000):
            p.check()
            p.advance()
            seen.append(i)
            if i == 9:
                started.set()
                p.cancel_event.wait(5)

    jid = reg.start("load", work)
    assert started.wait(5)
    assert reg.cancel(jid) is True
    snap = reg.wait(jid, 5)
    assert snap.state == CANCELLED
    assert seen == list(range(10))  # the next check() after the cancel stopped it
    assert reg.cancel(jid) is False  # already finished


def test_cancel_cooperative_return_keeps_result():
    reg = JobRegistry()
    started = threading.Event()
    seen = []

    def work(p):
        started.set()
        p.cancel_event.wait(5)
        p.advance(1)  # reporting after a cancel does not raise
        seen.append(p.cancelled)
        return "partial"

    jid = reg.start("load", work)
    assert started.wait(5)
    reg.cancel(jid)
    snap = reg.wait(jid, 5)
    assert snap.state == CANCELLED and snap.result == "partial"
    assert seen == [True]


def test_failure_messages():
    reg = JobRegistry()

    def vss_fail(p):
        raise ImageError("a.png", "truncated file")

    def bug(p):
        raise KeyError("boom")

    s1 = reg.wait(reg.start("load", vss_fail), 5)
    assert s1.state == FAILED and s1.message == "a.png: truncated file"
    s2 = reg.wait(reg.start("load", bug), 5)
    assert s2.state == FAILED and s2.message.startswith("KeyError")


def test_snapshot_is_immutable_and_stable():
    reg = JobRegistry()
    step = threading.Event()

    def work(p):
        p.set_total(2)
        p.advance(1, errors=[("a", "bad")])
        step.wait(5)
        p.advance(1, errors=[("b", "bad")])

    jid = reg.start("load", work)
    assert wait_for(lambda: reg.snapshot(jid).done == 1)
    snap = reg.snapshot(jid)
    assert isinstance(snap, JobSnapshot)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.done = 5
    with pytest.raises(TypeError):
        snap.meta["x"] = 1
    assert isinstance(snap.errors, tuple)
    step.set()
    reg.wait(jid, 5)
    # the old snapshot did not move
    assert snap.done == 1 and snap.errors == (("a", "bad"),)
    assert reg.snapshot(jid).errors == (("a", "bad"), ("b", "bad"))


def test_jobs_newest_first_and_filters():
    reg = JobRegistry()
    hold = threading.Event()
    a = reg.start("load", lambda p: hold.wait(5), project="p1")
    b = reg.start("load", lambda p: None, project="p2")
    c = reg.start("delete", lambda p: hold.wait(5), project="p1")
    reg.wait(b, 5)
    assert [s.id for s in reg.jobs()] == [c, b, a]
    assert [s.id for s in reg.jobs(project="p1")] == [c, a]
    assert [s.id for s in reg.jobs(project="p1", kind="load")] == [a]
    assert [s.id for s in reg.jobs(active=True)] == [c, a]
    hold.set()
    reg.wait(a, 5), reg.wait(c, 5)
    assert reg.jobs(active=True) == []


def test_unknown_job():
    reg = JobRegistry()
    with pytest.raises(JobError):
        reg.snapshot("nope")
    with pytest.raises(JobError):
        reg.cancel("nope")
    assert reg.get("nope") is None and reg.get(None) is None
    with pytest.raises(JobError):
        reg.start("x", "not callable")


def test_prunes_old_finished_jobs():
    reg = JobRegistry(keep_finished=3)
    ids = []
    for _ in range(6):
        ids.append(reg.start("x", lambda p: None))
        reg.wait(ids[-1], 5)
    reg.start("x", lambda p: None)
    assert len(reg.jobs()) <= 4
    assert reg.get(ids[0]) is None


def test_concurrent_readers_see_monotonic_progress():
    reg = JobRegistry()
    n = 3000

    def work(p):
        p.set_total(n)
        for _ in range(n):
            p.advance(1, errors=[("x", "y")])

    jid = reg.start("load", work)
    problems = []

    def reader():
        last = -1
        while True:
            s = reg.snapshot(jid)
            if s.done < last or s.error_count != s.done:
                problems.append((last, s.done, len(s.errors)))
            last = s.done
            if s.finished:
                return
            problems.extend(other for other in reg.jobs() if not other.id)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not [t for t in threads if t.is_alive()]
    assert not problems
    assert reg.snapshot(jid).done == n
