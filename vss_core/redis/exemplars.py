"""Vectors of labeled exemplars in Redis, in fastapi-vss's layout (see :mod:`vss_core.redis.schema`).

An exemplar's label is its key's middle part (``doc:<label>:<id>``), as fastapi-vss reads it; ``tag`` holds
the model name, as MBARI's ``mbari-aidata`` writes it.  VSS also writes the label into ``label``, a TAG field
(separator 0x1f, CASESENSITIVE) of the indexes it creates or adopts (:mod:`vss_core.redis.migrations`), so labels
are filtered and counted by the index; where a document lacks it (fastapi-vss's, not adopted) the keys
are read instead.  Labels are always compared exactly.

The store adds exemplars; none leaves the index or changes label here: that is done only by the audited,
undoable actions of :class:`~vss_core.labeling.exemplar_review.ExemplarReview` (retire, retire_label, relabel), which
keep a promoted pool image's document in step (:class:`~vss_core.labeling.exemplar_owner.PoolExemplars`) and move the
exemplar-set generation on.

Batch KNN is one pipeline of raw ``FT.SEARCH ... KNN`` (DIALECT 2), not redisvl: at
20k x 768, 32 queries, redisvl's ``batch_query`` was no faster than the raw pipeline
(FLAT ~77 vs ~73 ms, HNSW ~10 vs ~9 ms) and needs per-query objects built from lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import redis

from vss_core.errors import SearchIncomplete, VSSError
from vss_core.redis import generation
from vss_core.redis.index_layout import as_pairs, as_text, escape_tag, guard, is_missing_index, value_after
from vss_core.redis.schema import EXEMPLAR_FIELDS, LABEL, TAG, VECTOR, IndexSchema, layout_for, project_layout
from vss_core.redis.search_index import BATCH, DEFAULT_TIMEOUT_MS, IndexInfo, Neighbor, SearchIndex
from vss_core.timeutil import now_iso

__all__ = ["Record", "Neighbor", "Exemplar", "AuditView", "IndexInfo", "VectorStore", "connect_store", "open_store"]


@dataclass(frozen=True)
class Record:
    """One exemplar to store."""

    label: str
    id: str
    vector: Any
    source: str = ""
    added_by: str = ""
    model: str = ""
    pool_id: str = ""


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
class AuditView:
    """An exemplar as the exemplar audit shows it: its label, image, audit mark and vector."""

    key: str
    label: str
    source: str
    audit: str
    vector: Any


class VectorStore(SearchIndex):
    """The exemplars of one project in one Redis FT index."""

    def __init__(self, client: redis.Redis, schema: IndexSchema | None = None,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS):
        super().__init__(client, schema or project_layout().exemplars, timeout_ms)
        self.model = ""

    def key_for(self, label: str, id: str) -> str:
        """Redis key of exemplar ``id`` under ``label``."""
        return self.schema.key(label, id)

    def ensure_index(self, dim: int, model: str | None = None) -> IndexInfo:
        """Create (with the schema's algorithm and HNSW parameters) or attach: :meth:`SearchIndex.ensure_index`;
        then :attr:`model` is ``model`` or the one the index records."""
        info = super().ensure_index(dim, model)
        self.model = model or self.recorded_model() or self.model
        return info

    @guard
    def add(self, records: Iterable[Record]) -> int:
        """Write ``records`` (one socket write per 256); an existing key is overwritten.

        Returns how many were new: a record whose key someone else wrote meanwhile (two loads of one
        folder at once) is not counted, so each run reports what it actually added."""
        added_at = now_iso()
        new, chunk, sent = 0, [], 0
        for record in records:
            chunk.append(self.hset_command(record, added_at))
            sent += 1
            if len(chunk) == BATCH:
                new += sum(1 for n in self.write(chunk) if n)
                chunk = []
        if chunk:
            new += sum(1 for n in self.write(chunk) if n)
        if sent:
            generation.bump(self.client, self.index_name)  # the exemplar set changed: suggestions and scores age
        return new

    def hset_command(self, record: Record, added_at: str) -> tuple:
        """The HSET that stores ``record``."""
        if not record.label.strip():
            raise VSSError(f"{record.source or record.id}: empty label")
        vector = self.check_dim(record.vector, record.source or record.id)
        values = dict(zip(EXEMPLAR_FIELDS, (record.label, record.source, record.added_by, added_at,
                                            record.model, record.pool_id)))
        if not record.pool_id:
            del values["pool_id"]
        flat = [item for pair in values.items() for item in pair]
        return ("HSET", self.key_for(record.label, record.id), VECTOR, vector.tobytes(),
                TAG, record.model or self.model, *flat)

    @guard
    def for_audit(self, key: str) -> AuditView | None:
        """The exemplar ``key`` with its audit mark and vector; None once it is retired or relabeled."""
        import numpy as np

        source, audit, vector = self.client.hmget(key, ("source", "audit", VECTOR))
        if vector is None:
            return None
        return AuditView(key, self.label_of(key), as_text(source), as_text(audit), np.frombuffer(vector, np.float32))

    def label_of(self, key: str) -> str:
        """The label of exemplar ``key``: the key's middle part, as fastapi-vss reads it."""
        return self.split_key(key)[0]

    def label_mapping(self, label: str) -> dict[str, str]:
        """The hash fields that hold an exemplar's label (to HSET when it moves to ``label``)."""
        return {LABEL: label}

    @guard
    def label_counts(self) -> dict[str, int]:
        """Number of exemplars per label (the labels in the keys), complete or ``SearchIncomplete``."""
        groups, total = self._label_groups()
        counts = {label: n for label, n in groups.items() if label}
        if groups.get(""):
            for key in self._unlabeled_keys():
                name = self.label_of(key)
                counts[name] = counts.get(name, 0) + 1
        if sum(counts.values()) != total:
            raise SearchIncomplete(f"counting labels in index '{self.index_name}' saw "
                                   f"{sum(counts.values())} of {total} documents (server timeout?)")
        return counts

    @guard
    def unlabeled_count(self) -> int:
        """How many documents lack the ``label`` field (all of a fastapi-vss index that is not adopted,
        and those its tools added since adoption): they are counted, searched and retired, but listed
        by label only after :func:`vss_core.redis.migrations.adopt`.  One aggregate on the server."""
        return self._label_groups()[0].get("", 0)

    def _label_groups(self) -> tuple[dict[str, int], int]:
        """({label field: documents}, with "" for documents without one; documents in the index)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.execute_command("FT.AGGREGATE", self.index_name, "*", "LOAD", 1, f"@{LABEL}",
                             "GROUPBY", 1, f"@{LABEL}", "REDUCE", "COUNT", 0, "AS", "n",
                             "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        pipe.execute_command("FT.INFO", self.index_name)
        groups, info = pipe.execute(raise_on_error=False)
        if isinstance(groups, Exception) and is_missing_index(groups):
            return {}, 0
        if isinstance(groups, Exception) or isinstance(info, Exception):
            raise SearchIncomplete(f"counting labels in index '{self.index_name}' failed: {groups}")
        found: dict[str, int] = {}
        for row in map(as_pairs, groups[1:]):
            label = row.get(LABEL, "")
            found[label] = found.get(label, 0) + int(row.get("n", 0))
        return found, int(value_after(info, "num_docs", 0))

    def _unlabeled_keys(self) -> list[str]:
        """Keys of the documents without a ``label`` field (fastapi-vss's tools write none); a hash the
        index refused (a vector of another dimension) is not an exemplar.  Reads no vectors."""
        size, found = 4 * (self.layout().dim or 0), []
        for rows in self.scan("*"):
            keys = [key for key, _ in rows]
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hexists(key, LABEL)
                pipe.hstrlen(key, VECTOR)
            replies = pipe.execute()
            found += [key for key, has, n in zip(keys, replies[::2], replies[1::2]) if not has and n == size]
        return found

    @guard
    def exemplars(self, label: str, offset: int = 0, limit: int = 50) -> list[Exemplar]:
        """One page of the exemplars of ``label`` with source, added_by, added_at and model."""
        if self._exact(label):  # documents without the label field (fastapi-vss's): listed once adopted
            reply = self.search(self._label_query(label), "NOCONTENT", "LIMIT", offset, limit)
            keys = [as_text(key) for key in reply[1:]]
        else:
            keys = self.keys_of(label)[offset:offset + limit]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, EXEMPLAR_FIELDS)
        found = []
        for key, values in zip(keys, pipe.execute() if keys else []):
            fields = dict(zip(EXEMPLAR_FIELDS, map(as_text, values)))
            found.append(Exemplar(key, *self.split_key(key), fields["source"],
                                  fields["added_by"], fields["added_at"], fields["model"] or self.model))
        return found

    def keys_of(self, label: str) -> list[str]:
        """Every key of ``label``: the index's answer where documents have the field, the keys' otherwise."""
        keys = []
        if LABEL in self.layout().fields:
            keys = [key for rows in self.scan(self._label_query(label)) for key, _ in rows
                    if self.label_of(key) == label]
        return keys + [key for key in self._unlabeled_keys() if self.label_of(key) == label]

    def _label_query(self, label: str) -> str:
        parts = [part.strip() for part in label.split(self.layout().separator)]
        return " ".join(f"@{LABEL}:{{{escape_tag(part)}}}" for part in parts if part) or "*"

    def _exact(self, label: str) -> bool:
        layout = self.layout()
        return (LABEL in layout.fields and layout.case_sensitive and layout.separator not in label
                and label == label.strip() != "")


def connect_store(project, client=None) -> VectorStore:
    """The exemplar store of ``project`` (a :class:`~vss_core.config.projects.ProjectConfig`) without creating its
    index, on ``client`` (default: a new connection to the project's Redis)."""
    from vss_core.redis.server import connect

    return VectorStore(client or connect(project), layout_for(project).exemplars)


def open_store(project, dim: int, model: str | None = None, client=None) -> VectorStore:
    """Create or attach ``project``'s exemplar index for ``dim``-d vectors of ``model`` (default: the
    project's model; ``IndexMismatch`` when the index records another), on ``client`` if given: the one way
    the app, the REST service, the CLI and the workers open it."""
    store = connect_store(project, client)
    store.ensure_index(dim, model or project.model)
    return store
