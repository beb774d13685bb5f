"""fastapi-vss databases as MBARI builds them: ``mbari-aidata``'s ViTWrapper writes ``doc:<label>:<id>`` with
``tag`` = the model name.  VSS reads the label from the key everywhere, checks the model on attach, adopts
the database only when asked, upgrades its own older databases, and fastapi-vss reads what VSS writes."""

from __future__ import annotations

import csv
import io
from collections import Counter

import numpy as np
import pytest

from tests.fixtures_redis import make_project
from tests.peers import aidata_wrapper, fastapi_vss_predictor
from vss_core.embed.embedder import Embedder
from vss_core.errors import IndexMismatch
from vss_core.labeling.decisions import open_decisions
from vss_core.labeling.labelsheet import to_csv
from vss_core.labeling.loader import collect_folder, load_items
from vss_core.labeling.predict import collect_images, predict_paths
from vss_core.labeling.search import search
from vss_core.mining.runs import MISLABEL, exemplar_batches, ranked, score_mislabel
from vss_core.redis import migrations
from vss_core.redis.exemplars import VectorStore, open_store
from vss_core.redis.schema import LAYOUT_VERSION


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


def _labeled(image_folder):
    paths = sorted(p for p in image_folder.rglob("*") if p.is_file())
    names = [f"{p.parent.name}:{i}" for i, p in enumerate(paths)]
    return paths, names


@pytest.fixture
def aidata_db(redis_client, tiny_vit_dir, image_folder):
    """The database ``aidata load exemplars`` builds: real mbari-aidata code on the embedded Redis."""
    paths, names = _labeled(image_folder)
    wrapper = aidata_wrapper(redis_client, tiny_vit_dir)
    wrapper.load([str(p) for p in paths], names)
    return wrapper, Counter(name.split(":")[0] for name in names)


@pytest.fixture
def project(redis_data_dir, redis_client, tiny_vit_dir):
    return make_project(redis_data_dir, model=str(tiny_vit_dir))


def test_aidata_writes_the_model_name_in_tag_and_vss_reads_labels_from_keys(
        aidata_db, project, embedder, image_folder, redis_client, tiny_vit_dir):
    wrapper, truth = aidata_db
    assert {redis_client.hget(k, "tag") for k in redis_client.keys("doc:*")} == {str(tiny_vit_dir).encode()}
    store = open_store(project, embedder.dim)
    assert store.label_counts() == dict(truth)
    assert not migrations.is_adopted(store) and store.unlabeled_count() == sum(truth.values())
    query = sorted((image_folder / "stripes").iterdir())[0]
    result = search(embedder, store, [query], top_n=3)
    labels = {n.label for n in result.results[0].neighbors}
    assert labels <= set(truth) and result.results[0].neighbors[0].label == "stripes"
    page = store.exemplars("circles")
    assert len(page) == truth["circles"] and all(e.label == "circles" for e in page)
    assert {e.model for e in page} == {""} or {e.model for e in page} <= {str(tiny_vit_dir)}


def test_predict_audit_and_export_on_an_aidata_database_give_the_labels_of_the_keys(
        aidata_db, project, embedder, image_folder, tmp_path):
    _, truth = aidata_db
    d = open_decisions(project, embedder.dim)
    report = predict_paths(collect_images(image_folder), embedder, d.exemplars, d.pool, top_n=3, threshold=0.0)
    assert report.predicted == sum(truth.values())
    _, items = d.pool.page(limit=100)
    assert {item.suggestion for item in items} <= set(truth)
    assert all(label in truth for item in items for label, *_ in item.neighbors)
    rows = list(csv.DictReader(io.StringIO(to_csv(d.pool))))
    assert {row["suggestion"] for row in rows} <= set(truth)
    batches = list(exemplar_batches(d))
    assert Counter(label for _, labels, _ in batches for label in labels) == truth
    assert score_mislabel(d, k=3) == sum(truth.values())
    members = [scored.member for scored in ranked(d, MISLABEL, "", 0, 100)[1]]
    assert len(members) == sum(truth.values()) and all(m.startswith("doc:") for m in members)


def test_attach_with_another_model_is_refused_naming_both(aidata_db, redis_data_dir, embedder):
    other = make_project(redis_data_dir, model="facebook/dinov2-small")
    with pytest.raises(IndexMismatch, match="tiny-vit.*facebook/dinov2-small|facebook/dinov2-small.*tiny"):
        open_store(other, embedder.dim)


def test_two_models_in_one_index_are_refused_naming_both(aidata_db, project, embedder, redis_client):
    vector = np.ones(embedder.dim, np.float32).tobytes()
    redis_client.hset("doc:kelp:99", mapping={"vector": vector, "tag": "google/vit-base-patch16-224"})
    with pytest.raises(IndexMismatch, match="two models.*google/vit-base-patch16-224"):
        open_store(project, embedder.dim)


def test_adopt_indexes_labels_resumes_after_an_interruption_and_fastapi_vss_still_reads_it(
        aidata_db, project, embedder, image_folder, redis_client, tiny_vit_dir, monkeypatch):
    _, truth = aidata_db
    store = open_store(project, embedder.dim)
    monkeypatch.setattr(migrations, "BATCH", 2)
    calls = []

    def stop_after_first_batch(done, total):
        calls.append(done)
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrations.adopt(store, project.model, progress=stop_after_first_batch)
    assert redis_client.hget(store.schema.meta_key, "cursor:adopt") is not None
    report = migrations.adopt(store, project.model)
    assert report.resumed and report.total == sum(truth.values())
    assert migrations.is_adopted(store) and migrations.layout_version(store) == LAYOUT_VERSION
    assert store.unlabeled_count() == 0
    assert redis_client.hget(store.schema.meta_key, "cursor:adopt") is None
    hits = store.search("@label:{circles}", "NOCONTENT", "LIMIT", 0, 100)
    assert hits[0] == truth["circles"]
    assert store.label_counts() == dict(truth)
    assert {redis_client.hget(k, "tag") for k in redis_client.keys("doc:*")} == {str(tiny_vit_dir).encode()}

    query = str(sorted((image_folder / "squares").iterdir())[0])
    predictions, scores, ids = fastapi_vss_predictor(redis_client, tiny_vit_dir).predict([query], top_n=3)
    assert predictions[0][0] == "squares" and len(ids[0]) == 3


def test_fastapi_vss_reads_the_database_vss_builds(project, embedder, image_folder, redis_client, tiny_vit_dir):
    store = open_store(project, embedder.dim)
    load_items(collect_folder(image_folder), embedder, store, added_by="loader")
    tags = {redis_client.hget(k, "tag") for k in redis_client.keys("doc:*")}
    assert tags == {str(tiny_vit_dir).encode()}  # fastapi-vss's meaning of tag: the model
    queries = [str(sorted((image_folder / label).iterdir())[0]) for label in ("circles", "stripes")]
    predictions, scores, ids = fastapi_vss_predictor(redis_client, tiny_vit_dir).predict(queries, top_n=3)
    ours = search(embedder, store, queries, top_n=3).to_fastapi_json()
    assert predictions == ours["predictions"] and ids == ours["ids"]
    assert [p[0] for p in predictions] == ["circles", "stripes"]


def test_a_database_of_an_older_vss_is_upgraded_not_misread(project, redis_client, embedder):
    """Layout 1 (VSS before this change): ``tag`` held the label, ``label`` was not indexed."""
    redis_client.execute_command(
        "FT.CREATE", "index", "ON", "HASH", "PREFIX", 1, "doc:", "SCHEMA", "tag", "TAG", "SEPARATOR", "\x1f",
        "CASESENSITIVE", "vector", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", embedder.dim,
        "DISTANCE_METRIC", "COSINE")
    redis_client.hset("vss:meta:index", mapping={"model": project.model, "dim": embedder.dim})
    rng = np.random.default_rng(0)
    for i, label in enumerate(["a b", "a b", "cat", "x:y"]):
        redis_client.hset(f"doc:{label}:{i}", mapping={
            "vector": rng.normal(size=embedder.dim).astype(np.float32).tobytes(), "tag": label, "label": label,
            "model": project.model})
    store = open_store(project, embedder.dim)
    assert migrations.layout_version(store) == LAYOUT_VERSION
    assert {redis_client.hget(k, "tag") for k in redis_client.keys("doc:*")} == {project.model.encode()}
    assert store.label_counts() == {"a b": 2, "cat": 1, "x:y": 1}
    assert [e.key for e in store.exemplars("a b")] and store.unlabeled_count() == 0
    assert migrations.upgrade(VectorStore(redis_client, store.schema)) == []  # once only


def test_cli_adopt_labels_a_fastapi_vss_database(tmp_path, monkeypatch, capsys, tiny_vit_dir, image_folder):
    from vss_core.cli import main
    from vss_core.config.projects import load_projects
    from vss_core.redis.server import connect, embedded_server

    config = tmp_path / "config"
    config.mkdir()
    (config / "aidata.yml").write_text(f"vss:\n  project: aidata\n  model: {tiny_vit_dir}\n")
    monkeypatch.setenv("CONFIG_PATH", str(config))
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "data"))
    project = load_projects().get("aidata")
    try:
        client = connect(project)
        paths, names = _labeled(image_folder)
        aidata_wrapper(client, tiny_vit_dir).load([str(p) for p in paths], names)
        assert main(["stats", "aidata"]) == 0
        out = capsys.readouterr().out
        assert "not adopted" in out and "circles" in out
        assert main(["adopt", "aidata"]) == 0
        assert f"labeled {len(paths)} of {len(paths)}" in capsys.readouterr().out
        assert main(["stats", "aidata"]) == 0
        assert "layout:    2" in capsys.readouterr().out
    finally:
        embedded_server(project.data_dir).stop()


def test_exemplars_page_offers_adopt_and_asks_first(app_env, image_folder, tiny_vit_dir):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, EXEMPLARS, texts
    from vss_core.config.projects import load_projects
    from vss_core.redis.server import connect

    project = load_projects(app_env.config).projects["gamma"]
    client = connect(project)
    client.flushall()
    paths, names = _labeled(image_folder)
    aidata_wrapper(client, tiny_vit_dir).load([str(p) for p in paths], names)

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["project"] = "gamma"
    at.run()
    at.switch_page(EXEMPLARS).run()
    assert not at.exception
    assert "built by fastapi-vss's tools" in texts(at)
    assert {m.label: m.value for m in at.metric}["Labels"] == "3"  # labels from the keys before adoption
    assert client.hget("doc:circles:0", "label") is None
    at.button(key="ask_adopt").click().run()
    assert client.hget("doc:circles:0", "label") is None  # asked, not done
    at.button(key="adopt_yes").click().run()
    assert not at.exception
    assert "built by fastapi-vss's tools" not in texts(at)
    assert {m.label: m.value for m in at.metric}["Exemplars"] == str(len(paths))
    assert client.hget(sorted(client.keys("doc:circles:*"))[0], "label") == b"circles"


def test_vectors_of_another_model_added_to_a_vss_index_are_refused_on_attach(project, embedder, redis_client):
    store = open_store(project, embedder.dim)
    vector = np.ones(embedder.dim, np.float32).tobytes()
    redis_client.hset("doc:kelp:1", mapping={"vector": vector, "tag": "google/vit-base-patch16-224"})
    with pytest.raises(IndexMismatch, match="two models.*google/vit-base-patch16-224"):
        VectorStore(redis_client, store.schema).ensure_index(embedder.dim, project.model)
