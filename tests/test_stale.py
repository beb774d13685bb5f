"""Stale work: every change of the exemplar set moves the generation on; pool suggestions and mining score sets
record the one they were made at, a re-suggest refreshes undecided images only, and a cancelled scoring run
never leaves a partial ranking that looks complete."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_invariant import _current, small  # noqa: F401  (fixture)
from vss_core.labeling.decisions import Change
from vss_core.labeling.exemplar_review import ExemplarReview
from vss_core.labeling.resuggest import resuggest
from vss_core.mining import runs as mining_jobs
from vss_core.redis import generation
from vss_core.redis.exemplars import Record
from vss_core.redis.schema import ACCEPTED, DUBIOUS, PREDICTED


def gen(d) -> int:
    return generation.current(d.client, d.layout.exemplars.name)


def test_every_change_of_the_exemplar_set_moves_the_generation_on(small):
    d, ids = small
    review = ExemplarReview(d)
    steps = []

    def step(name, fn):
        before = gen(d)
        fn()
        steps.append((name, gen(d) - before))

    step("dubious (no exemplar)", lambda: d.apply([Change(ids[0], DUBIOUS, None, 0)], "ana"))
    step("accept (promotes)", lambda: d.apply([Change(ids[1], ACCEPTED, None, 0)], "ana"))
    key = _current(d, ids[1]).exemplar
    step("keep", lambda: review.keep([key], "aud"))
    step("relabel", lambda: review.relabel([key], "rings", "aud"))
    step("retire", lambda: review.retire([d.exemplars.key_for("rings", ids[1])], "aud"))
    step("undo retire", lambda: d.undo("aud"))
    step("load", lambda: d.exemplars.add([Record("rings", "new", np.ones(8, np.float32))]))
    step("delete label", lambda: review.retire_label("rings", "aud"))
    assert steps == [("dubious (no exemplar)", 0), ("accept (promotes)", 1), ("keep", 0), ("relabel", 1),
                     ("retire", 1), ("undo retire", 1), ("load", 1), ("delete label", 1)]


def test_suggestions_record_their_generation_and_go_stale(small):
    d, ids = small
    made = gen(d)
    assert made >= 1 and {i.generation for i in d.pool.get(ids)} == {made}
    assert d.pool.stale_count(gen(d)) == 0
    d.apply([Change(ids[1], ACCEPTED, None, 0)], "ana")  # a promotion: the exemplars changed
    assert gen(d) == made + 1
    assert d.pool.stale_count(gen(d)) == len(ids) - 1  # every undecided one


def test_resuggest_refreshes_undecided_suggestions_only(small):
    d, ids = small
    d.apply([Change(ids[1], ACCEPTED, None, 0)], "ana")
    decided = _current(d, ids[1])
    circles = [e.key for e in d.exemplars.exemplars("circles", limit=10)]
    ExemplarReview(d).relabel(circles, "rings", "aud")  # the 'circles' class is now called 'rings'
    class0 = [id for i, id in enumerate(ids) if i % 3 == 0]
    assert {_current(d, id).suggestion for id in class0} == {"circles"}
    report = resuggest(d, threshold=0.5)
    assert (report.checked, report.rewritten, report.left) == (len(ids) - 1, len(ids) - 1, 0)
    for id in class0:
        item = _current(d, id)
        assert (item.suggestion, item.label, item.generation, item.version) == ("rings", "rings", gen(d), 1)
        assert {n[0] for n in item.neighbors} <= {"rings", "squares", "stripes"}
    assert _current(d, ids[1]) == decided  # decided: never rewritten
    assert d.pool.stale_count(gen(d)) == 0
    assert resuggest(d, threshold=0.5).rewritten == 0  # nothing stale is left


def test_resuggest_leaves_an_image_decided_meanwhile_alone(small):
    d, ids = small
    d.exemplars.add([Record("rings", "r", np.ones(8, np.float32))])
    item = _current(d, ids[0])
    fields = {"suggestion": "rings", "generation": gen(d)}
    d.apply([Change(ids[0], ACCEPTED, None, item.version)], "ana")  # decided after the re-suggest read it
    assert d.pool.rewrite_suggestions([(ids[0], item.version, fields)]) == 0
    other = _current(d, ids[2])
    d.apply([Change(ids[2], None, None, other.version, flag="rare")], "ana")  # still undecided, but moved on
    assert d.pool.rewrite_suggestions([(ids[2], other.version, fields)]) == 0
    assert d.pool.rewrite_suggestions([(ids[2], other.version + 1, fields)]) == 1
    assert _current(d, ids[0]).suggestion != "rings" and _current(d, ids[2]).suggestion == "rings"


class CancelAfter:
    def __init__(self, checks: int):
        self.left = checks

    def __call__(self) -> bool:
        self.left -= 1
        return self.left < 0


@pytest.mark.parametrize("kind", [mining_jobs.NOVELTY, mining_jobs.MISLABEL])
def test_a_cancelled_scoring_run_never_leaves_a_partial_ranking(small, monkeypatch, kind):
    d, ids = small
    monkeypatch.setattr(mining_jobs, "CHUNK", 2)
    score = {mining_jobs.NOVELTY: mining_jobs.score_novelty, mining_jobs.MISLABEL: mining_jobs.score_mislabel}[kind]
    if kind == mining_jobs.MISLABEL:  # exemplar batches of 2 as well
        real = mining_jobs.exemplar_batches
        monkeypatch.setattr(mining_jobs, "exemplar_batches", lambda d, batch=2: real(d, 2))
    whole = len(ids) if kind == mining_jobs.NOVELTY else d.exemplars.info().count
    assert score(d, k=2, cancel=CancelAfter(1)) == 2  # one chunk, then cancelled: nothing published
    assert mining_jobs.ranked(d, kind)[0] == 0
    first = mining_jobs.score_set(d, kind)
    assert first.cancelled_at and not first.complete and first.scored == 0
    assert score(d, k=2) == whole
    done = mining_jobs.score_set(d, kind)
    assert (done.complete, done.scored, done.k, done.generation, done.stale) == (True, whole, 2, gen(d), False)
    assert not done.cancelled_at
    before = mining_jobs.ranked(d, kind, limit=100)
    d.exemplars.add([Record("rings", "r", np.ones(8, np.float32))])  # the exemplars change ...
    assert mining_jobs.score_set(d, kind).stale
    assert score(d, k=2, cancel=CancelAfter(1)) == 2  # ... and a new run is cancelled: the last complete one stays
    assert mining_jobs.ranked(d, kind, limit=100) == before
    kept = mining_jobs.score_set(d, kind)
    assert kept.complete and kept.cancelled_at and kept.stale and kept.scored == whole
    assert not list(d.client.scan_iter(match=d.layout.scores_tmp_key(kind, "", "*")))


def test_a_pool_made_by_an_older_vss_gains_the_field_and_reads_as_stale(redis_project, redis_client):
    from dataclasses import replace

    from vss_core.labeling.decisions import open_decisions
    from vss_core.redis import migrations
    from vss_core.redis.index_layout import create_index
    from vss_core.redis.pool import PoolStore
    from vss_core.redis.schema import layout_for

    layout = layout_for(redis_project)
    older = replace(layout.pool, numbers=tuple(n for n in layout.pool.numbers if n != "generation"))
    create_index(redis_client, older, 8)
    migrations.record_new(PoolStore(redis_client, older), 8, "test-model")
    redis_client.hset(layout.pool.key("old"), mapping={
        "vector": np.ones(8, np.float32).tobytes(), "status": PREDICTED, "label": "x", "tag": "x", "suggestion": "x",
        "version": 0, "neighbors": "[]"})
    d = open_decisions(redis_project, 8, "test-model")
    d.exemplars.add([Record("rings", "r", np.ones(8, np.float32))])
    assert d.pool.stale_count(gen(d)) == 1  # no generation: of unknown age
    assert resuggest(d, threshold=0.5).rewritten == 1
    assert d.pool.stale_count(gen(d)) == 0 and _current(d, "old").suggestion == "rings"
