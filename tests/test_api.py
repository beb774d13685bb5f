"""The fastapi-vss REST API (api.py), tested through a real uvicorn server process.

The server runs on a free loopback port over the embedded Redis in a tmp
VSS_DATA_DIR, with the tiny ViT saved to disk and a CONFIG_PATH of one project.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.fixtures_app import free_port
from tests.fixtures_models import LABELS, encode, label_image

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "testproject"
BATCH_SIZE = 4
TOKEN = "t0ken-for-tests"
ORIGIN = "http://lab.example"


@contextmanager
def api_server(env: dict):
    """``uvicorn api:app`` on a free loopback port with ``env``; yields its base URL."""
    port = free_port()
    log = open(Path(env["VSS_DATA_DIR"]) / f"uvicorn-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api:app", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"API server did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def api_setup(tmp_path_factory, tiny_vit_dir, image_folder):
    from vss_core.config import load_projects
    from vss_core.embedder import Embedder
    from vss_core.loader import collect_folder, load_items
    from vss_core.redis_server import embedded_server
    from vss_core.store import open_store

    base = tmp_path_factory.mktemp("api")
    config = base / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(
        f"vss:\n  project: {PROJECT}\n  model: {tiny_vit_dir}\n  device: cpu\n  output_path: results\n")
    env = {"CONFIG_PATH": str(config), "VSS_DATA_DIR": str(base / "data"), "BATCH_SIZE": str(BATCH_SIZE)}
    (base / "data").mkdir()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        project = load_projects().get(PROJECT)
        embedder = Embedder(str(tiny_vit_dir), device="cpu")
        store = open_store(project, embedder.dim)
        store.client.flushall()
        load_items(collect_folder(image_folder), embedder, store, added_by="fixture")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    yield base, env, project
    embedded_server(base / "data" / PROJECT).stop()


@pytest.fixture(scope="module")
def api(api_setup):
    _, env, _ = api_setup
    with api_server({**env, "FASTAPI_VSS_CORS_ORIGINS": f"{ORIGIN}, http://other.example"}) as url:
        yield url


def query_files(n_per_label: int = 1, seed: int = 4000) -> list[tuple[str, bytes, str]]:
    """New images (not exemplars) of each label: (filename, bytes, expected label)."""
    out = []
    for k, label in enumerate(sorted(LABELS)):
        for i in range(n_per_label):
            out.append((f"{label}_q{seed + i}.jpg", encode(label_image(label, seed=seed + 10 * k + i)), label))
    return out


def post(url: str, path: str, files, **kwargs) -> requests.Response:
    multipart = [("files", (name, io.BytesIO(data), "image/jpeg")) for name, data, *_ in files]
    return requests.post(f"{url}{path}", files=multipart, timeout=30, **kwargs)


def poll(url: str, job_id: str, project: str = PROJECT, every: float = 0.1, limit: float = 60) -> dict:
    """fastapi-vss's documented client loop: GET the job until it is no longer pending."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/predict/job/{job_id}/{project}", timeout=10).json()
        if body.get("status") != "pending":
            return body
        time.sleep(every)
    raise AssertionError(f"job {job_id} still pending after {limit} s")


def aipipeline_labels(result: dict, threshold: float) -> list[str | None]:
    """aipipeline's vote: per image, the most common prediction among those with distance < threshold."""
    from collections import Counter

    labels = []
    for predictions, scores in zip(result["predictions"], result["scores"]):
        kept = [p for p, s in zip(predictions, scores) if s < threshold]
        labels.append(Counter(kept).most_common(1)[0][0] if kept else None)
    return labels


def test_fastapi_vss_client_flow_end_to_end(api, api_setup):
    files = query_files()
    started = post(api, f"/knn/3/{PROJECT}", files)
    assert started.status_code == 200
    job_id = started.json()["job_id"]
    assert started.json()["Comment"] == f"Use /predict/job/{job_id}/{PROJECT} to check status."
    body = poll(api, job_id)
    assert body["status"] == "done" and body["results"] == body["result"]
    result = body["result"]
    assert result["filenames"] == [f[0] for f in files]
    assert [p[0] for p in result["predictions"]] == [f[2] for f in files]
    for scores, ids in zip(result["scores"], result["ids"]):
        assert len(scores) == len(ids) == 3 and scores == sorted(scores)  # distances: best first
        assert all(0 <= s < 0.5 for s in scores)
    assert aipipeline_labels(result, threshold=0.2) == [f[2] for f in files]
    base, _, _ = api_setup
    written = Path(result["output_path"])
    assert written.parent.parent == base / "config" / "results"  # relative output_path: next to the config
    assert json.loads(written.read_text())["predictions"] == result["predictions"]


def test_a_non_image_fails_alone(api):
    files = query_files()[:2]
    files.insert(1, ("notes.txt", b"not an image at all", ""))
    body = poll(api, post(api, f"/knn/2/{PROJECT}", files).json()["job_id"])
    assert body["status"] == "done"
    result = body["result"]
    assert result["filenames"] == [files[0][0], files[2][0]]
    assert [p[0] for p in result["predictions"]] == [files[0][2], files[2][2]]
    assert "notes.txt" in result["errors"] and "not an image" in result["errors"]["notes.txt"]


def test_websocket_streams_pending_then_the_result(api):
    from websockets.sync.client import connect

    job_id = post(api, f"/knn/2/{PROJECT}", query_files()).json()["job_id"]
    messages = []
    with connect(f"ws{api[4:]}/ws/predict/job/{job_id}/{PROJECT}", open_timeout=10) as ws:
        while True:
            messages.append(json.loads(ws.recv(timeout=30)))
            if messages[-1]["status"] != "pending":
                break
    assert all(m == {"status": "pending"} for m in messages[:-1])
    assert messages[-1]["status"] == "done" and len(messages[-1]["result"]["predictions"]) == 3
    with connect(f"ws{api[4:]}/ws/predict/job/nope/{PROJECT}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {
            "status": "error", "message": f"Job ID nope does not exist in project {PROJECT}"}
    with connect(f"ws{api[4:]}/ws/predict/job/{job_id}/nowhere", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"status": "error", "message": "Invalid project name nowhere"}


def test_error_bodies_are_fastapi_vss_s(api):
    one = query_files()[:1]
    cases = {
        "/knn/3/nowhere": {"error": "Invalid project name nowhere"},
        "/embed/nowhere": {"error": "Invalid project name nowhere"},
        f"/knn/0/{PROJECT}": {"error": "Please provide a valid top_n value greater than 0"},
    }
    for path, expected in cases.items():
        response = post(api, path, one)
        assert (response.status_code, response.json()) == (200, expected), path
    too_many = query_files(2)[:BATCH_SIZE + 1]
    for path in (f"/knn/3/{PROJECT}", f"/embed/{PROJECT}"):
        response = post(api, path, too_many)
        assert response.json() == {"error": f"Images should be less than batch size {BATCH_SIZE}"}
    assert requests.get(f"{api}/predict/job/abc/{PROJECT}").json() == {
        "error": f"Job ID abc does not exist in project {PROJECT}"}
    assert requests.get(f"{api}/predict/job/abc/nowhere").json() == {"error": "Invalid project name nowhere"}
    assert requests.get(f"{api}/ids/nowhere").json() == {"error": "Invalid project name nowhere"}
    assert post(api, f"/knn/three/{PROJECT}", one).status_code == 422  # malformed: FastAPI's 422
    assert requests.post(f"{api}/knn/3/{PROJECT}").status_code == 422


def test_embed_job_returns_one_vector_per_image(api):
    files = query_files()[:2] + [("bad.png", b"\x89PNG\r\n\x1a\nbroken", "")]
    body = poll(api, post(api, f"/embed/{PROJECT}", files).json()["job_id"])
    result = body["result"]
    assert result["filenames"] == [files[0][0], files[1][0]]
    assert [len(v) for v in result["embeddings"]] == [32, 32]
    assert list(result["errors"]) == ["bad.png"]


def test_listing_endpoints_docs_and_metrics(api):
    assert requests.get(f"{api}/health").json()["status"] == "ok"
    assert "Welcome" in requests.get(f"{api}/").json()["message"]
    assert requests.get(f"{api}/projects").json() == {"projects": [PROJECT]}
    ids = requests.get(f"{api}/ids/{PROJECT}").json()
    assert len(ids["ids"]) == len(ids["classes"]) == 18 and set(ids["classes"]) == set(LABELS)
    gpu = requests.get(f"{api}/gpu-memory").json()
    assert gpu == {"error": "No GPU available"} or {"used_memory", "total_memory"} <= set(gpu)
    docs = requests.get(f"{api}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = requests.get(f"{api}/openapi.json").json()["paths"]
    assert {"/knn/{top_n}/{project}", "/embed/{project}", "/predict/job/{job_id}/{project}"} <= set(paths)
    metrics = requests.get(f"{api}/metrics").text
    assert 'handler="/health"' in metrics and "http_requests_total" in metrics


def test_cors_from_fastapi_vss_s_variable(api):
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    allowed = requests.options(f"{api}/knn/3/{PROJECT}", headers=headers)
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    other = requests.options(f"{api}/knn/3/{PROJECT}", headers={**headers, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_concurrent_clients_each_get_their_own_results(api):
    def one(seed):
        files = query_files(seed=seed)
        body = poll(api, post(api, f"/knn/2/{PROJECT}", files).json()["job_id"])
        return [f[0] for f in files], body["result"]

    with ThreadPoolExecutor(8) as pool:
        for names, result in pool.map(one, range(6000, 6080, 10)):
            assert result["filenames"] == names
            assert [p[0] for p in result["predictions"]] == [n.split("_q")[0] for n in names]


def test_token_guards_the_write_endpoints_and_results_expire(api_setup):
    _, env, _ = api_setup
    with api_server({**env, "VSS_API_TOKEN": TOKEN, "VSS_RESULT_TTL_S": "1"}) as url:
        files = query_files()[:1]
        assert post(url, f"/knn/1/{PROJECT}", files).status_code == 401
        wrong = post(url, f"/knn/1/{PROJECT}", files, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert post(url, f"/embed/{PROJECT}", files).status_code == 401
        assert requests.get(f"{url}/health").status_code == 200
        started = post(url, f"/knn/1/{PROJECT}", files, headers={"Authorization": f"Bearer {TOKEN}"})
        job_id = started.json()["job_id"]
        assert poll(url, job_id)["status"] == "done"
        time.sleep(1.5)
        assert requests.get(f"{url}/predict/job/{job_id}/{PROJECT}").json() == {
            "error": f"Job ID {job_id} does not exist in project {PROJECT}"}


def test_a_job_started_over_rest_shows_in_the_apps_job_panel(app_env):
    from tests.test_app import SEARCH, open_app, texts

    with api_server(dict(app_env.env)) as url:
        files = query_files()
        job_id = post(url, "/knn/2/gamma", files).json()["job_id"]
        assert poll(url, job_id, project="gamma")["status"] == "done"
    at = open_app("gamma", page=SEARCH)
    shown = texts(at)
    assert "**KNN (REST)** 3 image(s), top 2" in shown and "— done" in shown


# -- hostile clients, in process (FastAPI's TestClient, or the ASGI app driven chunk by chunk) -------------

@pytest.fixture
def app_module(tmp_path, monkeypatch, tiny_vit_dir):
    """``api`` with a service over a one-project config (nothing connects until a job starts)."""
    import api as api_module
    from vss_core.service import Service

    config = tmp_path / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(f"vss:\n  project: {PROJECT}\n  model: {tiny_vit_dir}\n  device: cpu\n")
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BATCH_SIZE", str(BATCH_SIZE))
    monkeypatch.setattr(api_module, "service", Service(config))
    return api_module


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


def test_a_wrong_token_is_refused_before_a_byte_of_the_body_is_read(app_module, monkeypatch):
    monkeypatch.setenv("VSS_API_TOKEN", TOKEN)
    for path in (f"/knn/3/{PROJECT}", f"/embed/{PROJECT}"):
        for auth in ({}, {"Authorization": "Bearer nope"}):
            status_code, body, read = drive(app_module.app, path, {**MULTIPART, **auth},
                                            multipart_chunks(64 * 1024**2))
            assert (status_code, read) == (401, 0), (path, auth, body)
            assert body == {"detail": "Missing or wrong bearer token."}


def test_an_upload_over_the_file_cap_is_refused_as_it_streams(app_module, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_UPLOAD_BYTES", 1024**2)
    total_chunks = len(list(multipart_chunks(64 * 1024**2)))
    for path in (f"/knn/3/{PROJECT}", f"/embed/{PROJECT}"):
        status_code, body, read = drive(app_module.app, path, MULTIPART, multipart_chunks(64 * 1024**2))
        assert status_code == 413 and body == {"error": "big.jpg: over the cap of 1,048,576 bytes per file"}
        assert read <= 1024**2 // (64 * 1024) + 2 < total_chunks  # stopped at the cap, not at the end
    from vss_core.images import MAX_FILE_BYTES
    from vss_core.service import MAX_UPLOAD_BYTES

    assert MAX_UPLOAD_BYTES == MAX_FILE_BYTES  # the cap every image file is read with


def test_top_n_is_capped_with_a_clear_4xx_error(app_module):
    from fastapi.testclient import TestClient

    from vss_core.service import MAX_TOP_N, top_n_error

    client = TestClient(app_module.app)
    one = [("files", ("a.jpg", encode(label_image("circles", seed=1)), "image/jpeg"))]
    response = client.post(f"/knn/{MAX_TOP_N + 1}/{PROJECT}", files=one)
    assert response.status_code == 400
    assert response.json() == {"error": f"top_n {MAX_TOP_N + 1:,} is more than {MAX_TOP_N:,}, "
                                        "the most neighbours a request may ask for"}
    assert client.post(f"/knn/1000000/{PROJECT}", files=one).status_code == 400
    assert top_n_error(MAX_TOP_N) is None and top_n_error(0) is not None
    assert client.post(f"/knn/3/{PROJECT}").status_code == 422  # no files: malformed, as before


def test_finished_jobs_are_forgotten_after_their_ttl_not_after_a_count(app_module, monkeypatch):
    from vss_core import jobs
    from vss_core.service import RESULT_TTL_S

    registry = app_module.service.registry
    ids = [registry.start("knn", lambda p: {"ok": True}) for _ in range(2100)]
    for job_id in ids:
        registry.wait(job_id, 10)
    registry.start("knn", lambda p: None)
    assert all(registry.get(job_id) is not None for job_id in ids)  # 2,100 finished, none dropped by count
    later = jobs.time.time() + RESULT_TTL_S + 1
    monkeypatch.setattr(jobs.time, "time", lambda: later)
    registry.jobs()
    assert all(registry.get(job_id) is None for job_id in ids)
