"""The shared threshold widget (ui/thresholds.py): by rank, share or score, on scores of any scale, all
equal, one or none; the exact value shown and the count it gives."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui import thresholds as th

TINY = np.array([0.0091, 0.0042, 0.0042, 0.0007, 0.00031, 0.0003, 0.0002, 0.0001, 0.00005, 0.00001])


def test_rank_share_and_value_on_scores_below_a_hundredth():
    desc = th.ordered(TINY)
    assert th.by_rank(desc, 3) == th.Cut(3, 0.0042, 10, 0)
    assert th.by_rank(desc, 2) == th.Cut(2, 0.0042, 10, 1)  # the tie cut through is said
    assert th.by_share(desc, 30).count == 3 and th.by_share(desc, 0.01).count == 1
    assert th.by_share(desc, 100).count == 10 and th.by_rank(desc, 99).count == 10
    assert th.by_value(desc, 0.0003).count == 6 and th.by_value(desc, 0.0003).value == 0.0003
    assert th.by_value(desc, 0.5).count == 0 and th.by_value(desc, 0.5).value is None
    assert th.steps(desc) == sorted(set(TINY.tolist()))  # few distinct scores: each one a step


def test_steps_come_from_the_range_and_include_both_ends():
    scores = np.random.default_rng(0).uniform(0.0013, 0.0087, 5000)
    options = th.steps(th.ordered(scores))
    assert len(options) == th.STEPS + 1
    assert options[0] == scores.min() and options[-1] == scores.max()
    assert np.allclose(np.diff(options), (scores.max() - scores.min()) / th.STEPS)


def test_the_value_is_shown_with_enough_decimals_to_tell_neighbours_apart():
    desc = th.ordered([0.9999, 0.9998, 0.9997, 0.999, 0.5])
    assert [th.shown(desc, v) for v in (0.9998, 0.9997, 0.999)] == ["0.9998", "0.9997", "0.9990"]
    desc = th.ordered([0.00012345, 0.00012346, 0.0001])
    assert th.shown(desc, 0.00012345) != th.shown(desc, 0.00012346)
    assert th.shown(th.ordered([0.00731]), 0.00731) == "0.007310"


def _app(scores, default_top=50):
    def app(scores, default_top):
        import streamlit as st

        from ui import thresholds

        cut = thresholds.threshold(scores, "t", score_name="novelty", default_top=default_top)
        st.text(f"cut {cut.count} {cut.value}")

    at = AppTest.from_function(app, args=(scores, default_top), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def _cut(at) -> str:
    return at.text[0].value


def test_widget_by_rank_share_and_value_on_tiny_scores():
    at = _app(TINY, default_top=3)
    assert _cut(at) == "cut 3 0.0042"
    assert "**3** of 10 image(s) · novelty ≥ **0.004200**" in at.markdown[0].value
    at.number_input(key="t_top").set_value(7).run()
    assert _cut(at) == "cut 7 0.0002"
    at.get("button_group")[0].set_value(th.SHARE).run()
    assert at.number_input(key="t_share").value == pytest.approx(70.0)  # the new mode starts where it was
    at.number_input(key="t_share").set_value(20.0).run()
    assert _cut(at) == "cut 2 0.0042" and "1 more score exactly that" in at.markdown[0].value
    at.get("button_group")[0].set_value(th.VALUE).run()
    slider = at.select_slider(key="t_value")
    assert len(slider.options) == 9 and len(set(slider.options)) == 9  # each distinct score, told apart
    slider.set_value(0.0007).run()
    assert _cut(at) == "cut 4 0.0007" and "novelty ≥ **0.0007000**" in at.markdown[0].value


@pytest.mark.parametrize("scores, want", [([0.004] * 6, "cut 6 0.004"), ([0.25], "cut 1 0.25"), ([], "cut 0 None")])
def test_widget_with_equal_one_or_no_scores(scores, want):
    at = _app(np.array(scores))
    assert _cut(at) == want
    if scores:
        at.get("button_group")[0].set_value(th.VALUE).run()
        assert not at.exception and _cut(at) == want
        assert "Every scored image scores exactly" in at.caption[0].value
        at.get("button_group")[0].set_value(th.SHARE).run()
        assert not at.exception and _cut(at) == want


def test_a_kept_choice_that_no_longer_fits_new_scores_starts_where_it_was():
    def app():
        import streamlit as st

        from ui import thresholds

        cut = thresholds.threshold(st.session_state["scores"], "t")
        st.text(f"cut {cut.count} {cut.value}")

    at = AppTest.from_function(app, default_timeout=30)
    at.session_state["scores"] = TINY
    at.run()
    at.number_input(key="t_top").set_value(9).run()
    at.session_state["scores"] = TINY[:3]  # scored again: fewer images
    at.run()
    assert not at.exception and _cut(at) == "cut 3 0.0042"
    at.session_state["scores"] = TINY
    at.run()
    at.get("button_group")[0].set_value(th.VALUE).run()
    at.select_slider(key="t_value").set_value(0.0003).run()
    assert _cut(at) == "cut 6 0.0003"
    at.session_state["scores"] = TINY + 0.5  # a new range: the old position is no step of it
    at.run()
    assert not at.exception and _cut(at) == f"cut 10 {TINY.min() + 0.5}"  # at or below 0.0003: everything
