"""The fastapi-vss REST API (api.py), in process through FastAPI's TestClient (which runs the app's
lifespan, so the service opens as under uvicorn), and once through a real uvicorn server process.

The service runs over the embedded Redis in a tmp VSS_DATA_DIR, with the tiny ViT saved to disk and
a CONFIG_PATH of one project.
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
from types import SimpleNamespace

import pytest
import requests
from fastapi.testclient import TestClient

import api
from tests.fixtures_app import free_port, stop_process
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
        stop_process(proc)
        log.close()


@contextmanager
def environment(env: dict):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def api_setup(tmp_path_factory, tiny_vit_dir, image_folder):
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.redis.exemplars import open_store
    from vss_core.redis.server import embedded_server

    base = tmp_path_factory.mktemp("api")
    config = base / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(
        f"vss:\n  project: {PROJECT}\n  model: {tiny_vit_dir}\n  device: cpu\n  output_path: results\n")
    env = {"CONFIG_PATH": str(config), "VSS_DATA_DIR": str(base / "data"), "BATCH_SIZE": str(BATCH_SIZE)}
    (base / "data").mkdir()
    with environment(env):
        project = load_projects().get(PROJECT)
        embedder = Embedder(str(tiny_vit_dir), device="cpu")
        store = open_store(project, embedder.dim)
        store.client.flushall()
        load_items(collect_folder(image_folder), embedder, store, added_by="fixture")
    yield base, env, project
    embedded_server(base / "data" / PROJECT).stop()


@pytest.fixture(scope="module")
def client(api_setup):
    """A TestClient of ``api.app`` with its lifespan running over the one-project config."""
    _, env, _ = api_setup
    with environment(env), TestClient(api.app) as test_client:
        yield test_client


def query_files(n_per_label: int = 1, seed: int = 4000) -> list[tuple[str, bytes, str]]:
    """New images (not exemplars) of each label: (filename, bytes, expected label)."""
    out = []
    for k, label in enumerate(sorted(LABELS)):
        for i in range(n_per_label):
            out.append((f"{label}_q{seed + i}.jpg", encode(label_image(label, seed=seed + 10 * k + i)), label))
    return out


def post(http: TestClient, path: str, files, **kwargs):
    multipart = [("files", (name, io.BytesIO(data), "image/jpeg")) for name, data, *_ in files]
    return http.post(path, files=multipart, **kwargs)


def poll(http: TestClient, job_id: str, project: str = PROJECT, every: float = 0.1, limit: float = 60) -> dict:
    """fastapi-vss's documented client loop: GET the job until it is no longer pending."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body = http.get(f"/predict/job/{job_id}/{project}").json()
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


# -- the real server: ``uvicorn api:app`` starts, and a knn job goes over its HTTP and websocket ----------

def test_uvicorn_serves_a_knn_job_over_http_and_its_websocket(api_setup):
    from websockets.sync.client import connect

    _, env, _ = api_setup
    with api_server(env) as url:
        files = query_files()
        multipart = [("files", (name, data, "image/jpeg")) for name, data, _ in files]
        job_id = requests.post(f"{url}/knn/2/{PROJECT}", files=multipart, timeout=30).json()["job_id"]
        messages = []
        with connect(f"ws{url[4:]}/ws/predict/job/{job_id}/{PROJECT}", open_timeout=10) as ws:
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
                if messages[-1]["status"] != "pending":
                    break
    assert all(m == {"status": "pending"} for m in messages[:-1])
    assert messages[-1]["status"] == "done"
    assert [p[0] for p in messages[-1]["result"]["predictions"]] == [f[2] for f in files]


# -- in process: FastAPI's TestClient ----------------------------------------------------------------------

def test_fastapi_vss_client_flow_end_to_end(client, api_setup):
    files = query_files()
    started = post(client, f"/knn/3/{PROJECT}", files)
    assert started.status_code == 200
    job_id = started.json()["job_id"]
    assert started.json()["Comment"] == f"Use /predict/job/{job_id}/{PROJECT} to check status."
    body = poll(client, job_id)
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


def test_a_non_image_fails_alone(client):
    files = query_files()[:2]
    files.insert(1, ("notes.txt", b"not an image at all", ""))
    body = poll(client, post(client, f"/knn/2/{PROJECT}", files).json()["job_id"])
    assert body["status"] == "done"
    result = body["result"]
    assert result["filenames"] == [files[0][0], files[2][0]]
    assert [p[0] for p in result["predictions"]] == [files[0][2], files[2][2]]
    assert "notes.txt" in result["errors"] and "not an image" in result["errors"]["notes.txt"]


def test_websocket_streams_pending_then_the_result(client):
    job_id = post(client, f"/knn/2/{PROJECT}", query_files()).json()["job_id"]
    messages = []
    with client.websocket_connect(f"/ws/predict/job/{job_id}/{PROJECT}") as ws:
        while True:
            messages.append(ws.receive_json())
            if messages[-1]["status"] != "pending":
                break
    assert all(m == {"status": "pending"} for m in messages[:-1])
    assert messages[-1]["status"] == "done" and len(messages[-1]["result"]["predictions"]) == 3
    with client.websocket_connect(f"/ws/predict/job/nope/{PROJECT}") as ws:
        assert ws.receive_json() == {"status": "error", "message": f"Job ID nope does not exist in project {PROJECT}"}
    with client.websocket_connect(f"/ws/predict/job/{job_id}/nowhere") as ws:
        assert ws.receive_json() == {"status": "error", "message": "Invalid project name nowhere"}


def test_error_bodies_are_fastapi_vss_s(client):
    one = query_files()[:1]
    cases = {
        "/knn/3/nowhere": {"error": "Invalid project name nowhere"},
        "/embed/nowhere": {"error": "Invalid project name nowhere"},
        f"/knn/0/{PROJECT}": {"error": "Please provide a valid top_n value greater than 0"},
    }
    for path, expected in cases.items():
        response = post(client, path, one)
        assert (response.status_code, response.json()) == (200, expected), path
    too_many = query_files(2)[:BATCH_SIZE + 1]
    for path in (f"/knn/3/{PROJECT}", f"/embed/{PROJECT}"):
        response = post(client, path, too_many)
        assert response.json() == {"error": f"Images should be less than batch size {BATCH_SIZE}"}
    assert client.get(f"/predict/job/abc/{PROJECT}").json() == {
        "error": f"Job ID abc does not exist in project {PROJECT}"}
    assert client.get("/predict/job/abc/nowhere").json() == {"error": "Invalid project name nowhere"}
    assert client.get("/ids/nowhere").json() == {"error": "Invalid project name nowhere"}
    assert post(client, f"/knn/three/{PROJECT}", one).status_code == 422  # malformed: FastAPI's 422
    assert client.post(f"/knn/3/{PROJECT}").status_code == 422


def test_embed_job_returns_one_vector_per_image(client):
    files = query_files()[:2] + [("bad.png", b"\x89PNG\r\n\x1a\nbroken", "")]
    body = poll(client, post(client, f"/embed/{PROJECT}", files).json()["job_id"])
    result = body["result"]
    assert result["filenames"] == [files[0][0], files[1][0]]
    assert [len(v) for v in result["embeddings"]] == [32, 32]
    assert list(result["errors"]) == ["bad.png"]


def test_listing_endpoints_docs_and_metrics(client):
    assert client.get("/health").json() == {"status": "ok", "version": api.__version__}  # no config_errors
    assert "Welcome" in client.get("/").json()["message"]
    assert client.get("/projects").json() == {"projects": [PROJECT]}
    ids = client.get(f"/ids/{PROJECT}").json()
    assert len(ids["ids"]) == len(ids["classes"]) == 18 and set(ids["classes"]) == set(LABELS)
    gpu = client.get("/gpu-memory").json()
    assert gpu == {"error": "No GPU available"} or {"used_memory", "total_memory"} <= set(gpu)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/knn/{top_n}/{project}", "/embed/{project}", "/predict/job/{job_id}/{project}"} <= set(paths)
    metrics = client.get("/metrics").text
    assert 'handler="/health"' in metrics and "http_requests_total" in metrics


def test_cors_from_fastapi_vss_s_variable(monkeypatch):
    monkeypatch.setenv("FASTAPI_VSS_CORS_ORIGINS", f"{ORIGIN}, http://other.example")
    cors = TestClient(api.create_app())
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    allowed = cors.options(f"/knn/3/{PROJECT}", headers=headers)
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    other = cors.options(f"/knn/3/{PROJECT}", headers={**headers, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_concurrent_clients_each_get_their_own_results(client):
    def one(seed):
        files = query_files(seed=seed)
        body = poll(client, post(client, f"/knn/2/{PROJECT}", files).json()["job_id"])
        return [f[0] for f in files], body["result"]

    with ThreadPoolExecutor(8) as pool:
        for names, result in pool.map(one, range(6000, 6080, 10)):
            assert result["filenames"] == names
            assert [p[0] for p in result["predictions"]] == [n.split("_q")[0] for n in names]


def test_token_guards_the_write_endpoints_and_results_expire(api_setup, monkeypatch):
    import vss_core.rest.service as service_module

    _, env, _ = api_setup
    with environment({**env, "VSS_API_TOKEN": TOKEN, "VSS_RESULT_TTL_S": "1"}), \
            TestClient(api.create_app()) as guarded:
        files = query_files()[:1]
        assert post(guarded, f"/knn/1/{PROJECT}", files).status_code == 401
        wrong = post(guarded, f"/knn/1/{PROJECT}", files, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert post(guarded, f"/embed/{PROJECT}", files).status_code == 401
        assert guarded.get("/health").status_code == 200
        started = post(guarded, f"/knn/1/{PROJECT}", files, headers={"Authorization": f"Bearer {TOKEN}"})
        job_id = started.json()["job_id"]
        assert poll(guarded, job_id)["status"] == "done"
        later = time.time() + 1.5  # the service's clock only: 1.5 s after the job finished
        monkeypatch.setattr(service_module, "time", SimpleNamespace(
            time=lambda: later, monotonic=time.monotonic, sleep=time.sleep))
        assert guarded.get(f"/predict/job/{job_id}/{PROJECT}").json() == {
            "error": f"Job ID {job_id} does not exist in project {PROJECT}"}


def test_a_job_started_over_rest_shows_in_the_apps_job_panel(app_env):
    from tests.test_app import SEARCH, open_app, texts

    with TestClient(api.create_app()) as rest:
        files = query_files()
        job_id = post(rest, "/knn/2/gamma", files).json()["job_id"]
        assert poll(rest, job_id, project="gamma")["status"] == "done"
    at = open_app("gamma", page=SEARCH)
    shown = texts(at)
    assert "**KNN (REST)** 3 image(s), top 2" in shown and "— done" in shown
