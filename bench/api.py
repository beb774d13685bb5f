"""REST round trip: VSS's api.py vs fastapi-vss's own server, same Redis, same tiny model.

    .venv/bin/python bench/api.py [--sequential 40] [--clients 4] [--seconds 20]
        [--fastapi-vss SRC --fastapi-vss-python PYTHON]

One request = POST 3 images to /knn/3/<project>, then GET /predict/job/... every 0.1 s until
``done`` (fastapi-vss's documented client).  Measured: p50/p95 of ``--sequential`` requests one
after another; p50 of POST + waiting on the websocket instead of polling; then requests/s
and p50 with ``--clients`` clients posting for ``--seconds``.
Both servers use one redis-server (TCP, password, RediSearch) holding 5 exemplars, and the
tiny ViT (hidden 32, 32 px) on CPU.  fastapi-vss runs from its source (``SRC`` = its ``src``
folder) with its RQ worker (``app/start_worker.py``), under ``PYTHON`` -- an interpreter that
has its extra packages (rq, python-dotenv, redis 5); see docs/benchmarks.md.  Without
``--fastapi-vss`` only VSS is measured.  Targets: VSS >= 2x fastapi-vss's requests/s with
4 clients, and a lower sequential p50.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402

from bench._common import REPO, machine, save_result, table, verdict  # noqa: E402

PROJECT = "benchproject"
PASSWORD = "bench-password"
LABELS = ("circles", "squares", "stripes")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model_and_images(root: Path) -> tuple[Path, list[bytes], list[Path]]:
    import torch
    from transformers import ViTConfig, ViTModel

    from tests.fixtures_models import _tiny_kwargs, encode, label_image, vit_processor

    torch.manual_seed(0)
    model = root / "model"
    ViTModel(ViTConfig(**_tiny_kwargs(32, 8))).save_pretrained(model)
    vit_processor(32).save_pretrained(model)
    exemplars = []
    for i in range(5):
        label = LABELS[i % 3]
        path = root / "exemplars" / label / f"{label}_{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        label_image(label, seed=i).save(path)
        exemplars.append(path)
    queries = [encode(label_image(LABELS[i % 3], seed=900 + i)) for i in range(3)]
    return model, queries, exemplars


@contextmanager
def redis_tcp(root: Path):
    from vss_core.redis.process import binaries
    from vss_core.redis.server import SEARCH_MODULE_ARGS

    server, module = binaries()
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
                             "--save", "", "--appendonly", "no", "--dir", str(root),
                             "--loadmodule", module, *SEARCH_MODULE_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port, password=PASSWORD)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def process(args, env, cwd, log: Path):
    """A server in its own process group, ended with its children (fastapi-vss's worker spawns one)."""
    import signal

    with open(log, "w") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(10)
                time.sleep(0.5)  # let the group's children go too
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the leader
        except ProcessLookupError:
            pass


def wait_up(url: str, proc, log: Path, limit: float = 120) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


def round_trip(session: requests.Session, url: str, queries: list[bytes]) -> float:
    files = [("files", (f"q{i}.jpg", io.BytesIO(q), "image/jpeg")) for i, q in enumerate(queries)]
    start = time.perf_counter()
    job = session.post(f"{url}/knn/3/{PROJECT}", files=files, timeout=60).json()["job_id"]
    while True:
        body = session.get(f"{url}/predict/job/{job}/{PROJECT}", timeout=60).json()
        if body.get("status") == "done":
            result = body["result"]
            assert isinstance(result, dict) and len(result["predictions"]) == 3, body
            return time.perf_counter() - start
        if body.get("status") != "pending":
            raise RuntimeError(f"job {job}: {body}")
        time.sleep(0.1)


def ws_round_trip(session: requests.Session, url: str, queries: list[bytes]) -> float:
    """POST, then wait on the websocket for the final message."""
    import json

    from websockets.sync.client import connect

    files = [("files", (f"q{i}.jpg", io.BytesIO(q), "image/jpeg")) for i, q in enumerate(queries)]
    start = time.perf_counter()
    job = session.post(f"{url}/knn/3/{PROJECT}", files=files, timeout=60).json()["job_id"]
    with connect(f"ws{url[4:]}/ws/predict/job/{job}/{PROJECT}", open_timeout=30) as ws:
        while json.loads(ws.recv(timeout=60))["status"] == "pending":
            pass
    return time.perf_counter() - start


def measure(url: str, queries: list[bytes], sequential: int, clients: int, seconds: float) -> dict:
    with requests.Session() as s:
        for _ in range(3):
            round_trip(s, url, queries)  # warm up (model load, first batches)
        seq = [round_trip(s, url, queries) for _ in range(sequential)]
        ws = [ws_round_trip(s, url, queries) for _ in range(max(5, sequential // 2))]
    times: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client():
        with requests.Session() as s:
            while time.monotonic() < stop:
                t = round_trip(s, url, queries)
                with lock:
                    times.append(t)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    q = statistics.quantiles(seq, n=20)
    return {"p50_s": statistics.median(seq), "p95_s": q[18], "ws_p50_s": statistics.median(ws),
            "concurrent_rps": len(times) / wall,
            "concurrent_p50_s": statistics.median(times), "concurrent_requests": len(times)}


def load_exemplars(config_dir: Path, data_dir: Path, exemplars_root: Path, model: Path) -> None:
    env = {**os.environ, "CONFIG_PATH": str(config_dir), "VSS_DATA_DIR": str(data_dir), "REDIS_PASSWD": PASSWORD}
    subprocess.run([sys.executable, "-m", "vss_core", "load", PROJECT, str(exemplars_root)],
                   env=env, cwd=REPO, check=True, capture_output=True)


def run_vss(root, port, model, queries, args) -> dict:
    config = root / "vss_config"
    env = {"CONFIG_PATH": str(config), "VSS_DATA_DIR": str(root / "vss_data"), "REDIS_PASSWD": PASSWORD}
    api_port = free_port()
    log = root / "vss.log"
    with process([sys.executable, "-m", "uvicorn", "api:app", "--host", "127.0.0.1", "--port", str(api_port),
                  "--log-level", "warning"], env, REPO, log) as proc:
        url = f"http://127.0.0.1:{api_port}"
        wait_up(url, proc, log)
        return measure(url, queries, args.sequential, args.clients, args.seconds)


def run_fastapi_vss(root, port, model, queries, args) -> dict:
    config = root / "fvss_config"
    config.mkdir()
    (config / "config.yml").write_text(
        f"redis:\n  host: 127.0.0.1\n  port: {port}\nvss:\n  project: {PROJECT}\n  model: {model}\n"
        f"  output_path: {root / 'fvss_out'}\n")
    env = {"CONFIG_PATH": str(config), "REDIS_PASSWD": PASSWORD, "LOG_DIR": str(root / "fvss_logs"),
           "BATCH_SIZE": "32", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(args.fastapi_vss)}
    api_port = free_port()
    with process([args.fastapi_vss_python, "app/start_worker.py"], env, args.fastapi_vss, root / "fvss_worker.log"), \
         process([args.fastapi_vss_python, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                  "--port", str(api_port), "--log-level", "warning"], env, args.fastapi_vss,
                 root / "fvss_api.log") as proc:
        url = f"http://127.0.0.1:{api_port}"
        wait_up(url, proc, root / "fvss_api.log")
        return measure(url, queries, args.sequential, args.clients, args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--fastapi-vss", type=Path, help="fastapi-vss's src folder")
    parser.add_argument("--fastapi-vss-python", default=sys.executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vss-bench-api-") as tmp:
        root = Path(tmp)
        model, queries, exemplars = make_model_and_images(root)
        with redis_tcp(root) as port:
            (root / "vss_config").mkdir()
            (root / "vss_config" / f"{PROJECT}.yaml").write_text(
                f"redis:\n  host: 127.0.0.1\n  port: {port}\n"
                f"vss:\n  project: {PROJECT}\n  model: {model}\n  device: cpu\n  output_path: {root / 'vss_out'}\n")
            load_exemplars(root / "vss_config", root / "vss_data", root / "exemplars", model)
            rows = {}
            if args.fastapi_vss:
                rows["fastapi-vss (RQ worker)"] = run_fastapi_vss(root, port, model, queries, args)
            rows["VSS api.py"] = run_vss(root, port, model, queries, args)
    report(rows, args)


def report(rows: dict, args) -> None:
    table([{"server": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}}
           for name, r in rows.items()])
    payload = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "servers": rows}
    vss, theirs = rows["VSS api.py"], rows.get("fastapi-vss (RQ worker)")
    if theirs:
        ratio = vss["concurrent_rps"] / theirs["concurrent_rps"]
        payload.update(rps_ratio=ratio, target=2.0, verdict=verdict(ratio, 2.0),
                       p50_lower=vss["p50_s"] < theirs["p50_s"])
        print(f"req/s with {args.clients} clients: VSS / fastapi-vss = {ratio:.2f}x (target >= 2x) "
              f"{payload['verdict']}; sequential p50 {vss['p50_s']:.3f} s vs {theirs['p50_s']:.3f} s")
    print(f"wrote {save_result('api', payload)}")


if __name__ == "__main__":
    main()
