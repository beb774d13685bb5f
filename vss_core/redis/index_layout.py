"""Low-level RediSearch helpers: index layout (FT.INFO, FT.CREATE), batched sends, reply parsing, errors."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Sequence

import redis

from vss_core.errors import IndexMismatch, RedisUnavailable, VSSError
from vss_core.redis.schema import LABEL, TAG, TAG_SEPARATOR, VECTOR, IndexSchema


@dataclass(frozen=True)
class IndexLayout:
    """What FT.INFO says of the vector field and the label's TAG field (``label``, else ``tag``)."""

    dim: int | None
    algorithm: str | None
    metric: str
    data_type: str
    separator: str
    case_sensitive: bool
    count: int
    fields: tuple[str, ...] = ()


def as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def value_after(items: Sequence, name: str, default: Any = None) -> Any:
    for i, item in enumerate(items[:-1]):
        if as_text(item) == name:
            return items[i + 1]
    return default


def as_pairs(flat: Sequence) -> dict[str, str]:
    return {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


_TAG_SPECIAL = re.compile(r"([\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f\s])")


def escape_tag(text: str) -> str:
    """A tag value for a ``@field:{...}`` query: ASCII punctuation and every space escaped.

    Non-ASCII characters (en dash, emoji, CJK) go through as they are: escaping them, as
    ``re.escape``-style ``\\W`` does, makes queries that match nothing."""
    return _TAG_SPECIAL.sub(r"\\\1", text)


def glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def is_missing_index(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unknown index" in text or "no such index" in text


def read_layout(client: redis.Redis, index_name: str) -> IndexLayout | None:
    try:
        info = client.execute_command("FT.INFO", index_name)
    except redis.ResponseError as exc:
        if is_missing_index(exc):
            return None
        raise
    attributes = value_after(info, "attributes", [])
    vector = next((a for a in attributes if as_text(value_after(a, "attribute")) == VECTOR), [])
    named = {as_text(value_after(a, "attribute")): a for a in attributes}
    tag = named.get(LABEL) or named.get(TAG) or []
    dim = value_after(vector, "dim")
    layout = IndexLayout(
        dim=int(dim) if dim is not None else None,
        algorithm=as_text(value_after(vector, "algorithm")) or None,
        metric=as_text(value_after(vector, "distance_metric")).upper(),
        data_type=as_text(value_after(vector, "data_type")).upper(),
        separator=as_text(value_after(tag, "SEPARATOR", ",")) or ",",
        case_sensitive=any(as_text(item) == "CASESENSITIVE" for item in tag),
        count=int(value_after(info, "num_docs", 0)),
        fields=tuple(as_text(value_after(a, "attribute")) for a in attributes))
    return layout


def create_index(client: redis.Redis, schema: IndexSchema, dim: int) -> None:
    """``FT.CREATE`` of ``schema`` for ``dim``-dimensional vectors; an existing index is left as it is."""
    try:
        client.execute_command("FT.CREATE", *schema.create_args(dim))
    except redis.ResponseError as exc:
        if "already exists" not in str(exc).lower():
            raise IndexMismatch(f"cannot create Redis index '{schema.name}': {exc}") from exc


def add_missing_fields(client: redis.Redis, schema: IndexSchema, present: tuple[str, ...]) -> None:
    """``FT.ALTER ... SCHEMA ADD`` the indexed fields of ``schema`` that an older index of ours lacks."""
    for name in schema.indexed():
        if name not in present:
            client.execute_command("FT.ALTER", schema.name, "SCHEMA", "ADD", *schema.field_args(name))


def guard(method):
    """Turn redis-py errors of a VectorStore method into RedisUnavailable / VSSError naming the index."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Redis of index '{self.index_name}' is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise VSSError(f"Redis error on index '{self.index_name}': {exc}") from exc
    return wrapper


def resp2(client: redis.Redis) -> redis.Redis:
    """The client itself when it speaks RESP2, else a RESP2 client on the same connection settings."""
    pool = client.connection_pool
    if str(pool.connection_kwargs.get("protocol")) == "2":
        return client
    kwargs = {**pool.connection_kwargs, "protocol": 2}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def exchange(connection, commands: list[tuple]) -> list:
    """Send ``commands`` in one socket write and read every reply (error replies as exceptions)."""
    connection.send_packed_command([b"".join(connection.pack_commands(commands))])
    replies = []
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies
