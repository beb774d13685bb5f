"""One project's Redis as the engine uses it: the connection, its layout, the exemplar index and the pool.

:func:`open_project` is the one way the app (``ui.resources``), the REST service, the CLI and the RQ
workers open a project's stores; everything above them (decisions, mining, jobs) takes the
:class:`ProjectStores` it returns.
"""

from __future__ import annotations

import threading

import redis

from vss_core.redis.exemplars import VectorStore, open_store
from vss_core.redis.pool import PoolStore
from vss_core.redis.schema import ProjectLayout, layout_for

__all__ = ["ProjectStores", "open_project"]


class ProjectStores:
    """A project's client, layout and exemplar store, and its review pool (``pool``, or created or attached
    on first use for ``dim``-d vectors of ``model``: the REST service, which never reviews, does not add a
    pool index to a fastapi-vss database).  Thread-safe: one instance is shared by every session of the app."""

    def __init__(self, client: redis.Redis, layout: ProjectLayout, exemplars: VectorStore, pool: PoolStore | None = None,
                 dim: int | None = None, model: str | None = None):
        self.client = client
        self.layout = layout
        self.exemplars = exemplars
        self.dim, self.model = dim, model
        self._pool = pool
        self._lock = threading.Lock()

    @property
    def pool(self) -> PoolStore:
        """The pool index (created for ``dim``-d vectors of ``model`` if missing)."""
        with self._lock:
            if self._pool is None:
                pool = PoolStore(self.client, self.layout.pool)
                pool.ensure_index(self.dim, self.model)
                self._pool = pool
            return self._pool

    def close(self) -> None:
        """Close the idle connections (whoever still holds the client reconnects on its next command)."""
        self.client.connection_pool.disconnect(inuse_connections=False)


def open_project(project, dim: int, model: str | None = None, client: redis.Redis | None = None) -> ProjectStores:
    """Open ``project``'s stores for ``dim``-d vectors of ``model`` (default: the project's) on ``client``
    (default: a new connection; an embedded Redis is started): the exemplar index is created or attached
    now (``IndexMismatch`` when it records another model or dimension), the pool on first use."""
    from vss_core.redis.server import connect

    client = client or connect(project)
    model = model or project.model
    return ProjectStores(client, layout_for(project), open_store(project, dim, model, client=client), dim=dim, model=model)
