"""Jobs on RQ workers: real worker processes (``python -m vss_core worker``) on a project's embedded Redis,
the tiny ViT, jobs started and cancelled through JobRegistry like the pages do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_models import LABELS, label_image
from vss_core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
N_IMAGES = 1000
HEARTBEAT_S = "0.5"  # a dead worker's chunk is taken again after ~2 s


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rq_images")
    for i in range(N_IMAGES):
        label = sorted(LABELS)[i % 3]
        (folder / label).mkdir(exist_ok=True)
        label_image(label, seed=50_000 + i, size=(40, 30)).save(folder / label / f"{label}_{i:04d}.jpg", quality=80)
    return folder


@pytest.fixture
def world(tmp_path, tiny_vit_dir, images, monkeypatch):
    """A project with ``jobs.runner: rq`` on its own embedded Redis; a registry with its job board."""
    from vss_core.config.projects import load_projects
    from vss_core.jobs.registry import JobRegistry
    from vss_core.redis.server import connect, embedded_server

    config = tmp_path / "config"
    config.mkdir()
    (config / "r.yaml").write_text(f"vss:\n  project: r\n  model: {tiny_vit_dir}\n  device: cpu\n"
                                   f"  data_roots: [{images}]\njobs:\n  runner: rq\n  chunk_size: 100\n")
    env = {**os.environ, "CONFIG_PATH": str(config), "VSS_DATA_DIR": str(tmp_path / "data"), "BATCH_SIZE": "4",
           "HF_HUB_OFFLINE": "1"}
    for key in ("CONFIG_PATH", "VSS_DATA_DIR", "BATCH_SIZE"):
        monkeypatch.setenv(key, env[key])
    project = load_projects(config).get("r")
    client = connect(project)
    registry = JobRegistry(boards=lambda name: client, heartbeat_s=0.2)
    procs: list[subprocess.Popen] = []

    def start_workers(n: int) -> list[subprocess.Popen]:
        new = [subprocess.Popen([sys.executable, "-m", "vss_core", "worker", "r", "--heartbeat-s", HEARTBEAT_S],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
               for _ in range(n)]
        procs.extend(new)
        return new

    try:
        yield project, client, registry, start_workers
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        embedded_server(project.data_dir).stop()


def _start_load(project, registry, images) -> str:
    from vss_core.jobs import runner
    from vss_core.labeling import loader

    body = runner.job_body(project, "load", dict(source="folder", path=str(images), added_by="ana"),
                           lambda: pytest.fail("the rq runner must not build the thread body"))
    return registry.start("load", body, project=project.name, source="folder", path=str(images), added_by="ana")


def _wait(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _exemplars(client) -> int:
    return len(client.keys("doc:*"))


def _chunk_results(client, job_id: str) -> list[dict]:
    from rq.job import Job

    jobs = Job.fetch_many([f"{job_id}-{n}" for n in range(N_IMAGES // 100)], connection=client)
    return [j.return_value() or {} for j in jobs if j is not None]


def _busy_worker(client, job_id: str) -> tuple[int, str] | None:
    """(pid, chunk id) of a worker that has stored part of its current chunk."""
    from rq import Queue, Worker

    for w in Worker.all(queue=Queue("vss-r", connection=client)):
        chunk = w.get_current_job_id()
        if chunk and int(client.hget(f"vss:rq:{job_id}:progress", f"done:{chunk.rsplit('-', 1)[1]}") or 0) > 0:
            return w.pid, chunk
    return None


def test_thousand_image_load_is_shared_by_two_workers(world, images):
    project, client, registry, start_workers = world
    start_workers(2)
    job_id = _start_load(project, registry, images)
    snap = registry.wait(job_id, timeout=300)
    assert snap.state == "done", snap.message
    assert (snap.result.loaded, snap.result.skipped, snap.result.failed) == (N_IMAGES, 0, [])
    assert (snap.done, snap.total) == (N_IMAGES, N_IMAGES)
    assert _exemplars(client) == N_IMAGES
    workers = {r["worker"] for r in _chunk_results(client, job_id)}
    assert len(workers) == 2, f"chunks were taken by {workers}"
    board = registry.board("r").record(job_id)
    assert board["state"] == "done" and board["done"] == N_IMAGES


def test_worker_killed_mid_chunk_its_chunk_is_taken_again_and_every_image_stored_once(world, images):
    project, client, registry, start_workers = world
    start_workers(2)
    job_id = _start_load(project, registry, images)
    _wait(lambda: registry.get(job_id).done >= 150, 300, "the load to get going")
    victim, chunk = _wait(lambda: _busy_worker(client, job_id), 60, "a worker busy with a chunk")
    os.kill(victim, signal.SIGKILL)
    snap = registry.wait(job_id, timeout=300)
    assert snap.state == "done", snap.message
    assert snap.result.loaded + snap.result.skipped == N_IMAGES and snap.result.failed == []
    assert _exemplars(client) == N_IMAGES
    results = _chunk_results(client, job_id)
    assert len(results) == N_IMAGES // 100
    retaken = results[int(chunk.rsplit("-", 1)[1])]
    assert retaken["worker"].split(":")[-1] != str(victim), "the dead worker's chunk was not taken again"
    assert snap.result.skipped > 0, "the retaken chunk should find the images its dead worker stored"


def test_cancel_from_another_process_stops_both_workers(world, images):
    from rq import Queue, Worker

    from vss_core.jobs.registry import JobRegistry

    project, client, registry, start_workers = world
    start_workers(2)
    job_id = _start_load(project, registry, images)
    _wait(lambda: registry.get(job_id).done >= 100, 300, "the load to get going")
    other_process = JobRegistry(boards=lambda name: client)
    assert other_process.cancel(job_id, project="r") is True
    snap = registry.wait(job_id, timeout=60)
    assert snap.state == "cancelled"
    queue = Queue("vss-r", connection=client)
    _wait(lambda: all(not w.get_current_job_id() for w in Worker.all(queue=queue)), 30, "both workers idle")
    stored = _exemplars(client)
    assert 0 < stored < N_IMAGES and queue.count == 0
    time.sleep(1.0)
    assert _exemplars(client) == stored, "a worker went on loading after the cancel"
    assert other_process.get(job_id, project="r").state == "cancelled"


def test_predict_and_mine_run_on_a_worker(world, images, tiny_vit_dir):
    from vss_core.embed.embedder import Embedder
    from vss_core.jobs import runner
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.loader import collect_folder, load_items

    project, client, registry, start_workers = world
    embedder = Embedder(str(tiny_vit_dir), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(images)[:60], embedder, d.exemplars)
    start_workers(1)
    spec = dict(source="folder", path=str(images / "circles"), top_n=3, threshold=0.8, uploads=[], names=[])
    job_id = registry.start("predict", runner.job_body(project, "predict", spec, lambda: None), project="r")
    snap = registry.wait(job_id, timeout=300)
    assert snap.state == "done", snap.message
    n_circles = len(list((images / "circles").iterdir()))
    assert snap.result.predicted == n_circles == d.pool.info().count
    assert d.pool.counts("job") == {job_id: n_circles}
    mine = registry.start("mine", runner.job_body(project, "mine", dict(what="novelty", scope="", k=3), lambda: None),
                          project="r")
    snap = registry.wait(mine, timeout=120)
    assert snap.state == "done" and snap.result == n_circles, snap.message


@pytest.mark.parametrize("text,key", [("runner: celery", "jobs.runner"), ("chunk_size: 0", "jobs.chunk_size"),
                                      ("chunk_size: many", "jobs.chunk_size")])
def test_bad_jobs_section_names_file_and_key(tmp_path, text, key):
    from vss_core.config.projects import load_project_file

    path = tmp_path / "p.yaml"
    path.write_text(f"vss:\n  project: p\n  model: m\njobs:\n  {text}\n")
    with pytest.raises(ConfigError) as caught:
        load_project_file(path)
    assert key in str(caught.value) and "p.yaml" in str(caught.value)


def test_default_runner_is_a_thread(tmp_path):
    from vss_core.config.projects import load_project_file
    from vss_core.jobs.runner import job_body

    path = tmp_path / "p.yaml"
    path.write_text("vss:\n  project: p\n  model: m\n")
    project = load_project_file(path)
    assert project.jobs == {"runner": "thread", "chunk_size": 1000}
    body = object()
    assert job_body(project, "load", {}, lambda: body) is body


def test_without_a_worker_the_job_says_so_and_cancel_drops_its_queued_chunks(world, images):
    from rq import Queue

    project, client, registry, _ = world
    job_id = _start_load(project, registry, images)
    _wait(lambda: "python -m vss_core worker r" in registry.get(job_id).message, 30, "the waiting message")
    queue = Queue("vss-r", connection=client)
    assert queue.count == N_IMAGES // 100
    registry.cancel(job_id)
    snap = registry.wait(job_id, timeout=30)
    assert snap.state == "cancelled" and snap.done == 0
    assert queue.count == 0 and _exemplars(client) == 0


@pytest.mark.parametrize("name", ["load_chunk", "predict_chunk", "mine_chunk"])
def test_chunks_queued_under_the_old_import_path_still_run(redis_client, name):
    """RQ stores a queued job's function as an import path: jobs queued before vss_core moved into
    packages name vss_core.rq_worker.*; a worker of this release resolves them to the same functions."""
    from rq import Queue
    from rq.job import Job

    from vss_core.jobs import rq_worker

    queue = Queue("vss-shim", connection=redis_client)
    try:
        queued = queue.enqueue(f"vss_core.rq_worker.{name}", "p", "parent", 0, [])
        job = Job.fetch(queued.id, connection=redis_client)  # what a worker reads back
        assert job.func_name == f"vss_core.rq_worker.{name}"
        assert job.func is getattr(rq_worker, name)
        assert queue.enqueue(getattr(rq_worker, name), "p", "parent", 1, []).func_name == f"vss_core.jobs.rq_worker.{name}"
    finally:
        queue.empty()
