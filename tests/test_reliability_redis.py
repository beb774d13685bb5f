"""The embedded server's boundaries: a private socket, only our server used or shut down, private
files, clear start errors, bounded waits, and SIGTERM of the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from vss_core.config.projects import embedded_socket_path
from vss_core.errors import RedisUnavailable
from vss_core.redis import process as redis_process
from vss_core.redis import server as redis_server
from vss_core.redis.process import binaries
from vss_core.redis.server import EmbeddedRedis, connect

from .fixtures_redis import make_project

REPO = Path(__file__).resolve().parent.parent
OTHER_UID = 54321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def long_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    folder = tmp_path / ("d" * 120)
    assert len(str(folder / "redis.sock")) > 100
    return folder


def test_long_data_dir_socket_is_in_a_private_folder_not_a_predictable_tmp_name(long_data_dir, tmp_path):
    server = EmbeddedRedis(long_data_dir)
    assert server.socket_path.parent == tmp_path / "run" / "vss"
    try:
        server.start()
        assert server.socket_path.is_socket() and mode(server.socket_path.parent) == 0o700
        assert server.client().ping()
    finally:
        server.stop()


def test_data_dir_and_server_files_are_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    server = EmbeddedRedis(data)
    try:
        server.start()
        client = server.client()
        client.set("k", "v")
        assert client.execute_command("WAITAOF", 1, 0, 5000)[0] == 1
        assert mode(data) == 0o700
        files = [p for p in data.rglob("*") if p.is_file() and p.name != "redis.lock"]
        assert files and all(mode(p) & 0o077 == 0 for p in files), {p.name: oct(mode(p)) for p in files}
    finally:
        server.stop()


@needs_root
def test_runtime_folder_owned_by_someone_else_is_refused(long_data_dir, tmp_path):
    planted = tmp_path / "run" / "vss"
    planted.mkdir(mode=0o777)
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.raises(RedisUnavailable, match=f"owned by uid {OTHER_UID}"):
        EmbeddedRedis(long_data_dir).start()


def _fake_server(data: Path, log: Path, uid: int | None) -> int:
    """A process answering +PONG to anything on ``data/redis.sock`` (as ``uid``), logging what it got."""
    data.mkdir(exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(data / "redis.sock"))
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            with open(log, "ab", buffering=0) as out:
                if uid is not None:
                    os.setgid(uid)
                    os.setuid(uid)
                listener.listen()  # the peer credentials clients see are taken here
                os.write(ready_w, b"r")
                while True:
                    conn, _ = listener.accept()
                    try:
                        with conn:
                            out.write(conn.recv(1024))
                            conn.sendall(b"+PONG\r\n")
                    except OSError:
                        pass
        finally:
            os._exit(0)
    listener.close()
    assert os.read(ready_r, 1) == b"r"
    return pid


@pytest.mark.parametrize("uid", [pytest.param(OTHER_UID, marks=needs_root), None])
def test_server_on_the_socket_that_is_not_ours_is_never_used_or_shut_down(tmp_path, uid):
    data, log = tmp_path / "data", tmp_path / "commands.log"
    pid = _fake_server(data, log, uid)
    try:
        server = EmbeddedRedis(data)
        with pytest.raises(RedisUnavailable, match="served by another program"):
            server.start()
        with pytest.raises(RedisUnavailable):
            server.stop()
        server._release_at_exit()
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running
        assert log.read_bytes() == b""  # not even a PING was sent to it
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _plain_redis(tmp_path: Path, port: int) -> subprocess.Popen:
    server, _ = binaries()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("plain redis-server did not start")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_password_for_a_server_without_password_or_search_module_names_the_missing_module(tmp_path):
    port = _free_port()
    proc = _plain_redis(tmp_path, port)
    try:
        project = make_project(tmp_path, host="127.0.0.1", port=port, password="s3cret-pw")
        with pytest.raises(RedisUnavailable) as info:
            connect(project)
        assert "search module" in str(info.value) and "authentication" not in str(info.value)
        assert "s3cret-pw" not in str(info.value)
    finally:
        proc.kill()
        proc.wait(10)


def test_slow_reply_ends_as_a_timeout_and_is_not_resent(tmp_path, monkeypatch):
    monkeypatch.setattr(redis_server, "SOCKET_TIMEOUT", 0.2)
    server = EmbeddedRedis(tmp_path / "data")
    try:
        client = server.start().client()
        client.config_resetstat()
        with pytest.raises(redis.TimeoutError):  # a script that runs a few seconds on the server
            client.eval("local i = 0 while i < 300000000 do i = i + 1 end return i", 0)
        probe = server.client(socket_timeout=60)
        for _ in range(120):
            try:
                calls = probe.info("commandstats")["cmdstat_eval"]["calls"]
                break
            except redis.ResponseError:  # BUSY while the script still runs
                time.sleep(0.5)
        assert calls == 1
    finally:
        server.stop()


def test_start_on_a_full_disk_names_the_full_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mount / "data").mkdir()
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        with pytest.raises(RedisUnavailable, match="is full"):
            EmbeddedRedis(mount / "data").start()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_sigterm_of_the_cli_stops_the_embedded_server(tmp_path, tiny_vit_dir, image_folder):
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    (config / "p.yaml").write_text(f"vss: {{project: p, model: {tiny_vit_dir}, device: cpu}}\n")
    folder = tmp_path / "many"
    for i in range(80):
        for label_dir in image_folder.iterdir():
            (folder / label_dir.name).mkdir(parents=True, exist_ok=True)
            for image in label_dir.iterdir():
                (folder / label_dir.name / f"{i}_{image.name}").write_bytes(image.read_bytes() + bytes([i]))
    env = {**os.environ, "CONFIG_PATH": str(config), "VSS_DATA_DIR": str(data), "BATCH_SIZE": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "vss_core", "load", "p", str(folder)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = EmbeddedRedis(data / "p")
    for _ in range(1200):
        if server.pid and server.running or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    pid = server.pid
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err[-2000:])
    assert redis_process.wait_gone(pid, 30), err[-2000:]
    assert embedded_socket_path(data / "p") == server.socket_path and not server.socket_path.exists()
