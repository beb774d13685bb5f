"""Full passes have no silent limit: every pool id past 100,000, each once, filtered or not; a scan
stopped early leaves no cursor open; one that ends short raises; documents updated during a scan are
still seen; every exemplar of the index is read once, with the label of its key."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vss_core.errors import SearchIncomplete
from vss_core.labeling.decisions import Decisions
from vss_core.mining.runs import exemplar_batches
from vss_core.redis.exemplars import Record, VectorStore
from vss_core.redis.index_layout import value_after
from vss_core.redis.pool import PoolFilter, PoolStore
from vss_core.redis.schema import ACCEPTED, PREDICTED, TAG, VECTOR, project_layout

N = 100_050
ACCEPTED_EVERY = 2500  # ids 0, 2500, 5000, ...: 41 accepted, 100,009 predicted
DIM = 8


def _fill_pool(pool: PoolStore, n: int) -> None:
    """``n`` pool documents in the pool layout, written with raw pipelined HSETs (fast)."""
    vector = np.ones(DIM, np.float32).tobytes()
    for start in range(0, n, 5000):
        pool.write([("HSET", pool.key_for(f"img{i}"), VECTOR, vector, TAG, "a", "suggestion", "a",
                     "status", ACCEPTED if i % ACCEPTED_EVERY == 0 else PREDICTED, "job", f"job{i % 3}",
                     "best", (i % 100) / 100, "version", 0) for i in range(start, min(n, start + 5000))])


@pytest.fixture(scope="module")
def big_pool(embedded_redis):
    client = embedded_redis.client()
    client.flushall()
    pool = PoolStore(client, project_layout("scan").pool)
    pool.ensure_index(DIM)
    _fill_pool(pool, N)
    assert pool.info().count == N
    yield pool
    client.flushall()
    client.close()


def _cursors_open(index) -> int:
    info = index.client.execute_command("FT.INFO", index.index_name)
    return int(value_after(value_after(info, "cursor_stats"), "index_total"))


def test_every_pool_id_past_100000_comes_back_once(big_pool):
    ids = big_pool.ids(PoolFilter())
    assert len(ids) == N
    assert set(ids) == {f"img{i}" for i in range(N)}


def test_a_filtered_query_past_100000_comes_back_whole(big_pool):
    predicted = big_pool.ids(PoolFilter(statuses=(PREDICTED,)))
    expected = {f"img{i}" for i in range(N) if i % ACCEPTED_EVERY}
    assert len(predicted) == len(expected) and set(predicted) == expected
    accepted = big_pool.ids(PoolFilter(statuses=(ACCEPTED,), jobs=("job0",)))
    assert sorted(accepted) == sorted(f"img{i}" for i in range(0, N, ACCEPTED_EVERY) if i % 3 == 0)
    high = big_pool.ids(PoolFilter(min_score=0.5))
    assert len(high) == sum(1 for i in range(N) if i % 100 >= 50)


def test_a_scan_stopped_early_leaves_no_cursor_open(big_pool):
    scan = big_pool.scan(PoolFilter(statuses=(PREDICTED,)).query(), batch=500)
    first = next(scan)
    assert len(first) == 500 and _cursors_open(big_pool) == 1
    scan.close()
    assert _cursors_open(big_pool) == 0
    for _ in big_pool.scan(PoolFilter(statuses=(PREDICTED,)).query(), batch=500):
        break  # the consumer's break closes the generator too
    assert _cursors_open(big_pool) == 0


def test_a_scan_that_ends_short_raises_instead_of_answering_short(big_pool, monkeypatch):
    """What a server that stops a cursor early (ON_TIMEOUT RETURN on an external server) would do."""
    real = big_pool._cursor

    def stops_after_first_batch(*command):
        rows, cursor = real(*command)
        if cursor:
            big_pool._close_cursor(cursor)
        return rows, 0

    monkeypatch.setattr(big_pool, "_cursor", stops_after_first_batch)
    with pytest.raises(SearchIncomplete, match=r"saw 1,000 of 100,009"):
        big_pool.ids(PoolFilter(statuses=(PREDICTED,)))
    assert _cursors_open(big_pool) == 0


def test_a_cursor_that_expires_mid_scan_raises_naming_it(big_pool, monkeypatch):
    real, opened = big_pool._cursor, []

    def recording(*command):
        rows, cursor = real(*command)
        opened.append(cursor)
        return rows, cursor

    monkeypatch.setattr(big_pool, "_cursor", recording)
    scan = big_pool.scan(PoolFilter(statuses=(PREDICTED,)).query())
    next(scan)
    big_pool.client.execute_command("FT.CURSOR", "DEL", big_pool.index_name, opened[-1])  # as MAXIDLE would
    with pytest.raises(SearchIncomplete, match="cursor expired"):
        next(scan)


@pytest.fixture
def small(embedded_redis):
    """A second project on the server (other index names: the big pool stays)."""
    client = embedded_redis.client()
    layout = project_layout("small", prefix="small:")
    pool, exemplars = PoolStore(client, layout.pool), VectorStore(client, layout.exemplars)
    pool.ensure_index(DIM)
    exemplars.ensure_index(DIM)
    yield Decisions(pool, exemplars, layout)
    for index in (pool, exemplars):
        client.execute_command("FT.DROPINDEX", index.index_name, "DD")
    client.close()


def test_documents_updated_during_a_scan_are_still_seen_once(small):
    """A RediSearch cursor over "*" misses a document re-indexed meanwhile; the scan must not."""
    _fill_pool(small.pool, 300)
    seen = []
    scan = small.pool.scan(batch=50)
    seen += [key for key, _ in next(scan)]
    for i in range(300):  # every document rewritten (a decision does this) while the scan runs
        small.pool.client.hset(small.pool.key_for(f"img{i}"), "version", 1)
    seen += [key for rows in scan for key, _ in rows]
    assert Counter(seen) == Counter(small.pool.key_for(f"img{i}") for i in range(300))


def test_exemplar_batches_read_every_exemplar_once_with_the_label_of_its_key_while_some_change(small):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((250, DIM)).astype(np.float32)
    small.exemplars.add(Record(f"class{i % 3}", f"e{i}", v) for i, v in enumerate(vectors))
    # a hash under the prefix that the index refused (wrong dimension) is no exemplar
    small.exemplars.client.hset("small:class0:odd", mapping={VECTOR: np.ones(DIM + 1, np.float32).tobytes()})
    scan = exemplar_batches(small, batch=64)
    batches = [next(scan)]
    for key in batches[0][0]:  # the exemplars already read are rewritten (re-indexed) meanwhile
        small.exemplars.client.hset(key, "added_by", "bob")
    batches += list(scan)
    assert all(len(keys) <= 64 for keys, _, _ in batches)
    keys = [key for batch in batches for key in batch[0]]
    assert sorted(keys) == sorted(small.exemplars.key_for(f"class{i % 3}", f"e{i}") for i in range(250))
    by_key = {key: (label, vector) for ks, labels, vs in batches for key, label, vector in zip(ks, labels, vs)}
    for i in (0, 1, 249):
        label, vector = by_key[small.exemplars.key_for(f"class{i % 3}", f"e{i}")]
        assert label == f"class{i % 3}" and np.array_equal(vector, vectors[i])


def test_a_scan_returns_documents_that_lack_the_fields_asked_for(small):
    _fill_pool(small.pool, 120)
    rows = [row for rows in small.pool.scan("*", ("flag",), batch=50) for row in rows]
    assert len(rows) == 120 and all(values == {"flag": None} for _, values in rows)
    rows = [row for rows in small.pool.scan("@status:{predicted}", ("flag", VECTOR)) for row in rows]
    assert len(rows) == 119 and all(v["flag"] is None and len(v[VECTOR]) == DIM * 4 for _, v in rows)


def test_a_filtered_scan_while_annotators_decide_does_not_cry_incomplete(small):
    """Bulk accept scans "status = predicted" while others decide and a prediction adds images: documents
    leaving or joining the filter meanwhile are no loss."""
    _fill_pool(small.pool, 3000)
    where = PoolFilter(statuses=(PREDICTED,)).query()
    scan = small.pool.scan(where, batch=200)
    seen = [key for key, _ in next(scan)]
    for i in range(3000):  # half the pool is decided by someone else, the rest re-indexed, meanwhile
        small.pool.client.hset(small.pool.key_for(f"img{i}"), mapping={"status": ACCEPTED} if i % 2 else {"version": 1})
    vector = np.ones(DIM, np.float32).tobytes()
    small.pool.write([("HSET", small.pool.key_for(f"new{i}"), VECTOR, vector, "status", PREDICTED, "version", 0)
                      for i in range(2000)])  # and a prediction job adds images
    seen += [key for rows in scan for key, _ in rows]
    still = {small.pool.key_for(f"img{i}") for i in range(0, 3000, 2) if i % ACCEPTED_EVERY}
    assert still <= set(seen) and len(seen) == len(set(seen))


def test_the_label_sheet_lists_every_image_past_100000_by_name(big_pool):
    from vss_core.labeling.labelsheet import items

    names = [item.name for item in items(big_pool, PoolFilter(statuses=(ACCEPTED,)))]
    assert len(names) == N // ACCEPTED_EVERY + 1 and names == sorted(names, key=str.casefold)
    client = big_pool.client
    limit = client.execute_command("FT.CONFIG", "GET", "MAXSEARCHRESULTS")[0][1]
    client.execute_command("FT.CONFIG", "SET", "MAXSEARCHRESULTS", 50_000)  # the 1,000,000 cap, made small
    try:
        assert sum(1 for _ in items(big_pool)) == N  # LIMIT-offset paging stopped at the cap without a word
    finally:
        client.execute_command("FT.CONFIG", "SET", "MAXSEARCHRESULTS", limit)
