"""The labeling loop end to end on the tiny ViT and the embedded Redis: predict into the pool, review,
bulk accept, correct, undo, revert, conflicts between annotators, promotion, restart, exports."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from tests.fixtures_models import LABELS, label_image
from tests.fixtures_redis import make_project
from tests.test_store import retired, review_of
from vss_core.embed.embedder import Embedder
from vss_core.errors import IndexMismatch, InputError
from vss_core.labeling.decisions import Change, open_decisions
from vss_core.labeling.labelsheet import to_csv, to_fastapi_json, write_csv
from vss_core.labeling.loader import collect_folder, load_items
from vss_core.labeling.predict import collect_images, precheck, predict_paths
from vss_core.redis.exemplars import Record
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import ACCEPTED, CORRECTED, DUBIOUS, PREDICTED, VECTOR


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def queries(tmp_path_factory):
    root = tmp_path_factory.mktemp("queries")
    for k, label in enumerate(sorted(LABELS)):
        for i in range(4):
            label_image(label, seed=3000 + 10 * k + i).save(root / f"{label}_{i}.jpg", quality=90)
    (root / "sub").mkdir()
    label_image("circles", seed=3999).save(root / "sub" / "deep.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture
def decisions(redis_project, redis_client, embedder, image_folder):
    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    load_items(collect_folder(image_folder), embedder, d.exemplars, added_by="loader")
    return d


def _predict(decisions, embedder, queries, threshold=0.0):
    return predict_paths(collect_images(queries), embedder, decisions.exemplars, decisions.pool,
                         top_n=5, threshold=threshold)


def test_predict_fills_the_pool_once_and_lists_bad_files(decisions, embedder, queries):
    report = _predict(decisions, embedder, queries)
    assert report.predicted == 13 and report.skipped == 0
    assert [path for path, _ in report.failed] == [str(queries / "broken.jpg")]
    total, items = decisions.pool.page(limit=100)
    assert total == 13
    by_name = {item.name: item for item in items}
    assert "deep.png" in by_name  # the folder is read recursively
    right = sum(item.suggestion == item.name.split("_")[0] for item in items if "_" in item.name)
    assert right >= 10  # the tiny model's suggestions mostly match the query's kind
    item = by_name["squares_0.jpg"]
    assert item.status == PREDICTED and len(item.neighbors) == 5 and 0 < item.share <= 1
    again = _predict(decisions, embedder, queries)
    assert (again.predicted, again.skipped) == (0, 13)
    assert decisions.pool.info().count == 13
    assert decisions.exemplars.info().count == 18  # the pool never mixes with the exemplars


def test_least_confident_puts_uncertain_first(redis_project, embedder, image_folder, queries):
    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    load_items(collect_folder(image_folder), embedder, d.exemplars)
    bests = sorted(item.best for item in _all(d, embedder, queries))
    median = bests[len(bests) // 2]
    d.pool.client.delete(*[d.pool.key_for(i) for i in d.pool.ids(PoolFilter())])
    _predict(d, embedder, queries, threshold=median)
    _, ordered = d.pool.page(sort="least_confident")
    flags = [item.uncertain for item in ordered]
    assert any(flags) and not all(flags)
    assert flags == sorted(flags, reverse=True)  # every uncertain item before every certain one
    assert all(item.uncertain for item in ordered if item.best < median)
    _, most = d.pool.page(sort="most_confident")
    assert not most[0].uncertain
    with pytest.raises(InputError, match="unknown sort 'most confident'"):
        d.pool.page(sort="most confident")  # the page's words are not the engine's ids
    lo, hi = (bests[1] + bests[2]) / 2, (bests[-3] + bests[-2]) / 2
    total, ranged = d.pool.page(where=PoolFilter(min_score=lo, max_score=hi))
    assert total == sum(lo <= b <= hi for b in bests) and all(lo <= i.best <= hi for i in ranged)
    circles = d.pool.page(where=PoolFilter(suggestions=("circles",)))[1]
    assert circles and all(i.suggestion == "circles" for i in circles)


def _all(d, embedder, queries):
    _predict(d, embedder, queries)
    return d.pool.page(limit=100)[1]


def test_bulk_accept_promotes_with_the_pool_vector_and_undoes_as_one(decisions, embedder, queries):
    _predict(decisions, embedder, queries)
    chosen = decisions.pool.ids(PoolFilter(suggestions=("squares",), statuses=(PREDICTED,)))
    assert chosen
    result = decisions.apply([Change(id, ACCEPTED) for id in chosen], "ana", kind="bulk accept")
    assert set(result.applied) == set(chosen) and not result.refused
    counts = decisions.exemplars.label_counts()
    assert counts["squares"] == 6 + len(chosen)
    item = decisions.pool.get([chosen[0]])[0]
    assert item.status == ACCEPTED and item.annotator == "ana" and item.exemplar
    client = decisions.pool.client
    assert client.hget(item.exemplar, VECTOR) == client.hget(decisions.pool.key_for(item.id), VECTOR)
    assert client.hget(item.exemplar, "added_by") == b"ana"
    assert client.hget(item.exemplar, "pool_id").decode() == item.id
    undone = decisions.undo("ana")
    assert set(undone.applied) == set(chosen)
    assert decisions.exemplars.label_counts()["squares"] == 6
    assert {i.status for i in decisions.pool.get(chosen)} == {PREDICTED}
    with pytest.raises(InputError, match="nothing to undo"):
        decisions.undo("ana")


def test_correct_then_revert_and_history(decisions, embedder, queries):
    _predict(decisions, embedder, queries)
    item = decisions.pool.page(where=PoolFilter(suggestions=("circles",)))[1][0]
    decisions.apply([Change(item.id, ACCEPTED, "Calanus: finmarchicus – ♀ 仔魚", item.version)], "ana")
    corrected = decisions.pool.get([item.id])[0]
    assert corrected.status == CORRECTED and corrected.label == "Calanus: finmarchicus – ♀ 仔魚"
    assert decisions.exemplars.label_counts()["Calanus: finmarchicus – ♀ 仔魚"] == 1
    decisions.apply([Change(item.id, DUBIOUS, None, corrected.version)], "bob")
    history = decisions.history(item.id)
    assert [h.after["status"] for h in history] == [CORRECTED, DUBIOUS]
    assert [h.annotator for h in history] == ["ana", "bob"]
    assert "Calanus: finmarchicus – ♀ 仔魚" not in decisions.exemplars.label_counts()  # dubious: not an exemplar
    decisions.revert(item.id, 1, "bob")  # back to the state before bob's change
    back = decisions.pool.get([item.id])[0]
    assert (back.status, back.label) == (CORRECTED, "Calanus: finmarchicus – ♀ 仔魚")
    assert decisions.exemplars.label_counts()["Calanus: finmarchicus – ♀ 仔魚"] == 1
    kinds = [entry["kind"] for entry in decisions.audit()]
    assert kinds[:3] == ["revert", "decide", "decide"]


def test_two_annotators_never_overwrite_each_other(decisions, embedder, queries):
    _predict(decisions, embedder, queries)
    item = decisions.pool.page()[1][0]  # both see version 0
    assert decisions.apply([Change(item.id, ACCEPTED, None, item.version)], "bob").applied == (item.id,)
    result = decisions.apply([Change(item.id, ACCEPTED, "stripes", item.version)], "ana")
    assert result.applied == () and len(result.refused) == 1
    assert "bob" in result.refused[0].reason and "since you saw it" in result.refused[0].reason
    assert decisions.pool.get([item.id])[0].label == item.suggestion
    # a bulk action by query skips what someone already decided
    rest = decisions.pool.ids(PoolFilter())
    bulk = decisions.apply([Change(id, ACCEPTED) for id in rest], "ana")
    assert len(bulk.applied) == len(rest) - 1 and bulk.refused[0].id == item.id
    # undoing ana's bulk action leaves bob's decision alone
    decisions.undo("ana")
    assert decisions.pool.get([item.id])[0].annotator == "bob"


def test_undo_refuses_images_changed_since(decisions, embedder, queries):
    _predict(decisions, embedder, queries)
    item = decisions.pool.page()[1][0]
    decisions.apply([Change(item.id, ACCEPTED, None, item.version)], "ana")
    now = decisions.pool.get([item.id])[0]
    decisions.apply([Change(item.id, DUBIOUS, None, now.version)], "bob")
    result = decisions.undo("ana")
    assert result.applied == () and "bob" in result.refused[0].reason
    assert decisions.pool.get([item.id])[0].status == DUBIOUS


def test_annotator_and_labels_are_checked(decisions, embedder, queries):
    _predict(decisions, embedder, queries)
    item = decisions.pool.page()[1][0]
    with pytest.raises(InputError, match="name"):
        decisions.apply([Change(item.id, ACCEPTED)], "  ")
    with pytest.raises(InputError, match="empty label"):
        decisions.apply([Change(item.id, ACCEPTED, " ")], "ana")
    with pytest.raises(InputError, match="unknown status"):
        decisions.apply([Change(item.id, "maybe")], "ana")
    assert decisions.pool.get([item.id])[0].status == PREDICTED


def test_promotion_can_be_switched_off(redis_project, embedder, image_folder, queries):
    from dataclasses import replace

    d = open_decisions(replace(redis_project, promote=False), embedder.dim, embedder.model_name)
    load_items(collect_folder(image_folder), embedder, d.exemplars)
    _predict(d, embedder, queries)
    ids = d.pool.ids(PoolFilter())
    d.apply([Change(id, ACCEPTED) for id in ids], "ana")
    assert d.exemplars.info().count == 18


def test_empty_exemplar_index_is_one_clear_error(redis_project, embedder, queries):
    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    with pytest.raises(InputError, match="empty: load labeled exemplars"):
        precheck(d.exemplars)
    with pytest.raises(InputError, match="empty"):
        _predict(d, embedder, queries)


def test_label_sheet_and_fastapi_json_read_back(decisions, embedder, queries, tmp_path):
    _predict(decisions, embedder, queries)
    items = decisions.pool.page(limit=100)[1]
    decisions.apply([Change(items[0].id, ACCEPTED, "a/b, c", items[0].version)], "ana")
    rows = list(csv.DictReader(io.StringIO(to_csv(decisions.pool))))
    assert len(rows) == 13
    assert list(rows[0])[:4] == ["path", "label", "score", "status"]
    row = next(r for r in rows if r["id"] == items[0].id)
    assert (row["label"], row["status"], row["annotator"]) == ("a/b, c", CORRECTED, "ana")
    assert row["time"] and row["model"]
    path = write_csv(decisions.pool, tmp_path / "out")
    assert path.read_bytes().decode("utf-8") == to_csv(decisions.pool)
    payload = to_fastapi_json(decisions.pool)
    assert len(payload["filenames"]) == len(payload["predictions"]) == len(payload["scores"]) == 13
    assert all(len(p) == 5 for p in payload["predictions"])
    first = next(i for i, f in enumerate(payload["filenames"]) if f == items[1].source)
    assert payload["predictions"][first] == [n[0] for n in items[1].neighbors]
    assert payload["scores"][first] == [round(1 - n[2], 4) for n in items[1].neighbors]  # distances
    json.dumps(payload)


def test_state_survives_a_server_restart(tmp_path, embedder, image_folder, queries):
    from vss_core.redis.server import embedded_server

    project = make_project(tmp_path / "p", model=embedder.model_name)
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(image_folder), embedder, d.exemplars)
    _predict(d, embedder, queries)
    item = d.pool.page()[1][0]
    d.apply([Change(item.id, ACCEPTED, "survivor", item.version)], "ana")
    d.pool.sync()
    embedded_server(tmp_path / "p").stop()
    d2 = open_decisions(project, embedder.dim)
    try:
        again = d2.pool.get([item.id])[0]
        assert (again.label, again.status, again.annotator) == ("survivor", CORRECTED, "ana")
        assert d2.exemplars.label_counts()["survivor"] == 1
        assert d2.history(item.id)[0].after["label"] == "survivor"
        assert d2.undo("ana").applied == (item.id,)
        assert _predict(d2, embedder, queries).skipped == 13
    finally:
        embedded_server(tmp_path / "p").stop()


def test_index_records_its_model(redis_project, redis_client):
    from vss_core.redis.exemplars import open_store

    open_store(redis_project, 8, "model-a")
    with pytest.raises(IndexMismatch, match="model-a.*model-b"):
        open_store(redis_project, 8, "model-b")
    redis_client.flushall()
    redis_client.execute_command("FT.CREATE", "index", "ON", "HASH", "PREFIX", 1, "doc:", "SCHEMA", "tag", "TAG",
                                 "vector", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 8,
                                 "DISTANCE_METRIC", "COSINE")
    assert open_store(redis_project, 8, "model-b").info().model is None  # fastapi-vss's index: accepted


def test_relabel_never_overwrites(vector_store):
    vector_store.ensure_index(4)
    vector_store.add([Record("cat", "1", np.ones(4)), Record("dog", "1", np.full(4, 2.0))])
    result = review_of(vector_store).relabel(["doc:cat:1"], "dog", "ann")
    assert result.applied == () and "exists already" in result.refused[0].reason
    client = vector_store.client
    assert np.frombuffer(client.hget("doc:dog:1", "vector"), np.float32)[0] == 2.0
    assert client.exists("doc:cat:1")


ODD_LABELS = ["Calanus: finmarchicus – ♀ 仔魚", "🦑 squid", "a,b", "x/y", "with space", "UPPER", "upper",
              "tab\there", "semi;colon", "brace{}", "quote\"d", "back\\slash", "dash-ed", "ünïcödé",
              "at@sign", "pipe|bar", "100%", "hash#tag", "tilde~", "star*", "ナマコ", "emoji 🐙🦐"]


def test_odd_labels_list_delete_and_relabel(vector_store):
    vector_store.ensure_index(4)
    vector_store.add([Record(label, f"{i}", np.random.default_rng(i).random(4))
                      for i, label in enumerate(ODD_LABELS)])
    counts = vector_store.label_counts()
    assert counts == {label: 1 for label in ODD_LABELS}
    for i, label in enumerate(ODD_LABELS):
        listed = vector_store.exemplars(label)
        assert [e.label for e in listed] == [label], label
    review = review_of(vector_store)
    fixed = {label: label.replace("\t", " ") + " ✓" for label in ODD_LABELS[:10]}  # a tab is no label (validate_label)
    for i, label in enumerate(ODD_LABELS[:10]):
        assert review.relabel([vector_store.key_for(label, str(i))], fixed[label], "ann").applied, label
        assert vector_store.exemplars(fixed[label])[0].key == vector_store.key_for(fixed[label], str(i))
    for label in ODD_LABELS[10:]:
        assert retired(review.retire_label(label, "ann")) == 1, label
    assert set(vector_store.label_counts()) == set(fixed.values())



def test_flags_are_decisions_too(decisions, embedder, queries):
    from vss_core.redis.schema import RARE

    _predict(decisions, embedder, queries)
    item = decisions.pool.page()[1][0]
    decisions.apply([Change(item.id, None, None, item.version, flag=RARE)], "ana")
    now = decisions.pool.get([item.id])[0]
    assert now.status == PREDICTED and decisions.pool.page(where=PoolFilter(statuses=(PREDICTED,)))[0] == 13
    assert decisions.pool.client.hget(decisions.pool.key_for(item.id), "flag") == b"rare"
    with pytest.raises(InputError, match="unknown flag"):
        decisions.apply([Change(item.id, None, flag="shiny")], "ana")
    decisions.undo("ana")
    assert decisions.pool.client.hget(decisions.pool.key_for(item.id), "flag") == b""


def test_exemplar_keep_relabel_retire_and_undo(decisions):
    from vss_core.labeling.exemplar_review import ExemplarReview

    review = ExemplarReview(decisions)
    store = decisions.exemplars
    circle = store.exemplars("circles", limit=1)[0].key
    squares = [e.key for e in store.exemplars("squares", limit=2)]
    vector = store.client.hget(squares[0], "vector")
    assert review.retire(squares, "ana").applied == tuple(squares)
    assert store.label_counts()["squares"] == 4
    relabelled = review.relabel([circle], "stripes", "bob")
    assert store.label_counts() == {"circles": 5, "squares": 4, "stripes": 7}
    review.keep([store.exemplars("stripes", limit=1)[0].key], "bob")
    kinds = [e["kind"] for e in decisions.audit()]
    assert kinds[:3] == ["keep", "relabel", "retire"] and relabelled.applied == (circle,)
    decisions.undo("bob")  # keep
    decisions.undo("bob")  # relabel
    assert store.label_counts() == {"circles": 6, "squares": 4, "stripes": 6}
    decisions.undo("ana")  # retire
    assert store.label_counts()["squares"] == 6
    assert store.client.hget(squares[0], "vector") == vector
    other = store.exemplars("circles", limit=2)
    refused = review.relabel([other[0].key], "circles", "ana")  # same key: nothing to move
    assert refused.applied == (other[0].key,)
    store.add([Record("stripes", other[1].id, np.ones(store.layout().dim))])
    clash = review.relabel([other[1].key], "stripes", "ana")
    assert clash.applied == () and "exists already" in clash.refused[0].reason


def test_odd_file_names_predict_and_round_trip_to_the_sheet(decisions, embedder, tmp_path, image_folder):
    import os

    from vss_core.files.paths import text_path

    folder = tmp_path / "odd"
    folder.mkdir()
    raw = os.fsdecode(b"caf\xe9 \xff.jpg")  # not UTF-8
    (folder / raw).write_bytes((image_folder / "circles" / "circles_0.jpg").read_bytes())
    (folder / "fifo.jpg").parent.mkdir(exist_ok=True)
    os.mkfifo(folder / "fifo.jpg")
    report = predict_paths(collect_images(folder), embedder, decisions.exemplars, decisions.pool)
    assert report.predicted == 1 and not report.failed  # a FIFO is not a regular file: never listed
    rows = list(csv.DictReader(io.StringIO(to_csv(decisions.pool))))
    assert text_path(rows[0]["path"]) == folder / raw
    assert decisions.pool.page()[1][0].name == "caf\\xe9 \\xff.jpg"
