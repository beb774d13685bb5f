"""The mining pages through AppTest with thresholds that fit the data and group actions that list every
member first: novelty scores all below 0.01 chosen by rank, share and value; a group of more than a page
listed page by page, then applied to exactly what was listed (recorded as a group action)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tests.test_app import open_app, texts
from tests.test_app_mining import pool, table  # noqa: F401  (fixture)
from tests.test_app_review import PROJECT, clean_project  # noqa: F401  (fixture)
from ui import thresholds as th


def plant_scores(d, kind: str, scores: dict[str, float], scope: str = "") -> None:
    """A complete ranking of ``kind`` as a finished run leaves it (scores chosen by the test)."""
    layout, client = d.stores.layout, d.stores.client
    client.delete(layout.scores_key(kind, scope))
    client.zadd(layout.scores_key(kind, scope), scores)
    client.hset(layout.scores_meta_key(kind, scope), mapping={
        "generation": d.pool.generation(), "k": 5, "model": "test", "at": "2026-01-01T00:00:00Z",
        "scored": len(scores), "complete": 1})


@pytest.fixture
def tiny(pool):  # noqa: F811
    """Every pool image's novelty below 0.01, the odd ones highest; returns (decisions, scores)."""
    from vss_core.mining import runs

    items = sorted(pool.pool.page(limit=100)[1], key=lambda i: (not i.name.startswith("zz_odd"), i.name))
    scores = {i.id: float(np.float32(0.0093 - 0.00031 * k)) for k, i in enumerate(items)}  # as a run stores them
    plant_scores(pool, runs.NOVELTY, scores)
    return pool, scores


def _rows(at) -> int:
    return len(table(at, "novelty"))


def _mode(at, mode: str):
    next(b for b in at.get("button_group") if b.key == "novel_mode").set_value(mode).run()
    assert not at.exception, at.exception


def test_rare_events_choose_top_n_share_or_value_when_every_score_is_below_a_hundredth(app_env, tiny):
    d, scores = tiny
    desc = sorted(scores.values(), reverse=True)
    at = open_app(PROJECT, annotator="ana", page="pages/rare.py")
    assert _rows(at) == len(scores)  # the default top 50: all 26
    at.number_input(key="novel_top").set_value(5).run()
    assert _rows(at) == 5 and table(at, "novelty")["file"].iloc[0].startswith("zz_odd")
    assert f"**5** of 26 image(s) · novelty ≥ **{desc[4]:.6f}**" in texts(at)
    _mode(at, th.SHARE)
    at.number_input(key="novel_share").set_value(20.0).run()
    assert _rows(at) == math.ceil(0.2 * 26) == 6
    _mode(at, th.VALUE)
    slider = at.select_slider(key="novel_value")
    assert len(slider.options) == 26  # each distinct score a step: none is out of reach
    slider.set_value(desc[9]).run()
    assert _rows(at) == 10 and f"novelty ≥ **{desc[9]:.6f}**" in texts(at)
    groups = [m.value for m in at.markdown if m.value.startswith("**Group ")]
    assert groups and "score first" not in texts(at).lower()


def _listed(at, key: str) -> list[str]:
    """The ids the open preview under ``key`` lists on its current page."""
    bodies = [h.proto.body for h in at.get("html") if f'data-for="{key}_preview"' in h.proto.body]
    assert len(bodies) == 1
    return re.findall(r'data-id="([^"]+)"', bodies[0])


def test_a_group_action_lists_every_member_page_by_page_and_applies_to_exactly_them(app_env, tiny, monkeypatch):
    from ui import group_action

    monkeypatch.setattr(group_action, "PER_PAGE", 6)  # a group of more than two pages in this small pool
    d, scores = tiny
    at = open_app(PROJECT, annotator="ana", page="pages/rare.py")
    at.slider(key="group_sim").set_value(0.0).run()
    n = int(re.search(r"\*\*Group 1\*\* · (\d+) image\(s\)", texts(at)).group(1))
    assert n > 12 and f"The first 8 of {n}" in texts(at)
    at.text_input(key="group0_new").set_value("odd thing").run()
    at.button(key="group0_assign").click().run()
    assert "odd thing" not in d.exemplars.label_counts()  # nothing applied yet
    pages = math.ceil(n / 6)
    listed = []
    for page in range(1, pages + 1):
        if page > 1:
            assert at.button(key="group0_apply").disabled  # not every page seen yet
            at.get("pagination")[0].set_value(page).run()
        assert f"{n} image(s): page {page} of {pages}" in texts(at)
        listed += _listed(at, "group0")
    assert len(listed) == len(set(listed)) == n and set(listed) <= set(scores)
    apply = at.button(key="group0_apply")
    assert not apply.disabled and apply.label == f"Apply to {n}"
    apply.click().run()
    assert f"group new class: {n} image(s) changed" in texts(at)
    assert all(i.label == "odd thing" and i.how == "group" for i in d.pool.get(listed))
    others = [i for i in d.pool.get(sorted(set(scores) - set(listed)))]
    assert others and all(i.label != "odd thing" for i in others)  # nothing that was not listed
    entries = [e for e in d.log.audit(200) if e["kind"] == "group new class" and e["target"] == "pool"]
    assert sorted(e["id"] for e in entries) == sorted(listed)
    assert d.exemplars.label_counts()["odd thing"] == n  # group decisions are promoted (the default policy)


def test_a_group_member_changed_after_listing_is_refused(app_env, tiny):
    from vss_core.labeling.decisions import Change

    d, scores = tiny
    at = open_app(PROJECT, annotator="ana", page="pages/rare.py")
    at.number_input(key="novel_top").set_value(6).run()
    at.slider(key="group_sim").set_value(0.0).run()
    at.button(key="group0_rare").click().run()
    listed = _listed(at, "group0")
    assert len(listed) == 6 and "6 image(s): page 1 of 1" in texts(at)
    item = d.pool.get([listed[0]])[0]
    d.apply([Change(item.id, None, expected_version=item.version, flag="dismissed")], "bob", "dismiss")
    at.button(key="group0_apply").click().run()
    assert "group mark rare event" in texts(at)
    flags = {i.id: i.flag for i in d.pool.get(listed)}
    assert flags.pop(item.id) == "dismissed" and set(flags.values()) == {"rare"}
