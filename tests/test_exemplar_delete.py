"""Deleting exemplars goes through their owner: the Exemplars page retires (audited, attributed, undoable), a
promoted pool image's document follows, the exemplar-set generation moves on; and the label rule
(``validate_label``) holds for labels typed into a decision or an exemplar relabel."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_app import EXEMPLARS, load_exemplars, open_app, texts
from tests.test_invariant import DIM, _current, check_invariant, small  # noqa: F401  (fixture)
from tests.test_store import fastapi_vss_index, fastapi_vss_write, retired, review_of
from vss_core.errors import InputError
from vss_core.labeling.decisions import Change, decisions_over
from vss_core.labeling.exemplar_review import RETIRE_CHUNK, ExemplarReview
from vss_core.redis import generation
from vss_core.redis.exemplars import Record
from vss_core.redis.index_layout import as_text
from vss_core.redis.schema import ACCEPTED, DUBIOUS, TAG_SEPARATOR

PROJECT = "beta"  # an app project no other test file keeps state in (test_app.py empties it before each test)
REVIEW = "pages/review.py"


def gen(d) -> int:
    return generation.current(d.client, d.layout.exemplars.name)


def _promoted(d, ids):
    d.apply([Change(ids[0], ACCEPTED, "circles", _current(d, ids[0]).version)], "ana")
    key = _current(d, ids[0]).exemplar
    assert key == d.exemplars.key_for("circles", ids[0])
    return key


# -- deleting is retiring, through the owner ---------------------------------------------------------

def test_deleting_a_label_with_a_promoted_exemplar_keeps_its_pool_image_in_step_and_undoes(small, redis_project):
    d, ids = small
    key = _promoted(d, ids)
    before, made = d.exemplars.label_counts(), gen(d)
    review = ExemplarReview(decisions_over(d.exemplars, redis_project))  # what the Exemplars page deletes through

    results = review.retire_label("circles", "cleaner")
    assert retired(results) == before["circles"] == 3 and [len(r.applied) for r in results] == [3]
    assert "circles" not in d.exemplars.label_counts()
    image = _current(d, ids[0])
    assert (image.status, image.exemplar, image.annotator) == (DUBIOUS, "", "cleaner")  # names no missing key
    assert not d.client.exists(key)
    check_invariant(d, ids, "label retired")
    assert gen(d) == made + 1
    assert [h.kind for h in d.history(ids[0])] == ["decide", "retire"]

    assert d.undo("cleaner").applied  # the audit's undo brings the label back, promoted exemplar included
    assert d.exemplars.label_counts() == before
    image = _current(d, ids[0])
    assert (image.status, image.label, image.exemplar) == (ACCEPTED, "circles", key)
    check_invariant(d, ids, "undone")
    assert gen(d) == made + 2


def test_deleting_one_promoted_exemplar_retires_it(small, redis_project):
    d, ids = small
    key = _promoted(d, ids)
    made = gen(d)
    review = ExemplarReview(decisions_over(d.exemplars, redis_project))
    assert review.retire([key], "cleaner").applied == (key,)
    assert (_current(d, ids[0]).status, _current(d, ids[0]).exemplar) == (DUBIOUS, "")
    check_invariant(d, ids, "retired")
    assert gen(d) == made + 1
    gone = review.retire([key], "cleaner")  # a second click on a stale page: refused, nothing moves
    assert gone.applied == () and "no such exemplar" in gone.refused[0].reason
    assert gen(d) == made + 1


def test_a_large_label_is_retired_in_chunks_each_undone_on_its_own(vector_store):
    vector_store.ensure_index(DIM)
    n = 2 * RETIRE_CHUNK + 3
    rng = np.random.default_rng(0)
    vector_store.add(Record("many", str(i), rng.random(DIM).astype(np.float32)) for i in range(n))
    vector_store.add([Record("other", "x", rng.random(DIM).astype(np.float32))])
    review = review_of(vector_store)
    made = generation.current(vector_store.client, vector_store.index_name)

    results = review.retire_label("many", "cleaner")
    assert [len(r.applied) for r in results] == [RETIRE_CHUNK, RETIRE_CHUNK, 3]
    assert len({r.action_id for r in results}) == 3
    assert vector_store.label_counts() == {"other": 1}
    assert generation.current(vector_store.client, vector_store.index_name) == made + 3
    d = review.d
    assert len(d.undo("cleaner").applied) == 3  # the last chunk first
    assert vector_store.label_counts() == {"many": 3, "other": 1}
    d.undo("cleaner"), d.undo("cleaner")
    assert vector_store.label_counts() == {"many": n, "other": 1}


def test_a_fastapi_vss_database_s_exemplars_are_retired_by_their_keys_and_come_back(redis_client):
    from vss_core.redis.exemplars import VectorStore

    fastapi_vss_index(redis_client)
    data = np.random.default_rng(1).random((4, DIM)).astype(np.float32)
    for i, label in enumerate(("cat", "cat", "dog", "x:y")):
        fastapi_vss_write(redis_client, label, str(i), data[i])
    store = VectorStore(redis_client)
    store.ensure_index(DIM)
    review = review_of(store)
    assert retired(review.retire_label("cat", "cleaner")) == 2
    assert retired(review.retire_label("x:y", "cleaner")) == 1
    assert store.label_counts() == {"dog": 1}
    review.d.undo("cleaner"), review.d.undo("cleaner")
    assert store.label_counts() == {"cat": 2, "dog": 1, "x:y": 1}
    assert store.knn(data[3], 1)[0][0].key == "doc:x:y:3"


# -- the label rule at every input ---------------------------------------------------------------------

BAD_LABELS = [("x" * 257, "at most 256"), (f"a{TAG_SEPARATOR}b", "tag separator"), ("a\nb", "line break"),
              ("a\tb", "control character")]


@pytest.mark.parametrize("label,why", BAD_LABELS)
def test_a_decision_with_a_label_that_cannot_be_one_is_refused(small, label, why):
    d, ids = small
    before = _current(d, ids[0])
    with pytest.raises(InputError, match=why) as info:
        d.apply([Change(ids[1], ACCEPTED, None, 0), Change(ids[0], ACCEPTED, label, before.version)], "ana")
    assert f"image {ids[0]}" in str(info.value)
    assert _current(d, ids[0]) == before and _current(d, ids[1]).status != ACCEPTED  # the whole action refused
    assert not d.can_undo("ana")


@pytest.mark.parametrize("label,why", BAD_LABELS)
def test_an_exemplar_relabel_to_a_label_that_cannot_be_one_is_refused(small, label, why):
    d, ids = small
    key = _promoted(d, ids)
    made = gen(d)
    with pytest.raises(InputError, match=why):
        ExemplarReview(d).relabel([key], label, "aud")
    assert d.client.exists(key) and gen(d) == made
    assert as_text(d.client.hget(d.pool.key_for(ids[0]), "label")) == "circles"


# -- the pages ------------------------------------------------------------------------------------

@pytest.fixture
def promoted_app(app_env):
    """Project ``beta`` emptied, exemplars loaded from the app's folder, queries predicted into the pool and one
    of them accepted (promoted to an exemplar)."""
    from ui import resources
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.predict import collect_images, predict_paths
    from vss_core.redis.server import connect

    project = load_projects(app_env.config).projects[PROJECT]
    connect(project).flushall()
    resources.forget_target(project)
    store = load_exemplars(app_env, PROJECT)
    embedder = Embedder(str(app_env.model), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    predict_paths(collect_images(app_env.queries), embedder, d.exemplars, d.pool, top_n=5, threshold=0.0)
    item = next(i for i in d.pool.page()[1] if i.suggestion == "circles")
    d.apply([Change(item.id, ACCEPTED, None, item.version)], "ana")
    assert _current(d, item.id).exemplar == store.key_for("circles", item.id)
    yield d, item.id
    connect(project).flushall()
    resources.forget_target(project)


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_the_exemplars_page_retires_says_so_and_undoes(promoted_app):
    d, id = promoted_app
    key = d.exemplars.key_for("circles", id)
    circles = d.exemplars.label_counts()["circles"]
    made = gen(d)
    at = open_app(PROJECT, annotator="cleaner", page=EXEMPLARS)
    at.selectbox(key="browse_label").set_value("circles").run()
    at.button(key="ask_delete_label").click().run()
    warning = " ".join(w.value for w in at.warning)
    assert "Retire every exemplar labeled" in warning and "undo it from the audit" in warning
    at.button(key="confirm_yes").click().run()
    assert not at.exception, at.exception
    assert f"Retired {circles} exemplar(s) labeled circles" in texts(at)
    assert _metrics(at)["Labels"] == "2" and "circles" not in at.selectbox(key="browse_label").options
    image = _current(d, id)
    assert (image.status, image.exemplar, image.annotator) == (DUBIOUS, "", "cleaner")
    check_invariant(d, [id], "page retired the label")
    assert gen(d) == made + 1

    at.button(key="exemplars_undo").click().run()
    assert "Undone" in texts(at) and _metrics(at)["Labels"] == "3"
    assert (_current(d, id).status, _current(d, id).exemplar) == (ACCEPTED, key)

    at.selectbox(key="browse_label").set_value("circles").run()  # and one exemplar, the promoted one
    at.selectbox(key="browse_exemplar").set_value(key).run()
    at.button(key="ask_delete_exemplar").click().run()
    assert "undo it from the audit" in " ".join(w.value for w in at.warning)
    at.button(key="confirm_yes").click().run()
    assert f"Retired 1 exemplar(s) {key}" in texts(at)
    assert (_current(d, id).status, _current(d, id).exemplar) == (DUBIOUS, "")
    check_invariant(d, [id], "page retired the exemplar")
    assert gen(d) == made + 3


def test_the_review_page_shows_why_a_typed_label_is_refused(promoted_app):
    d, _ = promoted_app
    before = d.pool.page()[1]
    from ui.workspace import _state_keys

    at = open_app(PROJECT, annotator="ana", page=REVIEW)
    item = next(i for i in before if i.status == "predicted")
    at.session_state[_state_keys("review_ws")[0]] = [{"client": "t", "seq": 1, "undo": 0, "decisions": [
        {"id": item.id, "version": item.version, "status": "accepted", "label": "x" * 300, "how": "single"}]}]
    at.run()  # a label typed in the focus view's picker, as the browser sends it
    assert not at.exception, at.exception
    assert "a label may have at most 256" in at.session_state["review_ws_conflicts"][item.id]  # shown on its tile
    assert d.pool.page()[1] == before  # nothing saved
