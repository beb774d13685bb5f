"""The REST API's faults, in process: a bad config (the server starts and says what is wrong), first
requests racing to open a project (the model loads once), hostile clients (a wrong token, an
oversized upload, a huge ``top_n``) and the finished-job TTL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

import api
from tests.fixtures_models import encode, label_image
from tests.test_api import BATCH_SIZE, PROJECT, ROOT, TOKEN, post, query_files


@pytest.fixture
def served(tmp_path, monkeypatch, tiny_vit_dir):
    """An app whose endpoints get a service over a one-project config (nothing connects until a job
    starts) through ``dependency_overrides``, without running the lifespan."""
    from vss_core.rest.service import Service

    config = tmp_path / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(f"vss:\n  project: {PROJECT}\n  model: {tiny_vit_dir}\n  device: cpu\n")
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BATCH_SIZE", str(BATCH_SIZE))
    service = Service(config)
    app = api.create_app()
    app.dependency_overrides[api.get_service] = lambda: service
    return SimpleNamespace(app=app, service=service)


# -- a bad config: the server starts and says what is wrong --------------------------------------------------

def test_a_bad_config_is_not_an_import_traceback(tmp_path):
    env = {**os.environ, "BATCH_SIZE": "abc", "VSS_RESULT_TTL_S": "soon", "CONFIG_PATH": str(tmp_path),
           "VSS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", "import api"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_health_and_projects_name_the_bad_config_the_server_started_with(tmp_path, monkeypatch, tiny_vit_dir):
    config = tmp_path / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(f"vss:\n  project: {PROJECT}\n  model: {tiny_vit_dir}\n  device: cpu\n")
    (config / "broken.yaml").write_text("vss:\n  project: [unclosed\n")
    monkeypatch.setenv("CONFIG_PATH", str(config))
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VSS_RESULT_TTL_S", "soon")
    with TestClient(api.create_app()) as partly:
        health, listed = partly.get("/health").json(), partly.get("/projects").json()
    assert health["status"] == "ok" and listed["projects"] == [PROJECT]
    assert health["config_errors"] == listed["config_errors"]
    broken, ttl = listed["config_errors"]
    assert str(config / "broken.yaml") in broken and "not valid YAML" in broken
    assert ttl == "key 'VSS_RESULT_TTL_S': must be a number of seconds, got 'soon'; using 500"

    monkeypatch.setenv("BATCH_SIZE", "abc")
    monkeypatch.delenv("VSS_RESULT_TTL_S")
    with TestClient(api.create_app()) as unusable:
        bad_size = ["key 'BATCH_SIZE': must be a positive integer, got 'abc'"]
        assert unusable.get("/health").json() == {"status": "ok", "version": api.__version__,
                                                  "config_errors": bad_size}
        assert unusable.get("/projects").json() == {"projects": [], "config_errors": bad_size}
        assert post(unusable, f"/knn/1/{PROJECT}", query_files()[:1]).json() == {
            "error": f"Invalid project name {PROJECT}"}


# -- the service: one model load however many first requests race ------------------------------------------

def test_concurrent_first_requests_load_the_model_once(served, monkeypatch):
    from vss_core.embed import embedder
    from vss_core.redis.server import embedded_server

    service = served.service
    real, loads, raced = embedder.for_project, [], threading.Event()

    def counting(project, *args, **kwargs):
        loads.append(project.name)
        if len(loads) > 1:
            raced.set()
        else:  # hold the first load until a second begins, or 1 s: without the lock one always does
            raced.wait(1)
        return real(project, *args, **kwargs)

    monkeypatch.setattr(embedder, "for_project", counting)
    start = threading.Barrier(8)

    def first_request(_):
        start.wait(10)
        return service.engine(PROJECT)

    try:
        with ThreadPoolExecutor(8) as pool:
            engines = list(pool.map(first_request, range(8)))
    finally:
        service.close()
        embedded_server(service.projects[PROJECT].data_dir).stop()
    assert loads == [PROJECT]
    assert all(e is engines[0] for e in engines)


# -- hostile clients, in process (FastAPI's TestClient, or the ASGI app driven chunk by chunk) -------------

def drive(app, path: str, headers: dict, chunks) -> tuple[int, dict, int]:
    """POST ``chunks`` to the ASGI ``app`` one receive() at a time: (status, JSON body, chunks it read)."""
    import asyncio

    source, read, sent = iter(chunks), 0, []

    async def receive():
        nonlocal read
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    status_code = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status_code, json.loads(body), read


def multipart_chunks(file_bytes: int, chunk: int = 64 * 1024, name: str = "big.jpg"):
    """A multipart body with one ``files`` part of ``file_bytes`` bytes, in ``chunk``-sized pieces."""
    yield (f"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
           "Content-Type: image/jpeg\r\n\r\n").encode()
    for start in range(0, file_bytes, chunk):
        yield b"\xff" * min(chunk, file_bytes - start)
    yield b"\r\n--xyz--\r\n"


MULTIPART = {"Content-Type": "multipart/form-data; boundary=xyz"}


def test_a_wrong_token_is_refused_before_a_byte_of_the_body_is_read(served, monkeypatch):
    monkeypatch.setenv("VSS_API_TOKEN", TOKEN)
    for path in (f"/knn/3/{PROJECT}", f"/embed/{PROJECT}"):
        for auth in ({}, {"Authorization": "Bearer nope"}):
            status_code, body, read = drive(served.app, path, {**MULTIPART, **auth},
                                            multipart_chunks(64 * 1024**2))
            assert (status_code, read) == (401, 0), (path, auth, body)
            assert body == {"detail": "Missing or wrong bearer token."}


def test_an_upload_over_the_file_cap_is_refused_as_it_streams(served, monkeypatch):
    monkeypatch.setattr(api, "MAX_UPLOAD_BYTES", 1024**2)
    total_chunks = len(list(multipart_chunks(64 * 1024**2)))
    for path in (f"/knn/3/{PROJECT}", f"/embed/{PROJECT}"):
        status_code, body, read = drive(served.app, path, MULTIPART, multipart_chunks(64 * 1024**2))
        assert status_code == 413 and body == {"error": "big.jpg: over the cap of 1,048,576 bytes per file"}
        assert read <= 1024**2 // (64 * 1024) + 2 < total_chunks  # stopped at the cap, not at the end
    from vss_core.files.images import MAX_FILE_BYTES
    from vss_core.rest.service import MAX_UPLOAD_BYTES

    assert MAX_UPLOAD_BYTES == MAX_FILE_BYTES  # the cap every image file is read with


def test_top_n_is_capped_with_a_clear_4xx_error(served):
    from vss_core.rest.service import MAX_TOP_N, top_n_error

    client = TestClient(served.app)
    one = [("files", ("a.jpg", encode(label_image("circles", seed=1)), "image/jpeg"))]
    response = client.post(f"/knn/{MAX_TOP_N + 1}/{PROJECT}", files=one)
    assert response.status_code == 400
    assert response.json() == {"error": f"top_n {MAX_TOP_N + 1:,} is more than {MAX_TOP_N:,}, "
                                        "the most neighbours a request may ask for"}
    assert client.post(f"/knn/1000000/{PROJECT}", files=one).status_code == 400
    assert top_n_error(MAX_TOP_N) is None and top_n_error(0) is not None
    assert client.post(f"/knn/3/{PROJECT}").status_code == 422  # no files: malformed, as before


def test_finished_jobs_are_forgotten_after_their_ttl_not_after_a_count(served, monkeypatch):
    from vss_core.jobs import registry as jobs

    registry = served.service.registry
    ids = [registry.start("knn", lambda p: {"ok": True}) for _ in range(2100)]
    for job_id in ids:
        registry.wait(job_id, 10)
    registry.start("knn", lambda p: None)
    assert all(registry.get(job_id) is not None for job_id in ids)  # 2,100 finished, none dropped by count
    later = jobs.time.time() + served.service.result_ttl_s + 1
    monkeypatch.setattr(jobs.time, "time", lambda: later)
    registry.jobs()
    assert all(registry.get(job_id) is None for job_id in ids)
