"""The prediction pool: images to label, each with its vector, suggestion and current decision.

A second vector index in the project's Redis (see :mod:`vss_core.redis.schema`), never mixed with the
exemplars that fastapi-vss reads.  A pool document is written once per image id (ids come from
content, so a rerun skips what is there) and then changed only through :mod:`vss_core.labeling.decisions`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import redis

from vss_core.errors import InputError
from vss_core.redis import generation
from vss_core.redis.index_layout import as_pairs, as_text, escape_tag, guard, is_missing_index
from vss_core.redis.schema import POOL_SUFFIX, PREDICTED, TAG, VECTOR, IndexSchema, layout_for
from vss_core.redis.search_index import BATCH, DEFAULT_TIMEOUT_MS, SearchIndex
from vss_core.timeutil import now_iso

LEAST_CONFIDENT, MOST_CONFIDENT, BY_SUGGESTION, BY_FILE = "least_confident", "most_confident", "suggestion", "file"
SORTS = {  # sort id -> (field, order); the pages name them
    LEAST_CONFIDENT: ("confidence", "ASC"),
    MOST_CONFIDENT: ("confidence", "DESC"),
    BY_SUGGESTION: ("suggestion_text", "ASC"),
    BY_FILE: ("name", "ASC"),
}


@dataclass(frozen=True)
class Prediction:
    """What the predict job writes for one image."""

    id: str
    source: str
    name: str
    vector: object
    fields: dict  # the suggestion's pool fields (:func:`vss_core.labeling.suggestions.suggestion_fields`)
    model: str = ""
    job: str = ""
    generation: int | None = None  # the exemplar-set generation the neighbours were found at (None: read at write)


@dataclass(frozen=True)
class PoolItem:
    """One pool image as the review grid shows it."""

    id: str
    source: str
    name: str
    suggestion: str
    share: float
    best: float
    margin: float
    second: str
    uncertain: bool
    label: str
    status: str
    annotator: str
    decided_at: str
    model: str
    version: int
    neighbors: tuple[tuple[str, str, float, str], ...]
    exemplar: str
    flag: str = ""
    job: str = ""
    generation: int = 0  # the exemplar-set generation its suggestion was made at (0: unknown, older VSS)
    how: str = ""  # how it was decided (single, page, group, bulk; "" before VSS recorded it)


@dataclass(frozen=True)
class PoolFilter:
    """Which pool images a page shows: statuses, current labels, a best-score range, uncertain only."""

    statuses: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()
    min_score: float | None = None
    max_score: float | None = None
    uncertain_only: bool = False
    jobs: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    def query(self) -> str:
        parts = []
        for field, values in (("status", self.statuses), (TAG, self.labels), ("suggestion", self.suggestions),
                              ("job", self.jobs), ("flag", self.flags)):
            if values:
                parts.append(f"@{field}:{{{' | '.join(escape_tag(v) for v in values)}}}")
        if self.min_score is not None or self.max_score is not None:
            lo = "-inf" if self.min_score is None else repr(float(self.min_score))
            hi = "+inf" if self.max_score is None else repr(float(self.max_score))
            parts.append(f"@best:[{lo} {hi}]")
        if self.uncertain_only:
            parts.append("@uncertain:[1 1]")
        return " ".join(parts) or "*"


class PoolStore(SearchIndex):
    """The pool index of one project."""

    def __init__(self, client: redis.Redis, schema: IndexSchema, timeout_ms: int = DEFAULT_TIMEOUT_MS):
        super().__init__(client, schema, timeout_ms)

    def key_for(self, id: str) -> str:
        return self.schema.key(id)

    @guard
    def missing(self, ids: Sequence[str]) -> list[str]:
        """The ids that are not in the pool yet."""
        return [id for id, found in zip(ids, self.exists([self.key_for(i) for i in ids])) if not found]

    @guard
    def add(self, predictions: Iterable[Prediction], threshold: float) -> int:
        """Write new pool documents (HSETNX-guarded: a decided image is never overwritten), stamped with the
        exemplar-set generation of their neighbours (the prediction's, else the current one)."""
        added_at = now_iso()
        now = self.generation()
        commands = [self._command(p, threshold, added_at, now) for p in predictions]
        for start in range(0, len(commands), BATCH):
            self.write([c for command in commands[start:start + BATCH] for c in command])
        return len(commands)

    def _command(self, p: Prediction, threshold: float, added_at: str, generation_now: int = 0) -> list[tuple]:
        vector = self.check_dim(p.vector, p.source)
        stamp = generation_now if p.generation is None else p.generation
        fields = {VECTOR: vector.tobytes(), **p.fields, "generation": int(stamp),
                  "status": PREDICTED, "job": p.job, "name": p.name, "source": p.source, "version": 0,
                  "decided_ts": 0, "model": p.model, "added_at": added_at}
        key = self.key_for(p.id)
        # HSETNX on 'status' first: only a new document gets the rest.
        flat = [x for pair in fields.items() for x in pair]
        return [("EVAL", _ADD_IF_NEW, 1, key, *flat)]

    def generation(self) -> int:
        """The exemplar-set generation now (see :mod:`vss_core.redis.generation`)."""
        return generation.current(self.client, self.index_name.removesuffix(POOL_SUFFIX))

    @guard
    def stale_count(self, now: int) -> int:
        """How many undecided images carry a suggestion older than generation ``now`` (or of unknown age)."""
        reply = self.search(f"@status:{{{PREDICTED}}} -@generation:[{int(now)} +inf]", "NOCONTENT", "LIMIT", 0, 0)
        return int(reply[0])

    @guard
    def suggestion_states(self, ids: Sequence[str]) -> list[tuple[str, int, int, int]]:
        """(status, version, generation, k) of each image ("" status where it is missing)."""
        pipe = self.client.pipeline(transaction=False)
        for id in ids:
            pipe.hmget(self.key_for(id), ["status", "version", "generation", "k"])
        return [(as_text(s), int(v or 0), int(g or 0), int(k or 0))
                for s, v, g, k in (pipe.execute() if ids else [])]

    @guard
    def rewrite_suggestions(self, updates: Sequence[tuple[str, int, dict]]) -> int:
        """Replace the suggestion fields of undecided images, each (id, version seen, fields) only while the
        image is still undecided at that version (its version moves on, so a view of the old suggestion is
        refused); returns how many were rewritten."""
        commands = [("EVAL", _REWRITE_IF_UNDECIDED, 1, self.key_for(id), int(version),
                     *[x for pair in fields.items() for x in pair]) for id, version, fields in updates]
        return sum(int(n) for start in range(0, len(commands), BATCH)
                   for n in self.write(commands[start:start + BATCH]))

    @guard
    def page(self, where: PoolFilter = PoolFilter(), sort: str = LEAST_CONFIDENT, offset: int = 0,
             limit: int = 100) -> tuple[int, list[PoolItem]]:
        """(how many match, one page of them) in ``sort`` order."""
        if sort not in SORTS:
            raise InputError(f"unknown sort {sort!r} (known: {', '.join(SORTS)})")
        field, order = SORTS[sort]
        reply = self.search(where.query(), "RETURN", len(_ITEM_FIELDS), *_ITEM_FIELDS,
                            "SORTBY", field, order, "LIMIT", int(offset), int(limit))
        items = [self._item(as_text(key), as_pairs(flat)) for key, flat in zip(reply[1::2], reply[2::2])]
        return int(reply[0]), items

    @guard
    def ids(self, where: PoolFilter) -> list[str]:
        """Ids of every image ``where`` matches, each once and however many (bulk actions, mining, the map);
        complete or ``SearchIncomplete`` (see :meth:`SearchIndex.scan`)."""
        start = len(self.prefix)
        return [key[start:] for rows in self.scan(where.query()) for key, _ in rows]

    def by_name(self, where: PoolFilter = PoolFilter(), page: int = 1000) -> Iterator[PoolItem]:
        """Every image ``where`` matches, by file name, with no limit (the label sheet): one scan for
        the names, then the items a page at a time."""
        named = sorted((as_text(values.get("name")).casefold(), as_text(values.get("name")), key[len(self.prefix):])
                       for rows in self.scan(where.query(), ("name", "status")) for key, values in rows)
        for start in range(0, len(named), page):
            yield from (item for item in self.get([id for *_, id in named[start:start + page]]) if item)

    @guard
    def get(self, ids: Sequence[str]) -> list[PoolItem | None]:
        """The items with these ids (None where missing)."""
        pipe = self.client.pipeline(transaction=False)
        for id in ids:
            pipe.hmget(self.key_for(id), _ITEM_FIELDS)
        out = []
        for id, values in zip(ids, pipe.execute() if ids else []):
            if values[_ITEM_FIELDS.index("status")] is None:
                out.append(None)
            else:
                out.append(self._item(self.key_for(id), dict(zip(_ITEM_FIELDS, map(as_text, values)))))
        return out

    @guard
    def vectors(self, ids: Sequence[str]):
        """float32 vectors of pool images (a row of NaN where an id is missing)."""
        import numpy as np

        pipe = self.client.pipeline(transaction=False)
        for id in ids:
            pipe.hget(self.key_for(id), VECTOR)
        dim = self.layout().dim or 0
        rows = [np.frombuffer(raw, np.float32) if raw else np.full(dim, np.nan, np.float32)
                for raw in (pipe.execute() if ids else [])]
        return np.vstack(rows) if rows else np.zeros((0, dim), np.float32)

    @guard
    def counts(self, field: str = "status") -> dict[str, int]:
        """Number of pool images per value of ``field`` (status, tag or suggestion)."""
        try:
            reply = self.client.execute_command(
                "FT.AGGREGATE", self.index_name, "*", "GROUPBY", 1, f"@{field}", "REDUCE", "COUNT", 0,
                "AS", "n", "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        except redis.ResponseError as exc:
            if is_missing_index(exc):
                return {}
            raise
        rows = [as_pairs(row) for row in reply[1:]]
        return {row[field]: int(row["n"]) for row in rows if row.get(field)}

    @guard
    def histogram(self, bins: int = 30, where: PoolFilter = PoolFilter()) -> list[tuple[float, float, int]]:
        """(bin start, bin end, count) of the best scores, ``bins`` equal bins between their min and max."""
        query = where.query()
        try:
            lo, hi = self._range(query)
            if lo is None:
                return []
            width = max((hi - lo) / bins, 1e-6)
            reply = self.client.execute_command(
                "FT.AGGREGATE", self.index_name, query, "LOAD", 1, "@best",
                "APPLY", f"floor((@best - {lo!r}) / {width!r})", "AS", "bin",
                "GROUPBY", 1, "@bin", "REDUCE", "COUNT", 0, "AS", "n", "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        except redis.ResponseError as exc:
            if is_missing_index(exc):
                return []
            raise
        counts = {min(int(float(r["bin"])), bins - 1): 0 for r in map(as_pairs, reply[1:])}
        for r in map(as_pairs, reply[1:]):
            counts[min(int(float(r["bin"])), bins - 1)] += int(r["n"])
        return [(lo + b * width, lo + (b + 1) * width, n) for b, n in sorted(counts.items())]

    def _range(self, query: str) -> tuple[float | None, float | None]:
        reply = self.client.execute_command(
            "FT.AGGREGATE", self.index_name, query, "LOAD", 1, "@best", "GROUPBY", 0,
            "REDUCE", "MIN", 1, "@best", "AS", "lo", "REDUCE", "MAX", 1, "@best", "AS", "hi",
            "TIMEOUT", self.timeout_ms, "DIALECT", 2)
        row = as_pairs(reply[1]) if len(reply) > 1 else {}
        if not row.get("lo") or row["lo"] in ("nan", "inf", "-inf"):
            return None, None
        return float(row["lo"]), float(row["hi"])

    def _item(self, key: str, f: dict[str, str]) -> PoolItem:
        neighbors = tuple(tuple(n) for n in json.loads(f.get("neighbors") or "[]"))
        return PoolItem(
            id=key[len(self.prefix):], source=f.get("source", ""), name=f.get("name", ""),
            suggestion=f.get("suggestion", ""), share=_num(f, "share"), best=_num(f, "best"),
            margin=_num(f, "margin"), second=f.get("second", ""), uncertain=f.get("uncertain") == "1",
            label=f.get("label", ""), status=f.get("status", PREDICTED), annotator=f.get("annotator", ""),
            decided_at=f.get("decided_at", ""), model=f.get("model", ""), version=int(_num(f, "version")),
            neighbors=neighbors, exemplar=f.get("exemplar", ""), flag=f.get("flag", ""), job=f.get("job", ""),
            generation=int(_num(f, "generation")), how=f.get("how", ""))


_ITEM_FIELDS = ("source", "name", "suggestion", "share", "best", "margin", "second", "uncertain", "label",
                "status", "annotator", "decided_at", "model", "version", "neighbors", "exemplar", "flag", "job",
                "generation", "how")

_REWRITE_IF_UNDECIDED = """
if redis.call('HGET', KEYS[1], 'status') ~= 'predicted' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'version') or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"""

_ADD_IF_NEW = """
if redis.call('HSETNX', KEYS[1], 'status', 'predicted') == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


def _num(fields: dict, name: str) -> float:
    try:
        return float(fields.get(name) or 0.0)
    except ValueError:
        return 0.0
