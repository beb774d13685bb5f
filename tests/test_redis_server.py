"""Embedded Redis: start, reuse, stop, crash recovery, persistence, connect()."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures_redis import make_project
from vss_core.errors import RedisUnavailable
from vss_core.redis.process import is_redis_process
from vss_core.redis.server import EmbeddedRedis, connect, embedded_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(tmp_path):
    srv = EmbeddedRedis(tmp_path / "data")
    yield srv
    srv.stop()


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while is_redis_process(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not is_redis_process(pid)


def _index_with_doc(client) -> None:
    client.execute_command("FT.CREATE", "index", "ON", "HASH", "PREFIX", 1, "doc:", "SCHEMA",
                           "tag", "TAG", "vector", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 2,
                           "DISTANCE_METRIC", "COSINE")
    client.hset("doc:cat:1", mapping={"vector": b"\x00\x00\x80?\x00\x00\x00\x00", "tag": "cat"})


def test_start_stop_and_files(server):
    assert not server.running
    server.start()
    assert server.running and server.started_here
    assert server.socket_path.is_socket() and server.pid
    assert oct(server.socket_path.stat().st_mode)[-3:] == "700"
    pid = server.pid
    server.stop()
    _wait_dead(pid)
    assert not server.running
    assert not server.socket_path.exists() and not server.pid_path.exists()


def test_search_module_loaded_with_fail_policy(embedded_redis, redis_client):
    names = {m[b"name"] for m in redis_client.module_list()}
    assert b"search" in names
    assert redis_client.execute_command("FT.CONFIG", "GET", "ON_TIMEOUT")[0][1] == b"fail"
    assert redis_client.execute_command("FT.CONFIG", "GET", "TIMEOUT")[0][1] == b"60000"


def test_second_instance_reuses_live_server(server):
    server.start()
    other = EmbeddedRedis(server.data_dir).start()
    assert other.pid == server.pid
    assert not other.started_here
    assert other.client().ping()


def test_busy_server_is_reused_not_killed(server):
    server.start()
    busy = "local x = 0 for i = 1, 3000000 do x = x + #redis.call('PING')['ok'] end return x"
    other = EmbeddedRedis(server.data_dir)
    other.ping_timeout = 0.1
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(server.client().eval, busy, 0)
        deadline = time.monotonic() + 10
        while other._ping() != "busy":  # until the script holds the server
            assert not job.done() and time.monotonic() < deadline, "the script never held the server"
        other.start()
        job.result()
    assert other.pid == server.pid and server.running


def test_concurrent_starts_make_one_server(tmp_path):
    data = tmp_path / "data"
    servers = [EmbeddedRedis(data) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: s.start(), servers))
    try:
        assert len({s.pid for s in servers}) == 1
        assert sum(s.started_here for s in servers) == 1
    finally:
        servers[0].stop()


def test_data_survives_normal_restart(server):
    server.start()
    client = server.client()
    _index_with_doc(client)
    client.close()
    server.stop()
    client = server.start().client()
    assert client.hget("doc:cat:1", "tag") == b"cat"
    assert client.execute_command("FT.SEARCH", "index", "@tag:{cat}", "NOCONTENT")[0] == 1


def test_sigkill_leaves_stale_files_that_start_cleans(server):
    server.start()
    client = server.client()
    _index_with_doc(client)
    assert client.execute_command("WAITAOF", 1, 0, 5000)[0] == 1
    client.close()
    old_pid = server.pid
    os.kill(old_pid, signal.SIGKILL)
    _wait_dead(old_pid)
    assert server.socket_path.exists() and server.pid_path.exists()
    assert not server.running

    server.start()
    assert server.pid != old_pid and server.running
    client = server.client()
    assert client.hget("doc:cat:1", "tag") == b"cat"
    assert client.execute_command("FT.SEARCH", "index", "@tag:{cat}", "NOCONTENT")[0] == 1


def test_stale_socket_file_without_server(server):
    server.data_dir.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(server.socket_path))
    server.pid_path.write_text("999999\n")
    server.start()
    assert server.running and server.pid != 999999


def test_start_failure_reports_log_tail(tmp_path, monkeypatch):
    from vss_core.redis import server as redis_server

    monkeypatch.setenv("VSS_REDISEARCH_MODULE", str(tmp_path / "missing.so"))
    monkeypatch.setattr(redis_server, "START_TIMEOUT", 3600.0)  # the dead server is noticed, not waited out
    with pytest.raises(RedisUnavailable, match="missing.so"):
        EmbeddedRedis(tmp_path / "data").start()


def test_connect_restarts_a_stopped_server(tmp_path):
    project = make_project(tmp_path / "p")
    client = connect(project)
    client.set("k", "v")
    server = embedded_server(project.data_dir)
    try:
        server.stop()
        assert not server.running
        assert client.get("k") == b"v"
        assert server.running
    finally:
        server.stop()


def test_a_command_whose_server_is_killed_under_it_is_answered_by_the_restarted_server(server):
    client = server.start().client()
    client.set("k", "v")
    assert client.execute_command("WAITAOF", 1, 0, 5000)[0] == 1
    old_pid = server.pid
    with ThreadPoolExecutor(1) as pool:
        popped = pool.submit(client.blpop, ["list"], 60)  # in flight on its connection when the server dies
        probe = server.client()
        deadline = time.monotonic() + 10
        while not any(c.get("cmd") == "blpop" for c in probe.client_list()):
            assert time.monotonic() < deadline, "BLPOP did not reach the server"
            time.sleep(0.02)
        os.kill(old_pid, signal.SIGKILL)
        _wait_dead(old_pid)
        deadline = time.monotonic() + 20
        while not (server.running and server.pid != old_pid):  # restarted by the BLPOP's own retry
            assert time.monotonic() < deadline, "the server was not restarted"
            time.sleep(0.02)
        while not any(c.get("cmd") == "blpop" for c in probe.client_list()):  # resent, on the restarted server
            assert time.monotonic() < deadline, "BLPOP was not resent"
            time.sleep(0.02)
        probe.rpush("list", "x")
        assert popped.result(timeout=20) == (b"list", b"x")
    assert server.pid != old_pid and client.get("k") == b"v"  # restarted from its AOF


def _exit_script(data_dir: Path) -> str:
    return (f"from vss_core.redis.server import EmbeddedRedis\n"
            f"s = EmbeddedRedis({str(data_dir)!r}).start()\n"
            f"c = s.client(); c.ping()\n"
            f"print(s.pid, flush=True)\n")


def test_process_exit_stops_server_it_used(tmp_path):
    data = tmp_path / "data"
    out = subprocess.run([sys.executable, "-c", _exit_script(data)], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True)
    _wait_dead(int(out.stdout.strip()))
    assert not EmbeddedRedis(data).running


def test_process_exit_keeps_server_others_use(server):
    server.start()
    client = server.client()
    client.ping()
    out = subprocess.run([sys.executable, "-c", _exit_script(server.data_dir)], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout.strip()) == server.pid
    assert server.running and client.ping()


def test_connect_external_unreachable_hides_password():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project = make_project(Path("/nonexistent"), host="127.0.0.1", port=port, password="s3cret-pw")
    with pytest.raises(RedisUnavailable) as info:
        connect(project)
    assert f"127.0.0.1:{port}" in str(info.value) and "s3cret-pw" not in str(info.value)


def _tcp_redis(folder: Path, *args: str):
    """A redis-server on a free loopback port (``args`` added to its command line), once it answers."""
    import redis

    from vss_core.redis.process import binaries

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binaries()[0], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(folder), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the test's redis-server did not start"
            time.sleep(0.02)
    return port, proc


@pytest.fixture
def plain_tcp_redis(tmp_path):
    """A redis-server without the search module, on a loopback port, with a password."""
    port, proc = _tcp_redis(tmp_path, "--requirepass", "right-pw")
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def shared_search_redis(tmp_path):
    """A Redis with the search module on a loopback port, as another tool set it up: ON_TIMEOUT RETURN."""
    from vss_core.redis.process import binaries

    port, proc = _tcp_redis(tmp_path, "--loadmodule", binaries()[1], "ON_TIMEOUT", "RETURN")
    yield port
    proc.terminate()
    proc.wait(10)


def test_connect_external_wrong_password(plain_tcp_redis):
    project = make_project(Path("/nonexistent"), host="127.0.0.1", port=plain_tcp_redis, password="wrong-pw")
    with pytest.raises(RedisUnavailable, match="authentication") as info:
        connect(project)
    assert "wrong-pw" not in str(info.value)


def test_connect_external_without_search_module(plain_tcp_redis):
    project = make_project(Path("/nonexistent"), host="127.0.0.1", port=plain_tcp_redis, password="right-pw")
    with pytest.raises(RedisUnavailable, match="search module"):
        connect(project)


def test_connect_leaves_an_external_server_s_timeout_policy_alone(shared_search_redis):
    project = make_project(Path("/nonexistent"), host="127.0.0.1", port=shared_search_redis)
    client = connect(project)
    assert client.ping()
    assert client.execute_command("FT.CONFIG", "GET", "ON_TIMEOUT")[0][1] == b"return"


def test_connect_switches_return_policy_to_fail(redis_project, redis_client):
    """On the embedded server (VSS's own; one started by an older VSS may still have RETURN)."""
    redis_client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "RETURN")
    try:
        client = connect(redis_project)
        assert client.execute_command("FT.CONFIG", "GET", "ON_TIMEOUT")[0][1] == b"fail"
    finally:
        redis_client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "FAIL")
