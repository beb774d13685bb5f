"""Process-wide resources, one per server and shared by every browser session.

``st.cache_resource`` hands the same object to all sessions and threads, so
everything cached here is thread-safe: the :class:`Embedder` (documented as
such), redis-py clients (a connection pool), the :class:`JobRegistry` and the
small locked caches below.  Each factory is keyed by what identifies the
resource -- the model and device, the Redis target -- never by a session.

A target's client is checked on every use (``validate``: dropped once its Redis no longer
accepts connections, so the next use reconnects), the stores and pools opened over it are keyed
by it, and whatever the cache drops or evicts has its connections closed (``on_release``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import streamlit as st

from ui.lru import LRU
from vss_core.config.projects import ProjectConfig, ProjectSet, load_projects
from vss_core.jobs.registry import JobRegistry

PROJECTS_TTL_S = 30


@st.cache_resource(show_spinner=False)
def job_registry() -> JobRegistry:
    """The one job registry of this server: a reload or a second tab sees the same jobs, and
    through each project's Redis (its job board) so do other processes such as the REST API."""
    return JobRegistry(boards=_board_client)


def _board_client(name: str):
    project = projects().projects.get(name)
    return client_for(project) if project is not None else None


@st.cache_resource(ttl=PROJECTS_TTL_S, show_spinner=False)
def _projects(config_path: str, data_dir: str, batch_size: str) -> ProjectSet:
    return load_projects()


def projects() -> ProjectSet:
    """Every project of the config folder (re-read every 30 s), with one error per bad file."""
    env = os.environ
    return _projects(env.get("CONFIG_PATH", ""), env.get("VSS_DATA_DIR", ""), env.get("BATCH_SIZE", ""))


def reload_projects() -> None:
    _projects.clear()


@st.cache_resource(show_spinner="Loading the embedding model…", max_entries=4)
def embedder(model: str, device: str, batch_size: int):
    """One Embedder per (model, device, batch size), shared by all sessions."""
    from vss_core.embed import model_cache
    from vss_core.embed.embedder import Embedder

    return Embedder(model, device=device, batch_size=batch_size, cache_dir=model_cache.default_dir())


def embedder_for(project: ProjectConfig):
    return embedder(project.model, project.device, project.batch_size)


def target_key(project: ProjectConfig) -> tuple:
    """What identifies a project's Redis index: host, port or socket, index and prefix."""
    r = project.redis
    return (r.host, r.port, str(r.socket_path or ""), r.index, r.prefix)


PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class _Connection:
    """A target's cached client; the stores opened while it is the target's are cached under its token."""

    client: Any
    token: str


def _disconnect(*clients) -> None:
    """Close the idle connections of ``clients``; whoever still holds one reconnects on its next command."""
    for client in clients:
        with contextlib.suppress(redis.RedisError, OSError):
            client.connection_pool.disconnect(inuse_connections=False)


def _accepts(client) -> bool:
    """Whether the client's Redis accepts a connection within PROBE_TIMEOUT_S (a busy one does)."""
    where = client.connection_pool.connection_kwargs
    try:
        if "path" in where:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(PROBE_TIMEOUT_S)
                probe.connect(where["path"])
        else:
            socket.create_connection((where["host"], where["port"]), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _still_there(connection: _Connection) -> bool:
    """``validate`` of the cached clients: drop one whose Redis is gone, so the next call reconnects
    (or says why it cannot).  Streamlit drops it without ``on_release``, so close it here."""
    if _accepts(connection.client):
        return True
    _disconnect(connection.client)
    return False


@st.cache_resource(show_spinner=False, max_entries=16, validate=_still_there,
                   on_release=lambda connection: _disconnect(connection.client))
def _connection(key: tuple, _project: ProjectConfig) -> _Connection:
    from vss_core.redis.server import connect

    return _Connection(connect(_project), uuid.uuid4().hex)


def client_for(project: ProjectConfig):
    """One redis client (connection pool) per target, checked on each use; starts an embedded server
    if needed."""
    return _connection(target_key(project), project).client


@st.cache_resource(show_spinner="Opening the vector index…", max_entries=16, on_release=lambda s: s.close())
def _stores(key: tuple, dim: int, algorithm: str, connection: str, _project: ProjectConfig):
    from vss_core.redis.project import open_project

    return open_project(_project, dim, client=client_for(_project))


def stores_for(project: ProjectConfig, dim: int):
    """One ProjectStores per (target, dimension), created or attached with the project's algorithm; new ones
    after the target's client was dropped (the old ones are closed when the cache evicts them)."""
    key = target_key(project)
    return _stores(key, dim, project.index_algorithm, _connection(key, project).token, project)


def store_for(project: ProjectConfig, dim: int):
    """The project's exemplar store (of :func:`stores_for`)."""
    return stores_for(project, dim).exemplars


def forget_target(project: ProjectConfig) -> None:
    """Drop this project's client (closing it), so its next call reconnects and opens new stores and
    pools; other projects keep theirs."""
    _connection.clear(target_key(project), project)


class ResultsCache:
    """Recent search results by id, so a session keeps only an id in its state."""

    def __init__(self, max_items: int = 32):
        self._items = LRU(max_items)

    def put(self, value: Any) -> str:
        key = uuid.uuid4().hex
        self._items.put(key, value)
        return key

    def get(self, key: str | None) -> Any:
        return self._items.get(key) if key else None


@st.cache_resource(show_spinner=False)
def results_cache() -> ResultsCache:
    return ResultsCache()


@st.cache_resource(show_spinner="Opening the review pool…", max_entries=16)
def _decisions(key: tuple, dim: int, connection: str, promote: bool, _stores):
    from vss_core.labeling.decisions import Decisions

    return Decisions.of(_stores, promote)


def decisions_for(project: ProjectConfig, dim: int):
    """One Decisions (exemplar store, pool, audit) per (target, dimension), over :func:`stores_for`'s stores."""
    key = target_key(project)
    stores = stores_for(project, dim)
    return _decisions(key + (project.index_algorithm,), dim, _connection(key, project).token, project.promote, stores)
