"""Hostile remote and local configs: slow config_url servers, kept copies, YAML bombs, odd files."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from vss_core.config import remote as remote_config
from vss_core.config.projects import load_projects

from .test_config import env, write, yaml_server  # noqa: F401 - fixtures
from .test_reliability_inputs import bounded


class SlowServer:
    """A loopback HTTP server that accepts and then never answers ("silent") or trickles a byte at a time."""

    def __init__(self, mode: str):
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.open_at_once = 0
        self._open = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/remote.yml"

    def _serve(self):
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        with self._lock:
            self._open += 1
            self.open_at_once = max(self.open_at_once, self._open)
        try:
            with conn:
                if self.mode == "trickle":
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                while not self.stop.wait(0.05):
                    if self.mode == "trickle":
                        conn.sendall(b"#")
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= 1

    def close(self):
        self.stop.set()
        self.listener.close()


@pytest.fixture
def slow():
    servers = []

    def make(mode):
        servers.append(SlowServer(mode))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(remote_config, "FETCH_DEADLINE_S", 0.5)


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_slow_config_url_fails_alone_by_its_deadline(env, slow, short_deadline, mode):
    server = slow(mode)
    write(env, "ok.yaml", "vss: {project: ok, model: m}\n")
    bad = write(env, "slow.yaml", f"config_url: {server.url}\nvss: {{project: slow, model: m}}\n")
    result = bounded(load_projects)
    assert list(result.projects) == ["ok"]
    (error,) = result.errors
    assert str(bad) in str(error) and error.key == "config_url" and "within" in str(error)


def test_slow_config_urls_are_fetched_at_the_same_time(env, slow, short_deadline):
    """Every project's remote is asked at once: one slow server never queues the others behind it."""
    server = slow("silent")
    for name in ("a", "b", "c"):
        write(env, f"{name}.yaml", f"config_url: {server.url}?{name}\nvss: {{project: {name}, model: m}}\n")
    result = bounded(load_projects)
    assert len(result.errors) == 3
    assert server.open_at_once == 3


def test_unreachable_remote_uses_the_kept_copy_and_says_so(env, tmp_path, yaml_server, slow, short_deadline):
    base, pages = yaml_server
    pages["/remote.yml"] = (200, "vss:\n  model: remote/model\n")
    path = write(env, "a.yaml", f"config_url: {base}/remote.yml\nvss: {{project: a, model: local}}\n")
    first = load_projects().get("a")
    assert first.model == "remote/model" and first.notice is None
    kept = list((tmp_path / "data" / remote_config.CACHE_FOLDER).iterdir())
    assert len(kept) == 1 and stat.S_IMODE(kept[0].stat().st_mode) == 0o600

    pages.clear()  # the remote now answers 404
    second = load_projects().get("a")
    assert second.model == "remote/model"
    assert "using the copy kept from" in second.notice and "404" in second.notice

    # a server that never answers: the kept copy again, by the deadline
    server = slow("silent")
    os.replace(kept[0], remote_config._cache_path(server.url, tmp_path / "data"))
    path.write_text(f"config_url: {server.url}\nvss: {{project: a, model: local}}\n")
    third = bounded(load_projects).get("a")
    assert third.model == "remote/model" and "within the deadline" in third.notice


def test_oversized_remote_answer_is_refused(env, yaml_server):
    base, pages = yaml_server
    pages["/big.yml"] = (200, "# " + "x" * (remote_config.MAX_BYTES + 10) + "\n")
    write(env, "a.yaml", f"config_url: {base}/big.yml\nvss: {{project: a, model: m}}\n")
    (error,) = load_projects().errors
    assert "more than" in str(error)


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


@pytest.mark.parametrize("text, words", [
    ("[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    (BILLION_LAUGHS + "vss: {project: bomb, model: *j}\n", "vss.model"),
    ("vss: {project: a, model: m}\nvss: {project: b, model: m}\n", None),
    ("\x00\x01binary", "not valid YAML"),
])
def test_hostile_yaml_files_fail_alone(env, text, words):
    write(env, "ok.yaml", "vss: {project: ok, model: m}\n")
    write(env, "bad.yaml", text)
    result = bounded(load_projects)
    assert "ok" in result.projects
    if words:
        (error,) = result.errors
        assert "bad.yaml" in str(error) and words in str(error)


def test_fifo_and_huge_config_files_fail_alone(env):
    write(env, "ok.yaml", "vss: {project: ok, model: m}\n")
    os.mkfifo(env / "pipe.yaml")
    with open(env / "huge.yaml", "wb") as f:
        f.truncate(10 * 1024**3)
    result = bounded(load_projects)
    assert list(result.projects) == ["ok"]
    reasons = sorted(str(e) for e in result.errors)
    assert "huge.yaml" in reasons[0] and "over the cap" in reasons[0]
    assert "pipe.yaml" in reasons[1] and "FIFO" in reasons[1]


def test_deadline_is_total_not_per_read(env, slow, monkeypatch):
    """A trickling server keeps each read short; the fetch still ends by its one deadline."""
    monkeypatch.setattr(remote_config, "FETCH_DEADLINE_S", 1.0)
    server = slow("trickle")
    result = bounded(remote_config.fetch_all, {"a": server.url}, env)
    assert "within the deadline" in result["a"].error


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_a_config_folder_the_user_may_not_read_is_named_not_passed_over():
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="vss-cfg-") as base:
        os.chmod(base, 0o711)
        folder = Path(base) / "config"
        folder.mkdir(mode=0o700)
        (folder / "p.yaml").write_text("vss: {project: p, model: m}\n")
        code = ("from vss_core.config.projects import load_projects; r = load_projects(%r); "
                "print(len(r.projects), [str(e) for e in r.errors])" % str(folder))
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                               "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=str(Path(__file__).resolve().parent.parent),
                              env={**os.environ, "VSS_DATA_DIR": base, "PYTHONPATH": "."})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 ") and "cannot read the config folder" in done.stdout and str(folder) in done.stdout
