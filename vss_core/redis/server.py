"""Embedded Redis (with the search module) per data dir, and connections to a project's Redis.

The embedded server listens on a unix socket only (``--port 0``), keeps its data in the
project's data dir with ``appendonly yes`` / ``appendfsync everysec`` (acknowledged writes
are in the file, so they survive a killed server; ``VectorStore.sync()`` waits for the fsync)
and is shared by every process that uses that dir (app sessions, the CLI): ``start()``
reuses a server that answers PING, a lock file makes sure only one is ever started per
dir, and a stale socket/pid file left by a killed server is cleaned up first.

Lifetime: every process that started or reused a server stops it at exit (``atexit``)
unless another process still holds a connection to it ("last one out stops it").  A
process whose server went away gets it back on its next command: the clients of :func:`connect`
retry a dropped connection only after bringing the server back (:class:`_RestartingRetry`).

Privacy: the socket lives in a folder only this user can enter (the data dir, made 0700, or
:func:`~vss_core.config.projects.private_runtime_dir` for long paths), which is checked to be a real
folder of ours before use; the server's files are created 0600 (umask 077).  A server found
on the socket is used, and ever sent SHUTDOWN, only when the kernel says its process is this
user's redis-server serving this very socket (``SO_PEERCRED``); anything else is refused
with :class:`RedisUnavailable`.

Timeout policy: the search module is loaded with ``TIMEOUT 60000 ON_TIMEOUT FAIL``: a query
is never cut short silently; one that runs past a minute fails with an error.  :func:`connect`
switches an embedded server started by an older VSS from ``return`` to ``fail``; an external
server's settings are left alone (other tools share it); the store checks KNN answers for
completeness in any case.  Clients read with a socket timeout a little longer than the
search timeout (``SOCKET_TIMEOUT``) and never resend a command that timed out, so a slow
query ends as the server's timeout error or as ``redis.TimeoutError``, never as a silent
resend or a wait without end.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import ConnectionPool, UnixDomainSocketConnection
from redis.retry import Retry

from vss_core.config.projects import embedded_socket_path
from vss_core.errors import RedisUnavailable, VSSError
from vss_core.redis.process import binaries, is_redis_process, peer, private_dir, wait_gone

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
LOAD_TIMEOUT = 3600.0
SEARCH_MODULE_ARGS = ("TIMEOUT", "60000", "ON_TIMEOUT", "FAIL")
SOCKET_TIMEOUT = 75.0
"""Seconds a client waits for a reply: longer than the search module's 60 s TIMEOUT."""
LOW_DISK_BYTES = 16 * 1024**2
_servers: dict[Path, "EmbeddedRedis"] = {}


def _retry(server: "EmbeddedRedis | None" = None) -> Retry:
    """Reconnect and resend after a dropped connection, never after a timeout; bring ``server`` back first."""
    policy = (ExponentialBackoff(cap=0.5, base=0.01), 3, (redis.ConnectionError,))
    return _RestartingRetry(server, *policy) if server else Retry(*policy)


class _RestartingRetry(Retry):
    """The policy of :func:`_retry` that brings the embedded server back before the next attempt.

    redis-py runs each connect and command of a connection through its ``Retry`` (``call_with_retry(do,
    fail)``, documented API), calling ``fail`` after each failed attempt; then :meth:`EmbeddedRedis.start`
    PINGs a live server and restarts a dead one from its AOF.  One still loading is retried, not waited for."""

    def __init__(self, server: "EmbeddedRedis", *policy):
        super().__init__(*policy)
        self.server = server

    def __deepcopy__(self, memo) -> Retry:
        return _retry(self.server)  # each connection copies its pool's policy; the server stays one

    def call_with_retry(self, do, fail, *args, **kwargs):
        def fail_then_restart(error, *failures):
            fail(error, *failures)
            if not isinstance(error, redis.BusyLoadingError):
                self.server.start()

        return super().call_with_retry(do, fail_then_restart, *args, **kwargs)


class EmbeddedRedis:
    """The Redis server of one data dir, reached through ``socket_path``."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = embedded_socket_path(self.data_dir)
        self.pid_path = self.data_dir / "redis.pid"
        self.log_path = self.data_dir / "redis.log"
        self.lock_path = self.data_dir / "redis.lock"
        self.started_here = False
        self.ping_timeout = 2.0
        self._exit_hook = False
        self._pools: weakref.WeakSet = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.data_dir)!r})"

    def describe(self) -> str:
        """Safe one-line description of this server."""
        return f"embedded Redis (unix socket {self.socket_path})"

    @property
    def running(self) -> bool:
        """True when the socket answers PING."""
        return self._ping() == "ok"

    @property
    def pid(self) -> int | None:
        """Pid from the pid file, if any."""
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> "EmbeddedRedis":
        """Start the server, or reuse the live one on this data dir; ``RedisUnavailable`` on failure."""
        if not self._exit_hook:  # before spawning: a process stopped mid-start still stops its server
            atexit.register(self._release_at_exit)
            self._exit_hook = True
        if self._ping() not in ("ok", "busy"):
            private_dir(self.data_dir)
            private_dir(self.socket_path.parent)
            with self._locked():
                state = self._ping()
                if state == "down":
                    self._clean_stale()
                    self._spawn()
                if state != "busy":
                    self._wait_ready()
        return self

    def stop(self, timeout: float = START_TIMEOUT) -> None:
        """Shut the server down (the AOF is flushed); no-op when it is not running.

        Only this user's server of this socket is ever sent SHUTDOWN (``RedisUnavailable`` else)."""
        pid = self.pid
        try:
            self._send(b"SHUTDOWN\r\n")
        except OSError:
            return
        if pid and not wait_gone(pid, timeout):
            log.warning("redis-server %s did not stop, killing it", pid)
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, timeout)
        self.started_here = False

    def client(self, **kwargs) -> redis.Redis:
        """A RESP2 client that restarts this server when a command finds it down."""
        kwargs.setdefault("socket_timeout", SOCKET_TIMEOUT)
        pool = ConnectionPool(connection_class=UnixDomainSocketConnection,
                              path=str(self.socket_path), protocol=2,
                              client_name=f"vss-{os.getpid()}",
                              retry=_retry(self), **kwargs)
        self._pools.add(pool)
        return redis.Redis(connection_pool=pool)

    def _send(self, command: bytes) -> bytes | None:
        """Reply to ``command``; None when connected but no answer came in time (busy).

        ``RedisUnavailable`` when the process on the socket is not our server (see :meth:`_check_peer`)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.ping_timeout)
            sock.connect(str(self.socket_path))
            self._checkpeer(*peer(sock))
            try:
                sock.sendall(command)
                return sock.recv(256)
            except TimeoutError:
                return None

    def _checkpeer(self, pid: int, uid: int) -> None:
        if uid == os.getuid() and not is_redis_process(pid, ""):
            raise ConnectionRefusedError(f"the server (process {pid}) has exited")  # e.g. on a full disk
        if uid != os.getuid() or not self._names_our_socket(pid):
            who = f"uid {uid}" if uid != os.getuid() else f"process {pid}, not our redis-server"
            raise RedisUnavailable(f"{self.describe()}: the socket is served by another program ({who}); "
                                   "refusing to use it")

    def _names_our_socket(self, pid: int, settle_s: float = 0.5) -> bool:
        """Whether process ``pid``'s command line names our socket; a redis-server that has just started may be
        rewriting its process title (for an instant the line is blank), so a miss is read again for a moment."""
        deadline = time.monotonic() + settle_s
        while not is_redis_process(pid, str(self.socket_path)):
            if time.monotonic() > deadline or not is_redis_process(pid, ""):
                return False
            time.sleep(0.02)
        return True

    def _ping(self) -> str:
        """Server state: "ok" (any answer), "busy" (connected, slow to answer), "loading" or "down"."""
        try:
            reply = self._send(b"PING\r\n")
        except OSError:
            return "down"
        if reply is None:
            return "busy"
        if reply.startswith(b"-LOADING"):
            return "loading"
        return "ok" if reply else "down"

    @contextmanager
    def _locked(self):
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _clean_stale(self) -> None:
        pid = self.pid
        if pid and is_redis_process(pid, str(self.socket_path)) and not wait_gone(pid, START_TIMEOUT):
            log.warning("redis-server %s on %s does not answer, stopping it", pid, self.data_dir)
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, START_TIMEOUT):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, START_TIMEOUT)
        for path in (self.socket_path, self.pid_path):
            path.unlink(missing_ok=True)

    def _spawn(self) -> None:
        server, module = binaries()
        args = [server, "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
                "--dir", str(self.data_dir), "--pidfile", str(self.pid_path), "--logfile", str(self.log_path),
                "--daemonize", "yes", "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--loadmodule", module, *SEARCH_MODULE_ARGS]
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=START_TIMEOUT,
                                  umask=0o077)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RedisUnavailable(f"{self.describe()}: cannot run redis-server: {exc}") from exc
        if done.returncode != 0:
            raise self._failure(done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace"))
        self.started_here = True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        load_deadline = time.monotonic() + LOAD_TIMEOUT
        while (state := self._ping()) not in ("ok", "busy"):
            now = time.monotonic()
            pid = self.pid
            if state == "down" and (now > deadline or (pid and not is_redis_process(pid))):
                raise self._failure(self._log_tail())
            if now > load_deadline:
                raise self._failure("still loading its data")
            time.sleep(0.01)

    def _failure(self, detail: str) -> RedisUnavailable:
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            free = None
        if free is not None and free < LOW_DISK_BYTES:
            detail = f"the disk of {self.data_dir} is full ({free:,} bytes free); free some space. {detail.strip()}"
        return RedisUnavailable(f"{self.describe()} did not start: {detail.strip() or 'no log output'}")

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _others_connected(self) -> bool:
        mine = f"vss-{os.getpid()}"
        with redis.Redis(unix_socket_path=str(self.socket_path), protocol=2, socket_timeout=2,
                         retry=_retry()) as probe:
            me = probe.client_id()
            return any(int(c["id"]) != me and c.get("name") != mine for c in probe.client_list())

    def _release_at_exit(self) -> None:
        for pool in list(self._pools):  # ours, even one cut off (SIGTERM) before it was named
            pool.disconnect()
        try:
            if self.running and not self._others_connected():
                self.stop()
        except (OSError, redis.RedisError, VSSError) as exc:
            log.warning("could not stop %s at exit: %s", self.describe(), exc)


def embedded_server(data_dir: str | Path) -> EmbeddedRedis:
    """The process-wide :class:`EmbeddedRedis` of ``data_dir`` (not started)."""
    key = Path(data_dir).resolve()
    return _servers.setdefault(key, EmbeddedRedis(key))


def connect(project) -> redis.Redis:
    """A RESP2 client for ``project.redis``: the embedded server (started when needed) or
    ``host:port`` with ``password``.  ``RedisUnavailable`` names the target, never the password."""
    target = project.redis
    embedded = getattr(target, "embedded", target.host == "embedded")
    if embedded:
        server = embedded_server(project.data_dir)
        where = server.describe()
        try:
            client = server.start().client()
        except RedisUnavailable as exc:
            raise RedisUnavailable(f"project {project.name}: {exc}") from exc
    else:
        where = f"redis://{target.host}:{target.port}"
        client = _external(target.host, target.port, target.password)
    client = _check_search_module(client, f"project {project.name}: {where}", target.password)
    if embedded:
        _prefer_fail_on_timeout(client)
    return client


def _external(host: str, port: int, password: str | None) -> redis.Redis:
    return redis.Redis(host=host, port=port, password=password or None, protocol=2, socket_connect_timeout=5,
                       socket_timeout=SOCKET_TIMEOUT, socket_keepalive=True,
                       client_name=f"vss-{os.getpid()}", retry=_retry())


def _check_search_module(client: redis.Redis, where: str, password: str | None) -> redis.Redis:
    """``client`` (or one without the password, for a server that has none) once the search module is found."""
    try:
        modules = client.module_list()
    except redis.AuthenticationError as exc:
        if password and "without any password configured" in str(exc):
            log.warning("%s has no password: REDIS_PASSWD is not used", where)
            kwargs = client.connection_pool.connection_kwargs
            return _check_search_module(_external(kwargs["host"], kwargs["port"], None), where, None)
        raise RedisUnavailable(f"{where}: authentication failed (check REDIS_PASSWD)") from exc
    except redis.RedisError as exc:
        message = str(exc).replace(password, "***") if password else str(exc)
        raise RedisUnavailable(f"{where}: cannot reach Redis: {message}") from exc
    names = {(m.get(b"name") or m.get("name") or b"") for m in modules}
    if not names & {b"search", "search", b"ft", "ft"}:
        raise RedisUnavailable(f"{where}: the Redis search module (RediSearch) is not loaded")
    return client


def _prefer_fail_on_timeout(client: redis.Redis) -> None:
    """Make our embedded server fail timed-out queries instead of answering with partial results."""
    try:
        reply = client.execute_command("FT.CONFIG", "GET", "ON_TIMEOUT")
        policy = reply[0][1] if reply else b""
        if policy and policy.lower() != b"fail":
            client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "FAIL")
    except (redis.RedisError, IndexError, TypeError) as exc:
        log.warning("could not set the search ON_TIMEOUT policy to FAIL: %s", exc)
