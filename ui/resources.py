"""Process-wide resources, one per server and shared by every browser session.

``st.cache_resource`` hands the same object to all sessions and threads, so
everything cached here is thread-safe: the :class:`Embedder` (documented as
such), redis-py clients (a connection pool), the :class:`JobRegistry` and the
small locked caches below.  Each factory is keyed by what identifies the
resource -- the model and device, the Redis target -- never by a session.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import streamlit as st

from ui.lru import LRU
from vss_core.config import ProjectConfig, ProjectSet, load_projects
from vss_core.jobs import JobRegistry

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
    from vss_core import model_cache
    from vss_core.embedder import Embedder

    return Embedder(model, device=device, batch_size=batch_size, cache_dir=model_cache.default_dir())


def embedder_for(project: ProjectConfig):
    return embedder(project.model, project.device, project.batch_size)


def target_key(project: ProjectConfig) -> tuple:
    """What identifies a project's Redis index: host, port or socket, index and prefix."""
    r = project.redis
    return (r.host, r.port, str(r.socket_path or ""), r.index, r.prefix)


@st.cache_resource(show_spinner=False, max_entries=16)
def _client(key: tuple, _project: ProjectConfig):
    from vss_core.redis_server import connect

    return connect(_project)


def client_for(project: ProjectConfig):
    """One redis client (connection pool) per target; starts an embedded server if needed."""
    return _client(target_key(project), project)


@st.cache_resource(show_spinner="Opening the vector index…", max_entries=16)
def _store(key: tuple, dim: int, algorithm: str, _project: ProjectConfig):
    from vss_core.store import open_store

    return open_store(_project, dim)


def store_for(project: ProjectConfig, dim: int):
    """One VectorStore per (target, dimension), created or attached with the project's algorithm."""
    key = target_key(project)
    _opened_on(key, (_store, (key, dim, project.index_algorithm)))
    return _store(key, dim, project.index_algorithm, project)


@st.cache_resource(show_spinner=False)
def _opened() -> tuple[dict, threading.Lock]:
    """Target key -> the (cached factory, its hashed arguments) made on that target, and its lock."""
    return {}, threading.Lock()


def _opened_on(key: tuple, entry: tuple) -> None:
    made, lock = _opened()
    with lock:
        made.setdefault(key, set()).add(entry)


def forget_target(project: ProjectConfig) -> None:
    """Drop this project's cached client, stores and pools (after its server went away) so its
    next call reconnects; other projects keep theirs."""
    key = target_key(project)
    _client.clear(key, project)
    made, lock = _opened()
    with lock:
        opened = made.pop(key, set())
    for factory, args in opened:
        factory.clear(*args, project)


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
def _decisions(key: tuple, dim: int, _project: ProjectConfig):
    from vss_core.decisions import open_decisions

    return open_decisions(_project, dim)


def decisions_for(project: ProjectConfig, dim: int):
    """One Decisions (exemplar store, pool, audit) per (target, dimension), shared by all sessions."""
    key = target_key(project)
    _opened_on(key, (_decisions, (key + (project.promote,), dim)))
    return _decisions(key + (project.promote,), dim, project)
