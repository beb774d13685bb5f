"""VectorStore on the real embedded Redis: layout, KNN, labels, fastapi-vss compatibility."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import redis

from vss_core.errors import IndexMismatch, SearchIncomplete, VSSError
from vss_core.labeling.decisions import Decisions
from vss_core.labeling.exemplar_review import ExemplarReview
from vss_core.redis.exemplars import Record, VectorStore, connect_store, open_store
from vss_core.redis.pool import PoolStore
from vss_core.redis.schema import project_layout

DIM = 8
SPECIAL = ["a", "b", "a,b", "a, b", "Cat", "cat", "x y", "x:y", "x-y", "ünï", "b|c", "{q}",
           "tab\tlabel", "it's", "50%", "a.b/c"]


def vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def fastapi_vss_index(client, dim: int = DIM, name: str = "index") -> None:
    """The index exactly as fastapi-vss creates it."""
    client.execute_command("FT.CREATE", name, "ON", "HASH", "PREFIX", 1, "doc:", "SCHEMA", "tag", "TAG",
                           "vector", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", dim,
                           "DISTANCE_METRIC", "COSINE")


def fastapi_vss_write(client, label: str, id: str, vector: np.ndarray) -> None:
    client.hset(f"doc:{label}:{id}", mapping={"vector": vector.astype(np.float32).tobytes(), "tag": label})


def review_of(store):
    """The audited exemplar actions (the only way exemplars leave the index or change label) over a bare store
    of the default layout; pool documents are read by key, so no pool index is needed."""
    layout = project_layout()
    return ExemplarReview(Decisions(PoolStore(store.client, layout.pool), store, layout))


def retired(results) -> int:
    """How many exemplars the chunked actions of ``ExemplarReview.retire_label`` retired."""
    return sum(len(r.applied) for r in results)


def test_round_trip(vector_store):
    info = vector_store.ensure_index(DIM)
    assert (info.name, info.dim, info.algorithm, info.count) == ("index", DIM, "FLAT", 0)
    data = vectors(9)
    records = [Record(label, f"id{i}", data[i], source=f"/img/{i}.jpg", added_by="ann", model="m1")
               for i, label in enumerate(["cat"] * 4 + ["dog"] * 3 + ["bird"] * 2)]
    assert vector_store.add(records) == 9
    assert vector_store.info().count == 9
    assert vector_store.exists(["doc:cat:id0", "doc:cat:nope"]) == [True, False]
    assert vector_store.exists([]) == []

    hits = vector_store.knn(data, 3)
    for i, neighbors in enumerate(hits):
        assert len(neighbors) == 3
        best = neighbors[0]
        assert (best.key, best.label, best.id, best.source) == (f"doc:{records[i].label}:id{i}",
                                                                records[i].label, f"id{i}", f"/img/{i}.jpg")
        assert best.score == pytest.approx(1.0, abs=1e-4)
        assert [n.score for n in neighbors] == sorted((n.score for n in neighbors), reverse=True)
    assert vector_store.knn(data[0], 1)[0][0].id == "id0"
    assert vector_store.knn(np.empty((0, DIM)), 3) == []

    assert vector_store.label_counts() == {"cat": 4, "dog": 3, "bird": 2}
    page = vector_store.exemplars("cat", offset=1, limit=2)
    assert len(page) == 2 and all(e.label == "cat" for e in page)
    every = vector_store.exemplars("cat")
    assert {e.id for e in every} == {"id0", "id1", "id2", "id3"} and page == every[1:3]
    first = every[0]
    assert (first.source, first.added_by, first.model) == ("/img/0.jpg", "ann", "m1")
    assert datetime.fromisoformat(first.added_at).tzinfo is not None

    review = review_of(vector_store)
    assert review.relabel(["doc:cat:id0"], "dog", "ann").applied == ("doc:cat:id0",)
    assert vector_store.exists(["doc:cat:id0", "doc:dog:id0"]) == [False, True]
    assert vector_store.knn(data[0], 1)[0][0].label == "dog"
    assert vector_store.label_counts() == {"cat": 3, "dog": 4, "bird": 2}

    assert review.retire(["doc:bird:id7"], "ann").applied == ("doc:bird:id7",)
    assert review.retire(["doc:bird:id7"], "ann").applied == ()
    assert retired(review.retire_label("dog", "ann")) == 4
    assert vector_store.label_counts() == {"cat": 3, "bird": 1}
    assert vector_store.exemplars("dog") == []


def test_relabel_missing_key_and_empty_label(vector_store):
    vector_store.ensure_index(DIM)
    vector_store.add([Record("cat", "1", vectors(1)[0])])
    review = review_of(vector_store)
    assert "doc:cat:nope" in review.relabel(["doc:cat:nope"], "dog", "ann").refused[0].reason
    with pytest.raises(VSSError, match="empty label"):
        review.relabel(["doc:cat:1"], "  ", "ann")
    with pytest.raises(VSSError, match="empty label"):
        vector_store.add([Record(" ", "1", vectors(1)[0])])


def test_knn_complete_when_k_exceeds_count(vector_store):
    vector_store.ensure_index(DIM)
    assert vector_store.knn(vectors(2), 5) == [[], []]
    vector_store.add(Record("a", str(i), v) for i, v in enumerate(vectors(3)))
    assert [len(h) for h in vector_store.knn(vectors(4, seed=1), 10)] == [3, 3, 3, 3]


@pytest.mark.parametrize("layout", ["ours", "fastapi-vss"])
def test_special_labels(redis_client, layout):
    store = VectorStore(redis_client)
    data = vectors(len(SPECIAL) * 2)
    if layout == "ours":
        store.ensure_index(DIM)
        store.add(Record(label, f"{i}{j}", data[2 * i + j]) for i, label in enumerate(SPECIAL) for j in range(2))
    else:
        fastapi_vss_index(redis_client)
        for i, label in enumerate(SPECIAL):
            for j in range(2):
                fastapi_vss_write(redis_client, label, f"{i}{j}", data[2 * i + j])
        store.ensure_index(DIM)
    assert store.label_counts() == {label: 2 for label in SPECIAL}
    for i, label in enumerate(SPECIAL):
        assert sorted(e.id for e in store.exemplars(label)) == [f"{i}0", f"{i}1"], label
        assert [e.label for e in store.exemplars(label, offset=1, limit=5)] == [label]
        assert store.knn(data[2 * i], 1)[0][0].label == label
    review = review_of(store)
    assert retired(review.retire_label("a,b", "ann")) == 2
    assert retired(review.retire_label("Cat", "ann")) == 2
    assert retired(review.retire_label("x:y", "ann")) == 2
    remaining = {label: 2 for label in SPECIAL if label not in ("a,b", "Cat", "x:y")}
    assert store.label_counts() == remaining


def test_attach_to_fastapi_vss_index(redis_client):
    fastapi_vss_index(redis_client)
    data = vectors(4)
    fastapi_vss_write(redis_client, "cat", "1", data[0])
    fastapi_vss_write(redis_client, "dog", "2", data[1])
    redis_client.hset("doc:old:style:3", mapping={"vector": data[2].tobytes()})
    before = redis_client.execute_command("FT.INFO", "index")[:8]

    store = VectorStore(redis_client, project_layout(algorithm="HNSW").exemplars)
    info = store.ensure_index(DIM)
    assert (info.dim, info.algorithm, info.count) == (DIM, "FLAT", 3)
    assert redis_client.execute_command("FT.INFO", "index")[:8] == before
    assert store.label_counts() == {"cat": 1, "dog": 1, "old:style": 1}
    hit = store.knn(data[2], 1)[0][0]
    assert (hit.key, hit.label, hit.id) == ("doc:old:style:3", "old:style", "3")
    assert [e.key for e in store.exemplars("old:style")] == ["doc:old:style:3"]
    assert store.exemplars("cat")[0].source == ""

    store.add([Record("bird", "4", data[3], source="/b.jpg", model="google/vit-base-patch16-224")])
    raw = redis_client.execute_command("FT.SEARCH", "index", "*=>[KNN 1 @vector $v AS s]", "PARAMS", 2,
                                       "v", data[3].tobytes(), "RETURN", 2, "tag", "s", "DIALECT", 2)
    assert raw[1] == b"doc:bird:4"
    assert dict(zip(raw[2][::2], raw[2][1::2]))[b"tag"] == b"google/vit-base-patch16-224"  # fastapi-vss's meaning


def test_dimension_mismatch_names_both(redis_client):
    VectorStore(redis_client).ensure_index(DIM)
    store = VectorStore(redis_client)
    with pytest.raises(IndexMismatch) as info:
        store.ensure_index(512)
    assert "8" in str(info.value) and "512" in str(info.value)
    with pytest.raises(IndexMismatch, match="512"):
        store.add([Record("a", "1", np.zeros(512))])
    with pytest.raises(IndexMismatch, match="16"):
        store.knn(np.zeros((1, 16)), 3)


def test_exemplar_and_pool_stores_take_the_model_the_same_way(redis_client):
    layout = project_layout()
    for make in (VectorStore, PoolStore):
        schema = layout.exemplars if make is VectorStore else layout.pool
        make(redis_client, schema).ensure_index(DIM, "org/model-a")
        with pytest.raises(IndexMismatch, match="org/model-a.*org/model-b"):
            make(redis_client, schema).ensure_index(DIM, "org/model-b")
    assert VectorStore(redis_client).ensure_index(DIM).algorithm == "FLAT"  # the algorithm is the schema's


def test_hnsw_index(redis_client):
    store = VectorStore(redis_client, project_layout(algorithm="hnsw", hnsw={"M": 8, "EF_CONSTRUCTION": 64,
                                                                             "EF_RUNTIME": 32}).exemplars)
    info = store.ensure_index(DIM)
    assert info.algorithm == "HNSW"
    attributes = redis_client.execute_command("FT.INFO", "index")[7]
    vector_attr = next(a for a in attributes if a[1] == b"vector")
    assert vector_attr[vector_attr.index(b"M") + 1] == 8
    data = vectors(300, seed=3)
    store.add(Record(f"l{i % 5}", str(i), v) for i, v in enumerate(data))
    hits = store.knn(data[:50], 5)
    assert sum(h[0].id == str(i) for i, h in enumerate(hits)) >= 48
    assert all(len(h) == 5 for h in hits)
    assert retired(review_of(store).retire_label("l0", "ann")) == 60
    assert all(len(h) == 5 and all(n.label != "l0" for n in h) for h in store.knn(data[:20], 5))


def test_resp3_client_is_accepted(embedded_redis, redis_client):
    client = redis.Redis(unix_socket_path=str(embedded_redis.socket_path), protocol=3)
    store = VectorStore(client)
    store.ensure_index(DIM)
    store.add([Record("a", "1", vectors(1)[0])])
    assert store.label_counts() == {"a": 1}
    assert store.knn(vectors(1), 1)[0][0].id == "1"


def test_open_and_connect_store(redis_project):
    empty = connect_store(redis_project)
    assert empty.info().dim is None and empty.info().count == 0
    assert empty.label_counts() == {}
    assert empty.exemplars("x") == []
    store = open_store(redis_project, DIM)
    assert store.info().dim == DIM
    with pytest.raises(IndexMismatch):
        open_store(redis_project, DIM * 2)


def test_open_project_opens_the_exemplars_now_and_the_pool_only_when_used(redis_project):
    """What the app, the REST service and the workers open: the REST API, which never reviews, leaves a
    fastapi-vss database without a pool index."""
    from vss_core.redis.project import open_project

    stores = open_project(redis_project, DIM)
    indexes = lambda: {i.decode() for i in stores.client.execute_command("FT._LIST")}  # noqa: E731
    assert stores.exemplars.info().dim == DIM and stores.layout.pool.name not in indexes()
    assert stores.pool.layout().dim == DIM and stores.layout.pool.name in indexes()
    assert stores.pool is stores.pool
    d = Decisions.of(stores, promote=False)
    assert d.stores is stores and d.pool is stores.pool and d.exemplars is stores.exemplars and not d.promote
    with pytest.raises(IndexMismatch):
        open_project(redis_project, DIM * 2)


def test_data_back_after_server_killed(tmp_path):
    import os
    import signal

    from tests.fixtures_redis import make_project
    from vss_core.redis.server import embedded_server

    project = make_project(tmp_path / "p")
    store = open_store(project, DIM)
    data = vectors(5)
    store.add(Record("cat", str(i), v) for i, v in enumerate(data))
    assert store.sync() is True
    server = embedded_server(project.data_dir)
    old_pid = server.pid
    try:
        os.kill(old_pid, signal.SIGKILL)
        hits = store.knn(data, 1)
        assert [h[0].id for h in hits] == ["0", "1", "2", "3", "4"]
        assert server.pid != old_pid and store.label_counts() == {"cat": 5}
    finally:
        server.stop()


@pytest.fixture
def big_store(redis_client):
    """25k x 768 FLAT: one KNN scan takes a few ms, far over a 1 ms timeout."""
    store = VectorStore(redis_client)
    store.ensure_index(768)
    data = vectors(25_000, 768, seed=7)
    store.add(Record(f"l{i % 40}", str(i), v) for i, v in enumerate(data))
    yield store, data
    redis_client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "FAIL")


def test_timeout_raises_instead_of_partial_results(big_store, redis_client):
    store, data = big_store
    assert [h[0].id for h in store.knn(data[:4], 10)] == ["0", "1", "2", "3"]
    assert sum(store.label_counts().values()) == 25_000
    hurried = VectorStore(redis_client, timeout_ms=1)
    for policy in ("FAIL", "RETURN"):
        redis_client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", policy)
        with pytest.raises(SearchIncomplete):
            hurried.knn(data[:4], 10)
        with pytest.raises(SearchIncomplete):
            hurried.label_counts()


def test_fastapi_vss_reads_an_index_vss_created(redis_client):
    """fastapi-vss's own search code (redis-py Query, key split into doc/label/id) on our index."""
    from redis.commands.search.query import Query

    store = VectorStore(redis_client)
    store.ensure_index(DIM)
    data = vectors(3)
    store.add([Record("copepod", "11", data[0], source="/c.jpg", added_by="ana"),
               Record("atolla", "12", data[1]), Record("atolla", "13", data[2])])
    query = (Query("*=>[KNN 2 @vector $vec as score]").sort_by("score")
             .return_fields("id", "score").paging(0, 2).dialect(2))
    docs = redis_client.ft("index").search(query, {"vec": data[1].tobytes()}).docs
    parts = [doc["id"].split(":") for doc in docs]
    assert [p[1] for p in parts if len(p) == 3][0] == "atolla"
    assert [p[2] for p in parts][0] == "12" and float(docs[0]["score"]) == pytest.approx(0.0, abs=1e-5)
