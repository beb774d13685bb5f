"""Vectors of labeled exemplars in Redis, in fastapi-vss's layout.

An FT index (``index``) over HASH keys ``doc:<label>:<id>`` with ``vector`` (FLOAT32,
COSINE) and ``tag`` (TAG, the label), as fastapi-vss writes them; we add ``label``,
``source``, ``added_by``, ``added_at`` and ``model``.  Indexes we create use an
unlikely TAG separator (0x1f) and CASESENSITIVE; indexes made by fastapi-vss (``,``,
case-insensitive) work too: tag queries only narrow, labels are compared exactly.

Batch KNN is one pipeline of raw ``FT.SEARCH ... KNN`` (DIALECT 2), not redisvl: at
20k x 768, 32 queries, redisvl's ``batch_query`` was no faster than the raw pipeline
(FLAT ~77 vs ~73 ms, HNSW ~10 vs ~9 ms) and needs per-query objects built from lists.
Every query carries ``TIMEOUT`` (60 s by default); an answer with fewer hits than
``min(k, documents)`` (checked atomically against FT.INFO) raises ``SearchIncomplete``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np
import redis

from .errors import IndexMismatch, SearchIncomplete, VSSError
from .index_layout import (TAG_SEPARATOR, IndexLayout, as_pairs, as_text, create_index, escape_tag, exchange,
                           guard, is_missing_index, read_layout, resp2, value_after)

DEFAULT_TIMEOUT_MS = 60_000
_DIST = "__dist"
_PAGE = 10_000
_BATCH = 256
_EXEMPLAR_FIELDS = ("label", "tag", "source", "added_by", "added_at", "model")


@dataclass(frozen=True)
class Record:
    """One exemplar to store."""

    label: str
    id: str
    vector: Any
    source: str = ""
    added_by: str = ""
    model: str = ""


@dataclass(frozen=True)
class Neighbor:
    """One KNN hit; ``score`` is the cosine similarity (1 - distance)."""

    key: str
    label: str
    id: str
    score: float
    source: str


@dataclass(frozen=True)
class Exemplar:
    """One stored exemplar as listed for people."""

    key: str
    label: str
    id: str
    source: str
    added_by: str
    added_at: str
    model: str


@dataclass(frozen=True)
class IndexInfo:
    """What the index holds; ``dim`` and ``algorithm`` are None when it does not exist."""

    name: str
    dim: int | None
    algorithm: str | None
    count: int


class VectorStore:
    """The exemplars of one project in one Redis FT index."""

    def __init__(self, client: redis.Redis, index_name: str = "index", prefix: str = "doc:",
                 timeout_ms: int = DEFAULT_TIMEOUT_MS):
        self.client = resp2(client)
        self.index_name = index_name
        self.prefix = prefix
        self.timeout_ms = timeout_ms
        self._cached: IndexLayout | None = None

    def key_for(self, label: str, id: str) -> str:
        """Redis key of exemplar ``id`` under ``label``."""
        return f"{self.prefix}{label}:{id}"

    def split_key(self, key: str) -> tuple[str, str]:
        """(label, id) parsed from a key; the id is what follows the last ':'."""
        body = key[len(self.prefix):] if key.startswith(self.prefix) else key
        label, _, id = body.rpartition(":")
        return label, id

    @guard
    def ensure_index(self, dim: int, algorithm: str = "FLAT", hnsw: dict | None = None) -> IndexInfo:
        """Create the index, or attach to the existing one; ``IndexMismatch`` if its layout differs."""
        layout = self._read_layout()
        if layout is None:
            self._create(dim, algorithm.upper(), hnsw or {})
            layout = self._read_layout()
        where = f"Redis index '{self.index_name}'"
        if layout.dim is None:
            raise IndexMismatch(f"{where} has no 'vector' field")
        if layout.dim != dim:
            raise IndexMismatch(f"{where} holds {layout.dim}-dimensional vectors but the model "
                                f"produces {dim}-dimensional ones; use another index or the model it was built with")
        if layout.metric != "COSINE" or layout.data_type != "FLOAT32":
            raise IndexMismatch(f"{where} uses {layout.data_type}/{layout.metric}, expected FLOAT32/COSINE")
        return self.info()

    @guard
    def info(self) -> IndexInfo:
        """Name, dimension, algorithm and number of documents of the index."""
        layout = self._read_layout() or IndexLayout(None, None, "", "", "", False, 0)
        return IndexInfo(self.index_name, layout.dim, layout.algorithm, layout.count)

    @guard
    def add(self, records: Iterable[Record]) -> int:
        """Write ``records`` (one socket write per 256); an existing key is overwritten. Returns how many."""
        dim = self._layout().dim
        added_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        count, chunk = 0, []
        for record in records:
            chunk.append(self._hset(record, dim, added_at))
            count += 1
            if len(chunk) == _BATCH:
                self._write(chunk)
                chunk = []
        if chunk:
            self._write(chunk)
        return count

    def _write(self, commands: list[tuple]) -> None:
        for reply in self._send_all(commands):
            if isinstance(reply, Exception):
                raise VSSError(f"writing to Redis index '{self.index_name}' failed: {reply}")

    def _send_all(self, commands: list[tuple]) -> list:
        """Send ``commands`` in one socket write and read every reply (error replies as exceptions).

        redis-py's pipeline writes every ~6 KB, i.e. every command or two with 768-d vectors;
        one write per batch is what makes bulk insert and batch KNN fast.
        """
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            return connection.retry.call_with_retry(lambda: exchange(connection, commands),
                                                    lambda error: connection.disconnect())
        except BaseException:
            connection.disconnect()  # unread replies must not reach the connection's next user
            raise
        finally:
            pool.release(connection)

    @guard
    def sync(self, timeout_ms: int = 10_000) -> bool:
        """Wait until this client's writes are fsynced to the server's AOF (WAITAOF, up to a
        second with ``everysec``); False where the server has no AOF or it took too long."""
        try:
            return bool(self.client.execute_command("WAITAOF", 1, 0, timeout_ms)[0])
        except redis.ResponseError:
            return False

    def _hset(self, record: Record, dim: int | None, added_at: str) -> tuple:
        if not record.label.strip():
            raise VSSError(f"{record.source or record.id}: empty label")
        vector = np.asarray(record.vector, dtype=np.float32).ravel()
        if dim is not None and vector.size != dim:
            raise IndexMismatch(f"Redis index '{self.index_name}' holds {dim}-dimensional vectors, "
                                f"got a {vector.size}-dimensional one for {record.source or record.id}")
        return ("HSET", self.key_for(record.label, record.id), "vector", vector.tobytes(),
                "tag", record.label, "label", record.label, "source", record.source,
                "added_by", record.added_by, "added_at", added_at, "model", record.model)

    @guard
    def exists(self, keys: Sequence[str]) -> list[bool]:
        """Whether each key is stored."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(n) for n in pipe.execute()] if keys else []

    @guard
    def knn(self, vectors, k: int) -> list[list[Neighbor]]:
        """The ``k`` nearest exemplars of each row of ``vectors``, best first.

        Complete or ``SearchIncomplete``: each answer has ``min(k, documents)`` hits."""
        queries = np.asarray(vectors, dtype=np.float32)
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
        dim = self._layout().dim
        if len(queries) and dim is not None and queries.shape[1] != dim:
            raise IndexMismatch(f"Redis index '{self.index_name}' holds {dim}-dimensional vectors, "
                                f"got {queries.shape[1]}-dimensional queries")
        results: list[list[Neighbor]] = []
        for start in range(0, len(queries), _BATCH):
            results += self._knn_batch(queries[start:start + _BATCH], k)
        return results

    def _knn_batch(self, queries: np.ndarray, k: int) -> list[list[Neighbor]]:
        replies = self._send_all([self._knn_command(vector, k) for vector in queries])
        results = [self._hits(reply) for reply in self._checked(replies)]
        short = [i for i, hits in enumerate(results) if len(hits) < k]
        if short:
            self._recheck(queries, short, k, results)
        return results

    def _recheck(self, queries: np.ndarray, short: list[int], k: int, results: list) -> None:
        """Ask the short answers again with the document count, atomically, and compare."""
        pipe = self.client.pipeline(transaction=True)
        pipe.execute_command("FT.INFO", self.index_name)
        for i in short:
            pipe.execute_command(*self._knn_command(queries[i], k))
        info, *replies = self._checked(pipe.execute(raise_on_error=False))
        expected = min(k, int(value_after(info, "num_docs", 0)))
        for i, reply in zip(short, replies):
            results[i] = self._hits(reply)
            if len(results[i]) < expected:
                raise SearchIncomplete(f"KNN search in index '{self.index_name}' returned {len(results[i])} "
                                       f"of {expected} neighbors (server timeout?)")

    def _knn_command(self, vector: np.ndarray, k: int) -> tuple:
        return ("FT.SEARCH", self.index_name, f"*=>[KNN {k} @vector $vec AS {_DIST}]",
                "PARAMS", 2, "vec", vector.tobytes(), "SORTBY", _DIST, "ASC",
                "RETURN", 4, _DIST, "label", "tag", "source", "LIMIT", 0, k,
                "TIMEOUT", self.timeout_ms, "DIALECT", 2)

    def _checked(self, replies: list) -> list:
        for reply in replies:
            if isinstance(reply, Exception):
                raise SearchIncomplete(f"KNN search in index '{self.index_name}' failed: {reply}")
        return replies

    def _hits(self, reply: list) -> list[Neighbor]:
        hits = []
        skip = len(self.prefix)
        for raw_key, flat in zip(reply[1::2], reply[2::2]):
            fields = dict(zip(flat[::2], flat[1::2]))
            key = raw_key.decode("utf-8", "replace")
            label, _, id = key[skip:].rpartition(":")
            stored = fields.get(b"label") or fields.get(b"tag")
            source = fields.get(b"source")
            hits.append(Neighbor(key, stored.decode("utf-8", "replace") if stored else label, id,
                                 1.0 - float(fields[_DIST.encode()]),
                                 source.decode("utf-8", "replace") if source else ""))
        return hits

    def _label_id(self, key: str, fields: dict[str, str]) -> tuple[str, str]:
        label, id = self.split_key(key)
        return fields.get("label") or fields.get("tag") or label, id

    @guard
    def label_counts(self) -> dict[str, int]:
        """Number of exemplars per label (exact labels, whatever the TAG separator)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.execute_command("FT.AGGREGATE", self.index_name, "*", "LOAD", 2, "@label", "@tag",
                             "GROUPBY", 2, "@label", "@tag", "REDUCE", "COUNT", 0, "AS", "n",
                             "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        pipe.execute_command("FT.INFO", self.index_name)
        groups, info = pipe.execute(raise_on_error=False)
        if isinstance(groups, Exception) and is_missing_index(groups):
            return {}
        if isinstance(groups, Exception) or isinstance(info, Exception):
            raise SearchIncomplete(f"counting labels in index '{self.index_name}' failed: {groups}")
        counts: dict[str, int] = {}
        for row in map(as_pairs, groups[1:]):
            label = row.get("label") or row.get("tag")
            if label:
                counts[label] = counts.get(label, 0) + int(row["n"])
            else:
                for key in self._unlabeled_keys():
                    name = self.split_key(key)[0]
                    counts[name] = counts.get(name, 0) + 1
        total = int(value_after(info, "num_docs", 0))
        if sum(counts.values()) != total:
            raise SearchIncomplete(f"counting labels in index '{self.index_name}' saw "
                                   f"{sum(counts.values())} of {total} documents (server timeout?)")
        return counts

    def _unlabeled_keys(self) -> list[str]:
        reply = self.client.execute_command(
            "FT.AGGREGATE", self.index_name, "*", "LOAD", 3, "@__key", "@label", "@tag",
            "FILTER", "!exists(@label) && !exists(@tag)", "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        return [as_pairs(row)["__key"] for row in reply[1:]]

    @guard
    def delete_label(self, label: str) -> int:
        """Delete every exemplar of ``label``; returns how many."""
        keys = self._keys_of(label)
        deleted = 0
        for start in range(0, len(keys), _PAGE):
            deleted += self.client.delete(*keys[start:start + _PAGE])
        return deleted

    @guard
    def delete(self, key: str) -> bool:
        """Delete one exemplar; False when it was not there."""
        return bool(self.client.delete(key))

    @guard
    def relabel(self, key: str, new_label: str) -> str:
        """Move exemplar ``key`` to ``new_label`` (key ``doc:<new>:<id>``); returns the new key."""
        if not new_label.strip():
            raise VSSError(f"{key}: empty label")
        new_key = self.key_for(new_label, self.split_key(key)[1])
        try:
            if new_key != key:
                self.client.rename(key, new_key)
        except redis.ResponseError as exc:
            raise VSSError(f"cannot relabel {key}: {exc}") from exc
        self.client.hset(new_key, mapping={"tag": new_label, "label": new_label})
        return new_key

    @guard
    def exemplars(self, label: str, offset: int = 0, limit: int = 50) -> list[Exemplar]:
        """One page of the exemplars of ``label`` with source, added_by, added_at and model."""
        if self._exact(label):
            reply = self._search(self._tag_query(label), "NOCONTENT", "LIMIT", offset, limit)
            keys = [as_text(key) for key in reply[1:]]
        else:
            keys = self._keys_of(label)[offset:offset + limit]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, _EXEMPLAR_FIELDS)
        found = []
        for key, values in zip(keys, pipe.execute() if keys else []):
            fields = dict(zip(_EXEMPLAR_FIELDS, map(as_text, values)))
            found.append(Exemplar(key, *self._label_id(key, fields), fields["source"],
                                  fields["added_by"], fields["added_at"], fields["model"]))
        return found

    def _keys_of(self, label: str) -> list[str]:
        query, keys, offset = self._tag_query(label), [], 0
        while True:
            reply = self._search(query, "RETURN", 2, "label", "tag", "LIMIT", offset, _PAGE)
            for i in range(1, len(reply) - 1, 2):
                key = as_text(reply[i])
                if self._label_id(key, as_pairs(reply[i + 1]))[0] == label:
                    keys.append(key)
            if len(reply) // 2 < _PAGE:
                break
            offset += _PAGE
        if not self._exact(label):
            keys += [key for key in self._unlabeled_keys() if self.split_key(key)[0] == label]
        return keys

    def _search(self, query: str, *args) -> list:
        try:
            return self.client.execute_command("FT.SEARCH", self.index_name, query, *args,
                                               "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        except redis.ResponseError as exc:
            if is_missing_index(exc):
                return [0]
            raise SearchIncomplete(f"search in index '{self.index_name}' failed: {exc}") from exc

    def _tag_query(self, label: str) -> str:
        parts = [part.strip() for part in label.split(self._layout().separator)]
        return " ".join(f"@tag:{{{escape_tag(part)}}}" for part in parts if part) or "*"

    def _exact(self, label: str) -> bool:
        layout = self._layout()
        return layout.case_sensitive and layout.separator not in label and label == label.strip() != ""

    def _layout(self) -> IndexLayout:
        return self._cached or self._read_layout() or IndexLayout(None, None, "", "", TAG_SEPARATOR, True, 0)

    def _read_layout(self) -> IndexLayout | None:
        layout = read_layout(self.client, self.index_name)
        if layout is not None:
            self._cached = layout
        return layout

    def _create(self, dim: int, algorithm: str, hnsw: dict) -> None:
        create_index(self.client, self.index_name, self.prefix, dim, algorithm, hnsw)


def connect_store(project) -> VectorStore:
    """The store of ``project`` without creating its index (for listing and statistics)."""
    from .redis_server import connect

    target = project.redis
    return VectorStore(connect(project), getattr(target, "index", "index"), getattr(target, "prefix", "doc:"))


def open_store(project, dim: int) -> VectorStore:
    """Connect to ``project``'s Redis and create or attach its index for ``dim``-dimensional vectors."""
    store = connect_store(project)
    store.ensure_index(dim, getattr(project, "index_algorithm", "FLAT"), getattr(project, "hnsw", None))
    return store
