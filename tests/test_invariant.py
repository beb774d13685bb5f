"""One pool image, at most one exemplar, whatever order pool decisions, the exemplar audit, undo and revert
come in; undo as one transaction; a decision whose EXEC reply was lost is reported as saved."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import redis

from vss_core.labeling.decisions import Change, Decisions, open_decisions
from vss_core.labeling.exemplar_review import ExemplarReview
from vss_core.labeling.suggestions import suggestion_fields
from vss_core.redis.exemplars import Record
from vss_core.redis.index_layout import as_text
from vss_core.redis.pool import Prediction
from vss_core.redis.schema import ACCEPTED, DUBIOUS, PREDICTED, SKIPPED, STATUSES

DIM = 8
LABELS = ("circles", "squares", "stripes")
ANNOTATORS = ("ana", "bob", "cy")


def _vector(rng, k: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[k] = 1.0
    return (v + rng.normal(0, 0.2, DIM)).astype(np.float32)


def fill(d: Decisions, n_pool: int = 6, seed: int = 0) -> list[str]:
    """Two exemplars per label loaded from 'files', and ``n_pool`` predicted pool images; returns their ids."""
    rng = np.random.default_rng(seed)
    d.exemplars.add(Record(label, f"f{k}{i}", _vector(rng, k), source=f"/ex/{label}_{i}.jpg")
                    for k, label in enumerate(LABELS) for i in range(2))
    ids = [f"p{i}" for i in range(n_pool)]
    vectors = np.vstack([_vector(rng, i % 3) for i in range(n_pool)])
    predictions = []
    for id, v, hits in zip(ids, vectors, d.exemplars.knn(vectors, 3)):
        predictions.append(Prediction(id, f"/pool/{id}.jpg", f"{id}.jpg", v, suggestion_fields(hits, 0.5),
                                      "test-model"))
    d.pool.add(predictions, threshold=0.5)
    return ids


@pytest.fixture
def small(redis_project, redis_client):
    d = open_decisions(redis_project, DIM, "test-model")
    return d, fill(d)


def exemplars_of_pool(d: Decisions) -> dict[str, list[str]]:
    """pool id -> the exemplar keys (in the index) that carry it as ``pool_id``."""
    found: dict[str, list[str]] = {}
    for key in d.client.scan_iter(match=d.exemplars.prefix + "*", count=1000):
        pool_id = as_text(d.client.hget(key, "pool_id"))
        if pool_id:
            found.setdefault(pool_id, []).append(as_text(key))
    return found


def check_invariant(d: Decisions, ids: list[str], step: str = "") -> None:
    found = exemplars_of_pool(d)
    for id in ids:
        keys = found.get(id, [])
        assert len(keys) <= 1, f"{step}: pool image {id} has {len(keys)} exemplars: {keys}"
        named = as_text(d.client.hget(d.pool.key_for(id), "exemplar"))
        assert named == (keys[0] if keys else ""), f"{step}: pool doc of {id} names {named!r}, index has {keys}"


def _current(d, id):
    return d.pool.get([id])[0]


@pytest.mark.parametrize("audit", ["relabel", "retire"])
def test_audit_then_undo_then_accept_keeps_one_exemplar(small, audit):
    d, ids = small
    review = ExemplarReview(d)
    id = ids[0]
    d.apply([Change(id, ACCEPTED, "circles", _current(d, id).version)], "ana")
    key = _current(d, id).exemplar
    assert key == d.exemplars.key_for("circles", id)
    if audit == "relabel":
        assert review.relabel([key], "squares", "aud").applied == (key,)
        now = _current(d, id)
        assert (now.label, now.exemplar) == ("squares", d.exemplars.key_for("squares", id))
    else:
        assert review.retire([key], "aud").applied == (key,)
        now = _current(d, id)
        assert (now.status, now.exemplar) == (DUBIOUS, "")
    check_invariant(d, ids, audit)
    undone = d.undo("ana")  # the audit changed the image since ana's decision: refused, naming the auditor
    assert undone.applied == () and "aud" in undone.refused[0].reason
    check_invariant(d, ids, "undo")
    d.apply([Change(id, ACCEPTED, "stripes", _current(d, id).version)], "bob")
    check_invariant(d, ids, "accept stripes")
    assert exemplars_of_pool(d)[id] == [d.exemplars.key_for("stripes", id)]
    back = d.undo("aud")  # the image moved on since the audit: refused, and nothing comes back
    assert back.applied == () and "bob" in back.refused[0].reason
    check_invariant(d, ids, "undo audit")
    assert [h.kind for h in d.history(id)] == ["decide", audit, "decide"]


def test_undoing_the_audit_puts_exemplar_and_pool_image_back(small):
    d, ids = small
    review = ExemplarReview(d)
    id = ids[1]
    d.apply([Change(id, ACCEPTED, "circles", _current(d, id).version)], "ana")
    before = _current(d, id)
    review.relabel([before.exemplar], "squares", "aud")
    review.retire([_current(d, id).exemplar], "aud")
    check_invariant(d, ids)
    d.undo("aud")
    d.undo("aud")
    after = _current(d, id)
    assert (after.status, after.label, after.exemplar) == (before.status, "circles", before.exemplar)
    check_invariant(d, ids)


def _step(d, review, rng, ids, log, who: str | None = None):
    who = who or rng.choice(ANNOTATORS)
    op = rng.choice(("apply", "apply", "bulk", "relabel", "retire", "keep", "undo", "undo", "revert"))
    if op == "apply":
        id = rng.choice(ids)
        item = _current(d, id)
        version = item.version if rng.random() < 0.8 else max(0, item.version - 1)
        status = rng.choice(STATUSES + (ACCEPTED, ACCEPTED))
        label = rng.choice((None,) + LABELS)
        d.apply([Change(id, status, label, version)], who)
    elif op == "bulk":
        d.apply([Change(id, ACCEPTED) for id in rng.sample(ids, 3)], who, kind="bulk accept")
    elif op in ("relabel", "retire", "keep"):
        promoted = [k for keys in exemplars_of_pool(d).values() for k in keys]
        pool = promoted if promoted and rng.random() < 0.85 else [
            e.key for label in LABELS for e in d.exemplars.exemplars(label, limit=10)]
        if not pool:
            return op
        key = rng.choice(sorted(pool))
        review = ExemplarReview(d)
        if op == "relabel":
            review.relabel([key], rng.choice(LABELS), who)
        else:
            getattr(review, op)([key], who)
    elif op == "undo":
        if d.can_undo(who):
            d.undo(who)
    else:
        id = rng.choice(ids)
        history = d.history(id)
        if history:
            d.revert(id, rng.randrange(len(history)), who)
    return op


def test_random_interleaving_never_gives_a_pool_image_two_exemplars(small):
    d, ids = small
    review = ExemplarReview(d)
    rng = random.Random(13)
    done: dict[str, int] = {}
    for n in range(3000):
        op = _step(d, review, rng, ids, done)
        done[op] = done.get(op, 0) + 1
        check_invariant(d, ids, f"step {n} ({op})")
    assert min(done.values()) > 100, done  # every kind of step ran many times
    statuses = {i.status for i in d.pool.get(ids)}
    assert statuses - {PREDICTED}  # the walk did not stay at the start


def test_three_annotators_at_once_never_give_a_pool_image_two_exemplars(small):
    d, ids = small
    errors: list = []

    def walk(who: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                _step(d, None, rng, ids, {}, who)
        except Exception as exc:  # handed to the main thread, asserted there
            errors.append((who, exc))

    threads = [threading.Thread(target=walk, args=(who, 100 + i)) for i, who in enumerate(ANNOTATORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    check_invariant(d, ids, "after three concurrent walks")


# -- undo as one transaction ------------------------------------------------------------------------------

def test_two_undos_at_once_by_one_annotator_undo_two_actions(small):
    d, ids = small
    lost = []
    for attempt in range(30):
        a, b = ids[2 * (attempt % 3)], ids[2 * (attempt % 3) + 1]
        d.apply([Change(a, SKIPPED, None, _current(d, a).version)], "ana")
        d.apply([Change(b, SKIPPED, None, _current(d, b).version)], "ana")
        depth = d.client.llen(d.layout.undo_key("ana"))
        barrier = threading.Barrier(2)
        results: list = [None, None]

        def undo(slot: int) -> None:
            barrier.wait(timeout=30)
            try:
                results[slot] = d.undo("ana")
            except Exception as exc:  # handed to the main thread, asserted there
                results[slot] = exc

        threads = [threading.Thread(target=undo, args=(slot,)) for slot in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        applied = sorted(x for r in results for x in getattr(r, "applied", ()))
        left = depth - d.client.llen(d.layout.undo_key("ana"))
        statuses = [i.status for i in d.pool.get([a, b])]
        if applied != sorted([a, b]) or left != 2 or statuses != [PREDICTED, PREDICTED]:
            lost.append((attempt, results, left, statuses))
    assert not lost, lost[:3]


# -- a lost EXEC reply -----------------------------------------------------------------------------------

class DropExecReply(redis.UnixDomainSocketConnection):
    """A connection that loses the reply to the next ``drops`` EXECs: the server ran the transaction, the
    client sees a dropped connection (redis-py then retries the whole transaction)."""

    drops = 0

    def send_packed_command(self, command, check_health=True):
        data = command if isinstance(command, (bytes, str)) else b"".join(command)
        self.exec_sent = isinstance(data, bytes) and b"\r\nMULTI\r\n" in data and b"\r\nEXEC\r\n" in data
        super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):
        reply = super().read_response(*args, **kwargs)
        if getattr(self, "exec_sent", False) and isinstance(reply, list):
            self.exec_sent = False
            if DropExecReply.drops:
                DropExecReply.drops -= 1
                self.disconnect()
                raise redis.ConnectionError("connection dropped after EXEC (test)")
        return reply


@pytest.fixture
def dropping(small, embedded_redis):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from vss_core.redis.exemplars import VectorStore
    from vss_core.redis.pool import PoolStore

    d, ids = small
    pool = redis.ConnectionPool(connection_class=DropExecReply, path=str(embedded_redis.socket_path), protocol=2,
                                retry=Retry(NoBackoff(), 3, supported_errors=(redis.ConnectionError,)))
    client = redis.Redis(connection_pool=pool)
    flaky = Decisions(PoolStore(client, d.layout.pool), VectorStore(client, d.layout.exemplars), d.layout)
    yield flaky, ids
    DropExecReply.drops = 0
    client.close()


def test_a_decision_whose_exec_reply_was_lost_is_reported_as_saved(dropping):
    d, ids = dropping
    id = ids[0]
    DropExecReply.drops = 1
    result = d.apply([Change(id, ACCEPTED, "circles", _current(d, id).version)], "ana")
    assert DropExecReply.drops == 0  # the reply was really lost
    assert result.applied == (id,) and result.refused == ()
    item = _current(d, id)
    assert (item.status, item.version) == (ACCEPTED, 1)
    assert len(d.history(id)) == 1 and d.client.llen(d.layout.undo_key("ana")) == 1
    DropExecReply.drops = 1
    undone = d.undo("ana")
    assert undone.applied == (id,) and _current(d, id).status == PREDICTED
    assert d.client.llen(d.layout.undo_key("ana")) == 0 and len(d.history(id)) == 2


def test_an_audit_action_whose_exec_reply_was_lost_is_reported_as_saved(dropping):
    d, ids = dropping
    id = ids[0]
    d.apply([Change(id, ACCEPTED, "circles", _current(d, id).version)], "ana")
    key = _current(d, id).exemplar
    DropExecReply.drops = 1
    result = ExemplarReview(d).relabel([key], "squares", "aud")
    assert DropExecReply.drops == 0
    assert result.applied == (key,) and result.refused == ()
    assert _current(d, id).exemplar == d.exemplars.key_for("squares", id)
    DropExecReply.drops = 1
    undone = d.undo("aud")
    assert DropExecReply.drops == 0
    assert undone.applied == (d.exemplars.key_for("squares", id),) and _current(d, id).exemplar == key
    assert d.client.llen(d.layout.undo_key("aud")) == 0 and d.can_undo("ana")  # ana's action is still there
