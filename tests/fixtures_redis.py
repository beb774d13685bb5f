"""Pytest fixtures: one embedded Redis (with search) per test session, clean per test.

- ``redis_data_dir`` (session): the tmp data dir of the session server.
- ``embedded_redis`` (session): the started :class:`EmbeddedRedis`; stopped at the end.
- ``redis_socket_dir``: alias of ``redis_data_dir`` (where ``redis.sock`` lives).
- ``redis_client`` / ``store_client`` (function): a RESP2 client after FLUSHALL (keys and indexes gone).
- ``redis_project`` (function): a ProjectConfig on the session server (host "embedded").
- ``vector_store`` (function): a :class:`VectorStore` on a clean server (index not created yet).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def redis_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("redis")


@pytest.fixture(scope="session")
def embedded_redis(redis_data_dir):
    from vss_core.redis.server import embedded_server

    server = embedded_server(redis_data_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_socket_dir(redis_data_dir, embedded_redis) -> Path:
    return redis_data_dir


@pytest.fixture
def redis_client(embedded_redis):
    client = embedded_redis.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def store_client(redis_client):
    return redis_client


def make_project(data_dir: Path, name: str = "test", model: str = "test-model", **redis_fields):
    """A real ProjectConfig on the embedded server of ``data_dir`` (or the target ``redis_fields`` name)."""
    from vss_core.config.projects import ProjectConfig, RedisTarget, embedded_socket_path

    fields = dict(host="embedded", port=None, password=None, index="index", prefix="doc:")
    fields.update(redis_fields)
    if fields["host"] == "embedded":
        fields["socket_path"] = embedded_socket_path(Path(data_dir))
    return ProjectConfig(name=name, model=model, source_file=Path(data_dir) / f"{name}.yaml",
                         redis=RedisTarget(**fields), data_dir=Path(data_dir), batch_size=8,
                         output_path=str(Path(data_dir) / "output"),
                         hnsw={"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 10}, device="cpu")


@pytest.fixture
def redis_project(redis_data_dir, redis_client):
    return make_project(redis_data_dir)


@pytest.fixture
def vector_store(redis_client):
    from vss_core.redis.exemplars import VectorStore

    return VectorStore(redis_client)
