"""Remote project configs (``config_url``): a total deadline per fetch, fetched together, kept on disk.

- A fetch ends by ``FETCH_DEADLINE_S`` however the server behaves (accepts and never
  answers, trickles bytes): at the deadline its socket is shut down.  Connect, headers
  and body share that one deadline; answers over ``MAX_BYTES`` are refused.
- :func:`fetch_all` fetches every URL of a config folder at the same time, so one slow
  server never delays another project (and a page waits at most one deadline).
- Each good answer is kept, private to the owner, in ``<VSS_DATA_DIR>/.config-cache/``.
  When the remote cannot be fetched, the kept copy is used and :class:`Remote` says so in
  ``notice`` (the sidebar shows it); with no kept copy the project fails with a ConfigError.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from vss_core.files.paths import atomic_write

FETCH_DEADLINE_S = 5.0
MAX_BYTES = 1_000_000
CACHE_FOLDER = ".config-cache"
_CHUNK = 65536


class RemoteError(Exception):
    """A config_url could not be fetched or used; the message says why (no file or key)."""


@dataclass(frozen=True)
class Remote:
    """The mapping a ``config_url`` gave (or its kept copy, with a ``notice``), or the ``error``."""

    data: dict | None = None
    notice: str | None = None
    error: str | None = None


def fetch_all(urls: dict, data_dir: Path, deadline_s: float | None = None) -> dict:
    """``{key: url}`` -> ``{key: Remote}``, every URL fetched at once, all done by the deadline."""
    deadline_s = FETCH_DEADLINE_S if deadline_s is None else deadline_s
    if not urls:
        return {}
    watches = {key: _Watch() for key in urls}
    pool = ThreadPoolExecutor(max_workers=min(16, len(urls)), thread_name_prefix="vss-config-url")
    try:
        end = time.monotonic() + deadline_s + 1.0
        futures = {key: pool.submit(_fetch_yaml, url, watches[key], deadline_s) for key, url in urls.items()}
        timer = threading.Timer(deadline_s, lambda: [w.expire() for w in watches.values()])
        timer.daemon = True
        timer.start()
        results = {}
        for key, future in futures.items():
            try:
                results[key] = _keep(urls[key], future.result(timeout=max(0.0, end - time.monotonic())), data_dir)
            except (RemoteError, FutureTimeout) as exc:
                reason = str(exc) if isinstance(exc, RemoteError) else _late(urls[key], deadline_s)
                watches[key].expire()
                results[key] = _kept_copy(urls[key], reason, data_dir)
        timer.cancel()
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class _Watch:
    """The sockets of one fetch; ``expire`` shuts them down (and any opened later)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _opener(watch: _Watch) -> urllib.request.OpenerDirector:
    class Conn(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            watch.add(self.sock)

    class SecureConn(http.client.HTTPSConnection):
        def connect(self):
            super().connect()
            watch.add(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Conn, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(SecureConn, req, context=self._context)

    return urllib.request.build_opener(Handler, SecureHandler)


def _fetch_yaml(url: str, watch: _Watch, deadline_s: float) -> tuple[dict, str]:
    try:
        with _opener(watch).open(url, timeout=deadline_s) as response:
            chunks, size = [], 0
            while chunk := response.read1(_CHUNK):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise RemoteError(f"{url} answered with more than {MAX_BYTES:,} bytes")
                chunks.append(chunk)
        if watch.expired:
            raise RemoteError(_late(url, deadline_s))
    except RemoteError:
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        if watch.expired or isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
            raise RemoteError(_late(url, deadline_s)) from None
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
            getattr(exc, "reason", exc)
        raise RemoteError(f"cannot fetch {url}: {reason}") from None
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return parse_mapping(text, url), text


def _late(url: str, deadline_s: float) -> str:
    return f"cannot fetch {url}: no complete answer within the deadline ({deadline_s:g} s)"


def parse_mapping(text: str, what: str) -> dict:
    """A YAML mapping from ``text``; ``RemoteError`` naming ``what`` otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RemoteError(f"{what} is not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    except RecursionError:
        raise RemoteError(f"{what} is not usable YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise RemoteError(f"{what} did not return a YAML mapping")
    return data


def _cache_path(url: str, data_dir: Path) -> Path:
    return Path(data_dir) / CACHE_FOLDER / f"{hashlib.sha1(url.encode()).hexdigest()[:20]}.yaml"


def _keep(url: str, fetched: tuple[dict, str], data_dir: Path) -> Remote:
    data, text = fetched
    path = _cache_path(url, data_dir)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, text)
    except OSError:
        pass  # a config that cannot be kept still works now
    return Remote(data=data)


def _kept_copy(url: str, reason: str, data_dir: Path) -> Remote:
    path = _cache_path(url, data_dir)
    try:
        text = path.read_text(encoding="utf-8")
        saved = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        data = parse_mapping(text, f"the kept copy of {url}")
    except (OSError, UnicodeDecodeError, RemoteError):
        return Remote(error=reason)
    return Remote(data=data, notice=f"{reason}; using the copy kept from {saved}")
