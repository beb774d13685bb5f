"""One RediSearch vector index described by an :class:`~vss_core.redis.schema.IndexSchema`.

:class:`SearchIndex` is what the exemplar store and the pool share: create or attach (checking
dimension, metric and the recorded model), batched writes in one socket write, complete batch KNN,
searches with a timeout.  Every query carries ``TIMEOUT`` (60 s by default); a KNN answer with fewer
hits than ``min(k, documents)`` (checked atomically against FT.INFO) raises ``SearchIncomplete``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import redis

from vss_core.errors import IndexMismatch, SearchIncomplete, VSSError
from vss_core.redis.index_layout import (
    IndexLayout, add_missing_fields, as_text, create_index, exchange, glob_escape, guard, is_missing_index, read_layout,
    resp2, value_after)
from vss_core.redis.schema import DATA_TYPE, LABEL, METRIC, TAG_SEPARATOR, VECTOR, IndexSchema

DEFAULT_TIMEOUT_MS = 60_000
DIST = "__dist"
BATCH = 256
SCAN_BATCH = 1000
SCAN_PASSES = 2  # a filtered scan that saw fewer than the query matches reads the cursor once more
CURSOR_IDLE_MS = 300_000  # the search module's default CURSOR_MAX_IDLE


@dataclass(frozen=True)
class Neighbor:
    """One KNN hit; ``score`` is the cosine similarity (1 - distance)."""

    key: str
    label: str
    id: str
    score: float
    source: str


@dataclass(frozen=True)
class IndexInfo:
    """What the index holds; ``dim`` and ``algorithm`` are None when it does not exist."""

    name: str
    dim: int | None
    algorithm: str | None
    count: int
    model: str | None = None


class SearchIndex:
    """A vector index of one schema in one Redis."""

    def __init__(self, client: redis.Redis, schema: IndexSchema, timeout_ms: int = DEFAULT_TIMEOUT_MS):
        self.client = resp2(client)
        self.schema = schema
        self.timeout_ms = timeout_ms
        self._cached: IndexLayout | None = None

    @property
    def index_name(self) -> str:
        return self.schema.name

    @property
    def prefix(self) -> str:
        return self.schema.prefix

    def split_key(self, key: str) -> tuple[str, str]:
        """(label, id) parsed from a key ``<prefix><label>:<id>``; the id is what follows the last ':'.

        This is where fastapi-vss reads an exemplar's label, and so does VSS."""
        body = key[len(self.prefix):] if key.startswith(self.prefix) else key
        label, _, id = body.rpartition(":")
        return label, id

    @guard
    def ensure_index(self, dim: int, model: str | None = None) -> IndexInfo:
        """Create the index, or attach to the existing one (upgrading an older VSS layout).

        ``IndexMismatch`` when its dimension or metric differs, or when it holds vectors of another
        model than ``model``: the one VSS recorded, or the one fastapi-vss's tools put in ``tag``
        (vectors of two models in one index are refused too, naming both)."""
        from vss_core.redis import migrations

        layout = self._read_layout()
        if layout is None:
            create_index(self.client, self.schema, dim)
            migrations.record_new(self, dim, model)
            layout = self._read_layout()
        where = f"Redis index '{self.index_name}'"
        if layout.dim is None:
            raise IndexMismatch(f"{where} has no '{VECTOR}' field")
        if layout.dim != dim:
            raise IndexMismatch(f"{where} holds {layout.dim}-dimensional vectors but the model "
                                f"produces {dim}-dimensional ones; use another index or the model it was built with")
        if layout.metric != METRIC or layout.data_type != DATA_TYPE:
            raise IndexMismatch(f"{where} uses {layout.data_type}/{layout.metric}, expected {DATA_TYPE}/{METRIC}")
        recorded = self.recorded_model()
        if model and recorded and not migrations.same_model(recorded, model):
            raise IndexMismatch(f"{where} was built with model '{recorded}' but the project uses '{model}'; "
                                f"their vectors do not compare: use another redis.index or model '{recorded}'")
        if self.schema.label_in_key:
            migrations.upgrade(self)
            migrations.check_models(self, model, recorded)
        elif migrations.layout_version(self) and set(self.schema.indexed()) - set(layout.fields):
            add_missing_fields(self.client, self.schema, layout.fields)  # made by an older VSS
        self._read_layout()
        return self.info()

    def recorded_model(self) -> str | None:
        """The model this index was built with, when VSS created it."""
        return as_text(self.client.hget(self.schema.meta_key, "model")) or None

    @guard
    def info(self) -> IndexInfo:
        """Name, dimension, algorithm, number of documents and recorded model of the index."""
        layout = self._read_layout() or IndexLayout(None, None, "", "", "", False, 0)
        return IndexInfo(self.index_name, layout.dim, layout.algorithm, layout.count, self.recorded_model())

    def write(self, commands: list[tuple]) -> list:
        """Send ``commands`` in one socket write and return the replies; an error reply raises naming the index."""
        replies = self.send_all(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise VSSError(f"writing to Redis index '{self.index_name}' failed: {reply}")
        return replies

    def send_all(self, commands: list[tuple]) -> list:
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

    @guard
    def exists(self, keys: Sequence[str]) -> list[bool]:
        """Whether each key is stored."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(n) for n in pipe.execute()] if keys else []

    def check_dim(self, vector: np.ndarray, what: str) -> np.ndarray:
        """``vector`` as float32, or ``IndexMismatch`` naming both dimensions."""
        vector = np.asarray(vector, dtype=np.float32).ravel()
        dim = self.layout().dim
        if dim is not None and vector.size != dim:
            raise IndexMismatch(f"Redis index '{self.index_name}' holds {dim}-dimensional vectors, "
                                f"got a {vector.size}-dimensional one for {what}")
        return vector

    @guard
    def knn(self, vectors, k: int, filter: str = "*") -> list[list[Neighbor]]:
        """The ``k`` nearest documents of each row of ``vectors`` (among those ``filter`` matches), best first.

        Complete or ``SearchIncomplete``: without a filter each answer has ``min(k, documents)`` hits."""
        queries = np.asarray(vectors, dtype=np.float32)
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
        dim = self.layout().dim
        if len(queries) and dim is not None and queries.shape[1] != dim:
            raise IndexMismatch(f"Redis index '{self.index_name}' holds {dim}-dimensional vectors, "
                                f"got {queries.shape[1]}-dimensional queries")
        results: list[list[Neighbor]] = []
        for start in range(0, len(queries), BATCH):
            results += self._knn_batch(queries[start:start + BATCH], k, filter)
        return results

    def _knn_batch(self, queries: np.ndarray, k: int, filter: str) -> list[list[Neighbor]]:
        replies = self.send_all([self._knn_command(vector, k, filter) for vector in queries])
        results = [self._hits(reply) for reply in self._checked(replies)]
        short = [i for i, hits in enumerate(results) if len(hits) < k]
        if short and filter == "*":
            self._recheck(queries, short, k, results)
        return results

    def _recheck(self, queries: np.ndarray, short: list[int], k: int, results: list) -> None:
        """Ask the short answers again with the document count, atomically, and compare."""
        pipe = self.client.pipeline(transaction=True)
        pipe.execute_command("FT.INFO", self.index_name)
        for i in short:
            pipe.execute_command(*self._knn_command(queries[i], k, "*"))
        info, *replies = self._checked(pipe.execute(raise_on_error=False))
        expected = min(k, int(value_after(info, "num_docs", 0)))
        for i, reply in zip(short, replies):
            results[i] = self._hits(reply)
            if len(results[i]) < expected:
                raise SearchIncomplete(f"KNN search in index '{self.index_name}' returned {len(results[i])} "
                                       f"of {expected} neighbors (server timeout?)")

    def _knn_command(self, vector: np.ndarray, k: int, filter: str) -> tuple:
        base = "*" if filter == "*" else f"({filter})"
        return ("FT.SEARCH", self.index_name, f"{base}=>[KNN {k} @{VECTOR} $vec AS {DIST}]",
                "PARAMS", 2, "vec", vector.tobytes(), "SORTBY", DIST, "ASC",
                "RETURN", 3, DIST, LABEL, "source", "LIMIT", 0, k,
                "TIMEOUT", self.timeout_ms, "DIALECT", 2)

    def _checked(self, replies: list) -> list:
        for reply in replies:
            if isinstance(reply, Exception):
                raise SearchIncomplete(f"KNN search in index '{self.index_name}' failed: {reply}")
        return replies

    def _hits(self, reply: list) -> list[Neighbor]:
        hits = []
        for raw_key, flat in zip(reply[1::2], reply[2::2]):
            fields = dict(zip(flat[::2], flat[1::2]))
            key = raw_key.decode("utf-8", "replace")
            label, id = self.split_key(key)
            stored = fields.get(LABEL.encode())
            if not self.schema.label_in_key:
                label = stored.decode("utf-8", "replace") if stored else ""
            source = fields.get(b"source")
            hits.append(Neighbor(key, label, id,
                                 1.0 - float(fields[DIST.encode()]),
                                 source.decode("utf-8", "replace") if source else ""))
        return hits

    def search(self, query: str, *args) -> list:
        """Raw ``FT.SEARCH`` with the timeout; a missing index is an empty answer."""
        try:
            return self.client.execute_command("FT.SEARCH", self.index_name, query, *args,
                                               "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        except redis.ResponseError as exc:
            if is_missing_index(exc):
                return [0]
            raise SearchIncomplete(f"search in index '{self.index_name}' failed: {exc}") from exc

    # -- full passes: every document, no limit ---------------------------------------------------
    def scan(self, query: str = "*", fields: Sequence[str] = (),
             batch: int = SCAN_BATCH) -> Iterator[list[tuple[str, dict[str, bytes | None]]]]:
        """Every document ``query`` matches, each once, in lists of about ``batch`` (key, {field: raw value}).

        There is no limit.  ``"*"`` walks the keys under the prefix (``SCAN MATCH``, which keeps no state on
        the server, so a slow consumer loses nothing and a document updated meanwhile is still seen;
        one deleted meanwhile is left out).  Another query reads an
        ``FT.AGGREGATE ... WITHCURSOR`` to its end and then counts the query's matches: fewer seen (a
        server timeout, a cursor idle past ``CURSOR_IDLE_MS``) raises ``SearchIncomplete``, never a short
        answer.  A consumer that stops early closes the cursor.  Order: unspecified."""
        fields = tuple(fields)
        if query == "*":
            return self._scan_keys(fields, max(1, int(batch)))
        return self._scan_query(query, fields, max(1, int(batch)))

    @guard
    def fetch(self, keys: Sequence[str], fields: Sequence[str]) -> list[dict[str, bytes | None]]:
        """The raw values of ``fields`` of each key (``None`` where absent, or the key is), in one pipeline."""
        if not fields:
            return [{} for _ in keys]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, fields)
        return [dict(zip(fields, values)) for values in (pipe.execute() if keys else [])]

    def _scan_keys(self, fields: tuple, batch: int):
        seen: set[str] = set()
        cursor, pending = None, []
        while cursor != 0:
            cursor, keys = self.scan_step(cursor or 0, batch)
            fresh = [key for key in dict.fromkeys(keys) if key not in seen]
            seen.update(fresh)
            pending += self._present(fresh, fields)
            while len(pending) >= batch or (pending and cursor == 0):
                yield pending[:batch]
                pending = pending[batch:]

    @guard
    def _present(self, keys: list[str], fields: tuple) -> list[tuple[str, dict]]:
        """(key, values) of the keys still there: one holding none of ``fields`` is asked EXISTS."""
        rows = list(zip(keys, self.fetch(keys, fields)))
        empty = [key for key, values in rows if fields and all(v is None for v in values.values())]
        if empty:
            pipe = self.client.pipeline(transaction=False)
            for key in empty:
                pipe.exists(key)
            gone = {key for key, n in zip(empty, pipe.execute()) if not n}
            rows = [(key, values) for key, values in rows if key not in gone]
        return rows

    @guard
    def scan_step(self, cursor: int, batch: int) -> tuple[int, list[str]]:
        """One SCAN step over this index's key prefix (hashes only): (next cursor, keys); 0 when done."""
        pattern = glob_escape(self.prefix) + "*"
        cursor, keys = self.client.scan(cursor, match=pattern, count=batch, _type="HASH")
        return int(cursor), [as_text(key) for key in keys]

    def _scan_query(self, query: str, fields: tuple, batch: int):
        seen: set[str] = set()
        before = self._count(query)
        for attempt in range(SCAN_PASSES):
            yield from self._cursor_pass(query, fields, batch, seen)
            total = min(before, self._count(query))  # documents leaving or joining meanwhile are no loss
            if len(seen) >= total:
                return
        raise SearchIncomplete(f"scanning index '{self.index_name}' for {query!r} saw {len(seen):,} of "
                               f"{total:,} documents (server timeout, or many changed meanwhile): run it again")

    def _cursor_pass(self, query: str, fields: tuple, batch: int, seen: set[str]):
        """One FT cursor over ``query`` to its end, yielding the documents not in ``seen`` (and adding them)."""
        rows, cursor = self._cursor("FT.AGGREGATE", self.index_name, query, "LOAD", 1 + len(fields), "@__key",
                                    *(f"@{name}" for name in fields), "WITHCURSOR", "COUNT", batch,
                                    "MAXIDLE", CURSOR_IDLE_MS, "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        try:
            while True:
                found = []
                for row in rows:
                    values = dict(zip(map(as_text, row[::2]), row[1::2]))
                    key = as_text(values.get("__key"))
                    if key and key not in seen:
                        seen.add(key)
                        found.append((key, {name: values.get(name) for name in fields}))
                if found:
                    yield found
                if not cursor:
                    break
                rows, cursor = self._cursor("FT.CURSOR", "READ", self.index_name, cursor, "COUNT", batch)
        finally:
            if cursor:
                self._close_cursor(cursor)

    @guard
    def _cursor(self, *command) -> tuple[list, int]:
        try:
            reply = self.client.execute_command(*command)
        except redis.ResponseError as exc:
            if is_missing_index(exc) and command[0] == "FT.AGGREGATE":
                return [], 0
            expired = " (its cursor expired: idle too long between batches)" if "not found" in str(exc).lower() else ""
            raise SearchIncomplete(f"scanning index '{self.index_name}' failed{expired}: {exc}") from exc
        return list(reply[0][1:]), int(reply[1])

    @guard
    def _count(self, query: str) -> int:
        return int(self.search(query, "NOCONTENT", "LIMIT", 0, 0)[0])

    def _close_cursor(self, cursor: int) -> None:
        try:
            self.client.execute_command("FT.CURSOR", "DEL", self.index_name, cursor)
        except redis.RedisError:
            pass  # expired or gone with the connection: nothing is left open

    def reload_layout(self) -> IndexLayout | None:
        """What FT.INFO says now (None when the index does not exist); later ``layout()`` calls see it."""
        return self._read_layout()

    def layout(self) -> IndexLayout:
        return self._cached or self._read_layout() or IndexLayout(None, None, "", "", TAG_SEPARATOR, True, 0)

    def _read_layout(self) -> IndexLayout | None:
        layout = read_layout(self.client, self.index_name)
        if layout is not None:
            self._cached = layout
        return layout
