"""Thresholds that fit the data: which scored images a page shows, chosen by rank ("top 50"), by share
("top 5 %") or by score (a slider whose steps come from the scores' own range, never a fixed 0.01).  The
widget always says the exact score chosen, with enough decimals to tell it from its neighbours, and how
many images that gives; it works for scores of any scale, all equal, one or none.

A choice is a :class:`Cut`: the ``count`` highest-ranked images (Redis's order, highest score first), so a
page lists them with :meth:`Cut.rows` and every way of choosing leads to the same listing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import streamlit as st

from vss_core.mining import runs as mining_jobs

RANK, SHARE, VALUE = "Top N", "Top %", "Score ≥"
MODES = (RANK, SHARE, VALUE)
STEPS = 200  # the value slider's steps across the scores' range
MAX_DECIMALS = 12


@dataclass(frozen=True)
class Cut:
    """The top ``count`` of ``total`` scored images; ``value`` is the lowest score among them (None when
    none is chosen); ``ties``: images left out that score exactly ``value`` (a rank cut through a tie)."""

    count: int
    value: float | None
    total: int
    ties: int = 0

    def rows(self, stores, kind: str, scope: str = "", offset: int = 0, limit: int = 100) -> list:
        """The chosen images from ``offset``, at most ``limit`` (:class:`~vss_core.mining.runs.Scored`)."""
        n = max(0, min(limit, self.count - offset))
        return mining_jobs.ranked(stores, kind, scope, offset=offset, limit=n)[1] if n else []


def ordered(scores) -> np.ndarray:
    """The scores, highest first, as float64 (NaNs dropped)."""
    desc = np.sort(np.asarray(scores, np.float64).ravel())[::-1]
    return desc[~np.isnan(desc)]


def by_rank(desc: np.ndarray, n: int) -> Cut:
    """The top ``n`` (clamped to what there is)."""
    n = int(max(0, min(n, len(desc))))
    if not n:
        return Cut(0, None, len(desc))
    value = float(desc[n - 1])
    return Cut(n, value, len(desc), int(np.count_nonzero(desc[n:] == value)))


def by_share(desc: np.ndarray, percent: float) -> Cut:
    """The top ``percent`` % (at least one image when there is any and ``percent`` > 0)."""
    return by_rank(desc, math.ceil(len(desc) * max(0.0, min(percent, 100.0)) / 100.0 - 1e-9))


def by_value(desc: np.ndarray, value: float) -> Cut:
    """Every image scoring at or above ``value``."""
    n = int(np.count_nonzero(desc >= value))
    return Cut(n, float(desc[n - 1]) if n else None, len(desc))


def steps(desc: np.ndarray) -> list[float]:
    """The value slider's positions: every distinct score when there are at most STEPS + 1 of them, else
    STEPS equal steps ((max - min) / STEPS) from the lowest score to the highest, both exactly included."""
    distinct = np.unique(desc)
    if len(distinct) <= STEPS + 1:
        return [float(v) for v in distinct]
    grid = np.linspace(distinct[0], distinct[-1], STEPS + 1)
    grid[0], grid[-1] = distinct[0], distinct[-1]
    return [float(v) for v in grid]


def decimals(desc: np.ndarray, value: float, significant: int = 4, distinct: np.ndarray | None = None) -> int:
    """Decimals that show ``value`` with ``significant`` digits and tell it apart from the nearest other
    scores (so 0.9998 never reads as 0.9997 or 1.00); ``distinct``: ``np.unique(desc)`` when known."""
    d = max(2, significant - 1 - math.floor(math.log10(abs(value)))) if value else 2
    distinct = np.unique(desc) if distinct is None else distinct
    i = int(np.searchsorted(distinct, value))
    near = [float(distinct[j]) for j in (i - 1, i + 1) if 0 <= j < len(distinct)]
    near += [float(distinct[i])] if i < len(distinct) and distinct[i] != value else []
    while d < MAX_DECIMALS and any(f"{value:.{d}f}" == f"{other:.{d}f}" for other in near):
        d += 1
    return min(d, MAX_DECIMALS)


def shown(desc: np.ndarray, value: float) -> str:
    """``value`` with :func:`decimals` decimals."""
    return f"{value:.{decimals(desc, value)}f}"


def summary(cut: Cut, desc: np.ndarray, score_name: str) -> str:
    """What the cut gives, in words (Markdown)."""
    if not cut.count:
        return f"No image chosen, of {cut.total:,} scored."
    text = f"**{cut.count:,}** of {cut.total:,} image(s) · {score_name} ≥ **{shown(desc, cut.value)}**"
    if cut.ties:
        text += f" ({cut.ties:,} more score exactly that and are left out)"
    return text


def threshold(scores, key: str, *, score_name: str = "score", default_top: int = 50) -> Cut:
    """The threshold widget: choose by rank, share or score; shows the exact score chosen and how many
    images it gives.  ``key`` prefixes the widgets' keys (``{key}_mode``, ``_top``, ``_share``, ``_value``)."""
    desc = ordered(scores)
    if not len(desc):
        st.caption("Nothing is scored yet.")
        return Cut(0, None, 0)
    last = st.session_state.get(f"{key}_last")  # (count, value) of the previous run: a new mode starts there
    with st.container(horizontal=True, vertical_alignment="bottom"):
        mode = st.segmented_control("Choose by", MODES, default=RANK, required=True, key=f"{key}_mode",
                                    help="Top N: the N highest scores. Top %: a share of all scored images. "
                                         "Score ≥: every image at or above a score.") or RANK
        if mode == RANK:
            cut = by_rank(desc, _top(desc, key, last[0] if last else default_top))
        elif mode == SHARE:
            cut = by_share(desc, _share(desc, key, last))
    if mode == VALUE:
        cut = by_value(desc, _value(desc, key, last[1] if last else float(by_rank(desc, default_top).value)))
    st.session_state[f"{key}_last"] = (cut.count, cut.value)
    st.markdown(summary(cut, desc, score_name))
    return cut


def _top(desc: np.ndarray, key: str, default: int) -> int:
    n = len(desc)
    _forget_unless(f"{key}_top", lambda v: 1 <= v <= n)
    return int(st.number_input(f"Top (of {n:,})", 1, n, int(min(max(default, 1), n)), step=1, key=f"{key}_top",
                               width=150))


def _share(desc: np.ndarray, key: str, last) -> float:
    default = 100.0 * last[0] / len(desc) if last and last[0] else 5.0
    _forget_unless(f"{key}_share", lambda v: 0.01 <= v <= 100.0)
    return float(st.number_input("Top %", 0.01, 100.0, round(min(max(default, 0.01), 100.0), 2), step=1.0,
                                 format="%.2f", key=f"{key}_share", width=150))


def _value(desc: np.ndarray, key: str, default: float) -> float:
    options = steps(desc)
    if len(options) == 1:
        st.caption(f"Every scored image scores exactly {shown(desc, options[0])}.")
        return options[0]
    _forget_unless(f"{key}_value", lambda v: v in options)
    distinct = np.unique(desc)
    every = np.unique(np.concatenate([distinct, options]))  # each position told apart from the next one
    return float(st.select_slider("Score at or above", options, value=_nearest_at_or_below(options, default),
                                  format_func=lambda v: f"{v:.{decimals(desc, v, distinct=every)}f}",
                                  key=f"{key}_value"))


def _nearest_at_or_below(options: list[float], value) -> float:
    """The highest position at or below ``value`` (the lowest when none is), so no image is lost."""
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return options[0]
    i = int(np.searchsorted(options, value, side="right")) - 1
    return options[max(i, 0)]


def _forget_unless(widget_key: str, valid) -> None:
    """Drop a kept widget value that no longer fits (the scores changed): the widget then starts from its
    default, which is where the previous choice was."""
    if widget_key in st.session_state:
        try:
            ok = bool(valid(st.session_state[widget_key]))
        except TypeError:
            ok = False
        if not ok:
            del st.session_state[widget_key]


__all__ = ["Cut", "RANK", "SHARE", "VALUE", "threshold", "ordered", "by_rank", "by_share", "by_value", "steps",
           "decimals", "shown", "summary"]
