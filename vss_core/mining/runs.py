"""Mining through Redis: novelty of the pool against the exemplars, anomaly within a set of pool images,
mislabel suspicion of the exemplars.  Neighbours come from the vector indexes chunk by chunk (never an
n x n matrix); the scores are :mod:`vss_core.mining.scores`'s building blocks; results go to sorted sets
(``ProjectLayout.scores_key``) that the pages rank and page through.

A run fills a temporary sorted set and renames it over the ranking only when it completes, with a record
(:func:`score_set`: the exemplar-set generation, k, model, time, how many) beside it: a cancelled or failed
run leaves the last complete ranking as it was, and a ranking older than the exemplars reads as stale.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from vss_core.chunks import each_chunk
from vss_core.errors import InputError
from vss_core.mining import scores as mining
from vss_core.redis.index_layout import as_text
from vss_core.redis.pool import PoolFilter
from vss_core.redis.project import ProjectStores
from vss_core.redis.schema import VECTOR
from vss_core.timeutil import now_iso

NOVELTY, ANOMALY, MISLABEL = "novelty", "anomaly", "mislabel"
KINDS = (NOVELTY, ANOMALY, MISLABEL)
CHUNK = 1000
_PAGE = 10_000
TMP_TTL_S = 24 * 3600  # a run's partial results, should the process die before it ends


@dataclass(frozen=True)
class Scored:
    """One ranked member (pool id or exemplar key) and its score."""

    member: str
    score: float


@dataclass(frozen=True)
class ScoreSet:
    """How the ranking of a kind and scope was made: at exemplar-set ``generation`` (``current`` is the
    generation now), with ``k`` neighbours of ``model``, at ``at``; ``scored`` members, ``complete`` when the
    run that made it finished.  ``cancelled_at``: a later run stopped before the end (the ranking is the last
    complete one).  ``known`` is False for a ranking an older VSS made, with no record."""

    scored: int
    complete: bool
    generation: int
    current: int
    k: int = 0
    model: str = ""
    at: str = ""
    cancelled_at: str = ""
    known: bool = True

    @property
    def stale(self) -> bool:
        """Made before the exemplars last changed (or of unknown age)."""
        return not self.known or self.generation < self.current


def score_set(stores: ProjectStores, kind: str, scope: str = "") -> ScoreSet | None:
    """The record of the ranking of ``kind`` over ``scope``; None when it was never scored."""
    raw = stores.client.hgetall(stores.layout.scores_meta_key(kind, scope))
    meta = {as_text(k): as_text(v) for k, v in raw.items()}
    current = stores.pool.generation()
    scored = int(stores.client.zcard(stores.layout.scores_key(kind, scope)))
    if not meta:
        return ScoreSet(scored, False, 0, current, known=False) if scored else None
    return ScoreSet(scored, meta.get("complete") == "1", int(meta.get("generation") or 0), current,
                    int(meta.get("k") or 0), meta.get("model", ""), meta.get("at", ""), meta.get("cancelled_at", ""))


class _Ranking:
    """One scoring run's results: a temporary sorted set, renamed over the ranking when the run completes."""

    def __init__(self, stores: ProjectStores, kind: str, scope: str, k: int):
        self.stores, self.kind, self.scope, self.k = stores, kind, scope, k
        self.generation = stores.pool.generation()  # read before any neighbour is
        self.tmp = stores.layout.scores_tmp_key(kind, scope, uuid.uuid4().hex[:12])
        self.done = 0

    def add(self, members, scores) -> None:
        pipe = self.stores.client.pipeline(transaction=True)
        for start in range(0, len(members), _PAGE):
            pipe.zadd(self.tmp, {m: float(s) for m, s in zip(members[start:start + _PAGE],
                                                            scores[start:start + _PAGE])})
        pipe.expire(self.tmp, TMP_TTL_S)
        pipe.execute()
        self.done += len(members)

    def finish(self, complete: bool) -> int:
        """Publish the run (complete) or drop its partial results (cancelled); returns how many were scored."""
        layout = self.stores.layout
        key, meta = layout.scores_key(self.kind, self.scope), layout.scores_meta_key(self.kind, self.scope)
        pipe = self.stores.client.pipeline(transaction=True)
        if complete:
            if self.done:
                pipe.rename(self.tmp, key)
                pipe.persist(key)
            else:
                pipe.delete(key)
            pipe.delete(meta)
            pipe.hset(meta, mapping={"generation": self.generation, "k": self.k, "model": self.stores.exemplars.model or "",
                                     "at": now_iso(), "scored": self.done, "complete": 1})
        else:
            pipe.delete(self.tmp)
            pipe.hset(meta, "cancelled_at", now_iso())
        pipe.execute()
        return self.done


def exemplar_batches(stores: ProjectStores, batch: int = CHUNK) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """(keys, labels, vectors) of every exemplar, ``batch`` at a time, however many (:meth:`SearchIndex.scan`);
    labels from the keys.  A document without a vector of the index's dimension is not indexed, nor read here."""
    store = stores.exemplars
    width = (store.layout().dim or 0) * 4
    for rows in store.scan("*", (VECTOR,), batch):
        rows = [(key, f[VECTOR]) for key, f in rows if f[VECTOR] and (not width or len(f[VECTOR]) == width)]
        if rows:
            keys = [key for key, _ in rows]
            yield keys, [store.label_of(key) for key in keys], np.vstack(
                [np.frombuffer(raw, np.float32) for _, raw in rows])


def _self_neighbors(index, vectors: np.ndarray, keys: list[str], k: int, filter: str = "*"):
    """Each vector's k nearest OTHER documents (itself dropped), padded to k by repeating the last."""
    hits = index.knn(vectors, k + 1, filter=filter)
    out = []
    for key, row in zip(keys, hits):
        others = [h for h in row if h.key != key][:k]
        out.append(others + [others[-1]] * (k - len(others)) if others else [])
    return out


def score_novelty(stores: ProjectStores, k: int = 5, progress=None, cancel: Callable[[], bool] | None = None) -> int:
    """Novelty of every pool image against the exemplars; returns how many were scored."""
    total = stores.exemplars.info().count
    if total < 2:
        raise InputError("novelty needs at least two exemplars")
    k = min(k, total - 1)
    run = _Ranking(stores, NOVELTY, "", k)
    kdist: dict[str, float] = {}
    for keys, _, vectors in exemplar_batches(stores):
        neighbors = _self_neighbors(stores.exemplars, vectors, keys, k)
        sims = np.array([[h.score for h in row] for row in neighbors], np.float32)
        kdist.update(zip(keys, mining.kdist_from_neighbors(sims).tolist()))
    ids = stores.pool.ids(PoolFilter())
    done = each_chunk(ids, CHUNK, lambda _, chunk: run.add(chunk, _novelty(stores, stores.pool.vectors(chunk), k, kdist)),
                      cancel, progress)
    return run.finish(complete=done)


def _novelty(stores: ProjectStores, vectors: np.ndarray, k: int, kdist: dict) -> np.ndarray:
    hits = stores.exemplars.knn(vectors, k)
    sims = np.array([[h.score for h in row] for row in hits], np.float32)
    nk = np.array([[kdist.get(h.key, 0.0) for h in row] for row in hits], np.float32)
    return mining.novelty_from_neighbors(sims, nk)


def score_anomaly(stores: ProjectStores, job: str = "", k: int = 10, progress=None,
                  cancel: Callable[[], bool] | None = None) -> int:
    """Anomaly of each pool image within its set (the images of predict job ``job``, or the whole pool)."""
    where = PoolFilter(jobs=(job,) if job else ())
    ids = stores.pool.ids(where)
    if len(ids) < 2:
        raise InputError("anomaly needs a set of at least two images")
    k = min(k, len(ids) - 1)
    run = _Ranking(stores, ANOMALY, job, k)
    row_of = {stores.pool.key_for(id): i for i, id in enumerate(ids)}
    all_ids, all_sims = np.zeros((len(ids), k), np.int64), np.zeros((len(ids), k), np.float32)

    def neighbors(start: int, chunk) -> None:
        keys = [stores.pool.key_for(id) for id in chunk]
        for i, row in enumerate(_self_neighbors(stores.pool, stores.pool.vectors(chunk), keys, k, where.query())):
            all_ids[start + i] = [row_of.get(h.key, start + i) for h in row]
            all_sims[start + i] = [h.score for h in row]

    if not each_chunk(ids, CHUNK, neighbors, cancel, progress):
        return run.finish(complete=False)
    run.add(ids, mining.anomaly_from_neighbors(all_ids, all_sims))
    return run.finish(complete=True)


def score_mislabel(stores: ProjectStores, k: int = 10, progress=None, cancel: Callable[[], bool] | None = None) -> int:
    """Mislabel suspicion of every exemplar from its k nearest other exemplars."""
    total = stores.exemplars.info().count
    if total < 2:
        raise InputError("the exemplar audit needs at least two exemplars")
    k = min(k, total - 1)
    if progress:
        progress.set_total(total)
    run = _Ranking(stores, MISLABEL, "", k)
    for keys, labels, vectors in exemplar_batches(stores):
        if cancel and cancel():
            return run.finish(complete=False)
        neighbors = _self_neighbors(stores.exemplars, vectors, keys, k)
        sims = np.array([[h.score for h in row] for row in neighbors], np.float32)
        run.add(keys, mining.mislabel_from_neighbors([[h.label for h in row] for row in neighbors], sims, labels))
        if progress:
            progress.advance(len(keys))
    return run.finish(complete=True)


def ranked(stores: ProjectStores, kind: str, scope: str = "", offset: int = 0, limit: int = 50,
           min_score: float | None = None) -> tuple[int, list[Scored]]:
    """(how many are scored [at or above ``min_score``], one page of them, highest first)."""
    key = stores.layout.scores_key(kind, scope)
    lo = "-inf" if min_score is None else min_score
    total = stores.client.zcount(key, lo, "+inf")
    rows = stores.client.zrevrangebyscore(key, "+inf", lo, start=offset, num=limit, withscores=True)
    return total, [Scored(as_text(m), float(s)) for m, s in rows]


def score_map(stores: ProjectStores, kind: str, scope: str = "") -> dict[str, float]:
    """Every scored member (pool id or exemplar key) of ``kind`` and its score."""
    rows = stores.client.zrange(stores.layout.scores_key(kind, scope), 0, -1, withscores=True)
    return {as_text(member): float(score) for member, score in rows}


def all_scores(stores: ProjectStores, kind: str, scope: str = "") -> np.ndarray:
    """Every score of ``kind`` (for histograms)."""
    rows = stores.client.zrange(stores.layout.scores_key(kind, scope), 0, -1, withscores=True)
    return np.array([s for _, s in rows], np.float32)


def mine_job(kind: str, stores: ProjectStores, job: str = "", k: int | None = None):
    """The body of a background mining job: ``fn(progress) -> int`` (how many were scored)."""
    if kind not in KINDS:
        raise InputError(f"unknown mining kind {kind!r} (known: {', '.join(KINDS)})")

    def work(progress) -> int:
        cancel = lambda: progress.cancelled  # noqa: E731
        if kind == NOVELTY:
            n = score_novelty(stores, k or 5, progress, cancel)
        elif kind == ANOMALY:
            n = score_anomaly(stores, job, k or 10, progress, cancel)
        else:
            n = score_mislabel(stores, k or 10, progress, cancel)
        progress.message(f"{n:,} scored" if not progress.cancelled else
                         f"cancelled after {n:,} scored: the last complete ranking is kept")
        return n

    return work


def pool_jobs(stores: ProjectStores) -> dict[str, int]:
    """The predict jobs that filled the pool (the sets anomaly can be scored within), with sizes."""
    return stores.pool.counts("job")


__all__ = ["NOVELTY", "ANOMALY", "MISLABEL", "Scored", "ScoreSet", "score_set", "score_novelty", "score_anomaly",
           "score_mislabel", "ranked", "all_scores", "score_map", "mine_job", "exemplar_batches", "pool_jobs"]
