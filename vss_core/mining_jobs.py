"""Mining through Redis: novelty of the pool against the exemplars, anomaly within a set of pool images,
mislabel suspicion of the exemplars.  Neighbours come from the vector indexes chunk by chunk (never an
n x n matrix); the scores are :mod:`vss_core.mining`'s building blocks; results go to sorted sets
(``ProjectLayout.scores_key``) that the pages rank and page through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from . import mining
from .decisions import Decisions
from .errors import InputError
from .index_layout import as_text
from .pool import PoolFilter
from .schema import TAG, VECTOR

NOVELTY, ANOMALY, MISLABEL = "novelty", "anomaly", "mislabel"
KINDS = (NOVELTY, ANOMALY, MISLABEL)
CHUNK = 1000
_PAGE = 10_000


@dataclass(frozen=True)
class Scored:
    """One ranked member (pool id or exemplar key) and its score."""

    member: str
    score: float


def exemplar_batches(d: Decisions, batch: int = CHUNK) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """(keys, labels, vectors) of every exemplar, ``batch`` at a time."""
    store, offset = d.exemplars, 0
    while True:
        reply = store.search("*", "RETURN", 3, VECTOR, "label", TAG, "LIMIT", offset, batch)
        rows = list(zip(reply[1::2], reply[2::2]))
        if rows:
            keys = [as_text(k) for k, _ in rows]
            fields = [dict(zip(f[::2], f[1::2])) for _, f in rows]
            labels = [as_text(f.get(b"label") or f.get(TAG.encode())) or store.split_key(k)[0]
                      for k, f in zip(keys, fields)]
            yield keys, labels, np.vstack([np.frombuffer(f[VECTOR.encode()], np.float32) for f in fields])
        if len(rows) < batch:
            return
        offset += batch


def _self_neighbors(index, vectors: np.ndarray, keys: list[str], k: int, filter: str = "*"):
    """Each vector's k nearest OTHER documents (itself dropped), padded to k by repeating the last."""
    hits = index.knn(vectors, k + 1, filter=filter)
    out = []
    for key, row in zip(keys, hits):
        others = [h for h in row if h.key != key][:k]
        out.append(others + [others[-1]] * (k - len(others)) if others else [])
    return out


def score_novelty(d: Decisions, k: int = 5, progress=None, cancel: Callable[[], bool] | None = None) -> int:
    """Novelty of every pool image against the exemplars; returns how many were scored."""
    total = d.exemplars.info().count
    if total < 2:
        raise InputError("novelty needs at least two exemplars")
    k = min(k, total - 1)
    kdist: dict[str, float] = {}
    for keys, _, vectors in exemplar_batches(d):
        neighbors = _self_neighbors(d.exemplars, vectors, keys, k)
        sims = np.array([[h.score for h in row] for row in neighbors], np.float32)
        kdist.update(zip(keys, mining.kdist_from_neighbors(sims).tolist()))
    ids = d.pool.ids(PoolFilter())
    return _score_chunks(d, NOVELTY, "", ids, progress, cancel, lambda chunk, vectors: _novelty(
        d, vectors, k, kdist))


def _novelty(d: Decisions, vectors: np.ndarray, k: int, kdist: dict) -> np.ndarray:
    hits = d.exemplars.knn(vectors, k)
    sims = np.array([[h.score for h in row] for row in hits], np.float32)
    nk = np.array([[kdist.get(h.key, 0.0) for h in row] for row in hits], np.float32)
    return mining.novelty_from_neighbors(sims, nk)


def score_anomaly(d: Decisions, job: str = "", k: int = 10, progress=None,
                  cancel: Callable[[], bool] | None = None) -> int:
    """Anomaly of each pool image within its set (the images of predict job ``job``, or the whole pool)."""
    where = PoolFilter(jobs=(job,) if job else ())
    ids = d.pool.ids(where)
    if len(ids) < 2:
        raise InputError("anomaly needs a set of at least two images")
    k = min(k, len(ids) - 1)
    row_of = {d.pool.key_for(id): i for i, id in enumerate(ids)}
    all_ids, all_sims = np.zeros((len(ids), k), np.int64), np.zeros((len(ids), k), np.float32)
    if progress:
        progress.set_total(len(ids))
    for start in range(0, len(ids), CHUNK):
        if cancel and cancel():
            return 0
        chunk = ids[start:start + CHUNK]
        keys = [d.pool.key_for(id) for id in chunk]
        for i, row in enumerate(_self_neighbors(d.pool, d.pool.vectors(chunk), keys, k, where.query())):
            all_ids[start + i] = [row_of.get(h.key, start + i) for h in row]
            all_sims[start + i] = [h.score for h in row]
        if progress:
            progress.advance(len(chunk))
    scores = mining.anomaly_from_neighbors(all_ids, all_sims)
    _store(d, ANOMALY, job, ids, scores, replace=True)
    return len(ids)


def score_mislabel(d: Decisions, k: int = 10, progress=None, cancel: Callable[[], bool] | None = None) -> int:
    """Mislabel suspicion of every exemplar from its k nearest other exemplars."""
    total = d.exemplars.info().count
    if total < 2:
        raise InputError("the exemplar audit needs at least two exemplars")
    k = min(k, total - 1)
    if progress:
        progress.set_total(total)
    key = d.layout.scores_key(MISLABEL)
    d.client.delete(key)
    done = 0
    for keys, labels, vectors in exemplar_batches(d):
        if cancel and cancel():
            break
        neighbors = _self_neighbors(d.exemplars, vectors, keys, k)
        sims = np.array([[h.score for h in row] for row in neighbors], np.float32)
        scores = mining.mislabel_from_neighbors([[h.label for h in row] for row in neighbors], sims, labels)
        _store(d, MISLABEL, "", keys, scores)
        done += len(keys)
        if progress:
            progress.advance(len(keys))
    return done


def _score_chunks(d, kind, scope, ids, progress, cancel, score) -> int:
    if progress:
        progress.set_total(len(ids))
    d.client.delete(d.layout.scores_key(kind, scope))
    done = 0
    for start in range(0, len(ids), CHUNK):
        if cancel and cancel():
            break
        chunk = ids[start:start + CHUNK]
        _store(d, kind, scope, chunk, score(chunk, d.pool.vectors(chunk)))
        done += len(chunk)
        if progress:
            progress.advance(len(chunk))
    return done


def _store(d: Decisions, kind: str, scope: str, members, scores, replace: bool = False) -> None:
    key = d.layout.scores_key(kind, scope)
    pipe = d.client.pipeline(transaction=True)
    if replace:
        pipe.delete(key)
    for start in range(0, len(members), _PAGE):
        pipe.zadd(key, {m: float(s) for m, s in zip(members[start:start + _PAGE], scores[start:start + _PAGE])})
    pipe.execute()


def ranked(d: Decisions, kind: str, scope: str = "", offset: int = 0, limit: int = 50,
           min_score: float | None = None) -> tuple[int, list[Scored]]:
    """(how many are scored [at or above ``min_score``], one page of them, highest first)."""
    key = d.layout.scores_key(kind, scope)
    lo = "-inf" if min_score is None else min_score
    total = d.client.zcount(key, lo, "+inf")
    rows = d.client.zrevrangebyscore(key, "+inf", lo, start=offset, num=limit, withscores=True)
    return total, [Scored(as_text(m), float(s)) for m, s in rows]


def all_scores(d: Decisions, kind: str, scope: str = "") -> np.ndarray:
    """Every score of ``kind`` (for histograms)."""
    rows = d.client.zrange(d.layout.scores_key(kind, scope), 0, -1, withscores=True)
    return np.array([s for _, s in rows], np.float32)


def mine_job(kind: str, d: Decisions, job: str = "", k: int | None = None):
    """The body of a background mining job: ``fn(progress) -> int`` (how many were scored)."""
    if kind not in KINDS:
        raise InputError(f"unknown mining kind {kind!r} (known: {', '.join(KINDS)})")

    def work(progress) -> int:
        cancel = lambda: progress.cancelled  # noqa: E731
        if kind == NOVELTY:
            n = score_novelty(d, k or 5, progress, cancel)
        elif kind == ANOMALY:
            n = score_anomaly(d, job, k or 10, progress, cancel)
        else:
            n = score_mislabel(d, k or 10, progress, cancel)
        progress.message(f"{n:,} scored")
        return n

    return work


def pool_jobs(d: Decisions) -> dict[str, int]:
    """The predict jobs that filled the pool (the sets anomaly can be scored within), with sizes."""
    return d.pool.counts("job")


__all__ = ["NOVELTY", "ANOMALY", "MISLABEL", "Scored", "score_novelty", "score_anomaly", "score_mislabel",
           "ranked", "all_scores", "mine_job", "exemplar_batches", "pool_jobs"]
