"""The Review page's parts around the tile workspace (ui.review_workspace): filters, flash messages, undo,
stale suggestions and an image's history."""

from __future__ import annotations

import base64

import streamlit as st

from ui import jobview, resources, state
from ui.plain import md
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError
from vss_core.labeling.audit import describe
from vss_core.labeling.resuggest import KIND as RESUGGEST
from vss_core.labeling.resuggest import resuggest_job
from vss_core.redis.pool import BY_FILE, BY_SUGGESTION, LEAST_CONFIDENT, MOST_CONFIDENT, SORTS, PoolFilter
from vss_core.redis.schema import PREDICTED, STATUSES

FLASH = "review_flash"


def flash(kind: str, text: str) -> None:
    st.session_state[FLASH] = (kind, text)


def show_flash() -> None:
    kind, text = st.session_state.pop(FLASH, (None, None))
    if kind:
        getattr(st, kind)(md(text))


SORT_NAMES = {LEAST_CONFIDENT: "least confident", MOST_CONFIDENT: "most confident",
              BY_SUGGESTION: "suggested label", BY_FILE: "file"}


FILTER_DEFAULTS = {"review_status": [PREDICTED], "review_labels": [], "review_scores": (-1.0, 1.0),
                   "review_sort": list(SORTS)[0], "review_page_size": 48, "review_uncertain": False}
"""The filter row's widget keys and their defaults: what is left to review, least confident first, 48 a page."""


def chosen_filter() -> tuple[PoolFilter, str, int]:
    """The filter row's values before its widgets are drawn (so the workspace can be drawn first): which
    images the workspace pages through, in which order, how many per page."""
    v = {k: st.session_state.get(k, default) for k, default in FILTER_DEFAULTS.items()}
    low, high = v["review_scores"]
    where = PoolFilter(statuses=tuple(v["review_status"]), labels=tuple(v["review_labels"]),
                       min_score=None if low <= -1 else low, max_score=None if high >= 1 else high,
                       uncertain_only=bool(v["review_uncertain"]))
    return where, v["review_sort"], int(v["review_page_size"])


def filters(d, sizes=(24, 48, 96)) -> None:
    """The filter row's widgets (read with :func:`chosen_filter`)."""
    f = FILTER_DEFAULTS
    labels = sorted(d.pool.counts("tag"))
    c1, c2 = st.columns(2)
    c1.multiselect("Status", STATUSES, default=f["review_status"], key="review_status")
    c2.multiselect("Label", labels, key="review_labels")
    row = st.container(horizontal=True, vertical_alignment="bottom")  # wraps when narrow: nothing is cut
    row.slider("Best score", -1.0, 1.0, f["review_scores"], 0.001, format="%.3f", key="review_scores", width=280)
    row.selectbox("Sort", list(SORTS), format_func=SORT_NAMES.get, key="review_sort", width=190)
    row.selectbox("Per page", sizes, index=list(sizes).index(f["review_page_size"]), key="review_page_size",
                  width=100)
    row.toggle("Uncertain", key="review_uncertain")


def thumb_uri(source: str) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(thumb_cache().get(source)).decode("ascii")


def undo(d) -> None:
    try:
        result = d.undo(state.annotator())
        flash("success" if not result.refused else "warning", f"Undone: {result.summary()}")
    except VSSError as e:
        flash("error", str(e))


def undo_button(d) -> None:
    """Undo the annotator's last saved action (a batch of tiles, a bulk accept, a group): always on the page."""
    st.button("Undo last saved action", key="review_undo", icon=":material/undo:",
              disabled=not state.annotator() or not d.can_undo(state.annotator()), on_click=undo, args=(d,),
              help="Undoes your last saved action as a whole (in the workspace, U undoes tile by tile)")


def stale_notice(d, threshold: float) -> None:
    """How many undecided suggestions are older than the exemplars, and a job that refreshes them."""
    project = state.current_project()
    stale = d.pool.stale_count(d.pool.generation())
    running = project is not None and any(j.active for j in jobview.jobs_to_show(project.name, RESUGGEST))
    if stale:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.warning(f"{stale:,} undecided suggestion(s) are stale: made before the exemplars last changed "
                   "(a new class, a load, a relabel, a retire, a promotion).", icon=":material/history:")
        blocked = running or project is None or not state.annotator()
        c2.button(f"Re-suggest {stale:,}", key="resuggest", disabled=blocked,
                  help="Find their nearest exemplars again (no new embedding) and refresh their suggestions",
                  on_click=_resuggest, args=(d, project, threshold))
    if project is not None:
        jobview.panel(project.name, RESUGGEST)


def _resuggest(d, project, threshold: float) -> None:
    try:
        resources.job_registry().start(RESUGGEST, resuggest_job(d, threshold), project=project.name,
                                       label="stale suggestions", added_by=state.annotator())
    except VSSError as e:
        flash("error", str(e))


def history(d, item_id: str) -> None:
    entries = d.history(item_id)
    if not entries:
        return
    with st.expander(f"History ({len(entries)})"):
        for i, e in enumerate(entries):
            c1, c2 = st.columns([5, 1])
            c1.caption(md(f"{e.at} · {e.annotator} · {e.kind}: {describe(e.before)} → {describe(e.after)}"))
            c2.button("Revert", key=f"revert_{item_id}_{i}", help="Back to the state before this change",
                      on_click=_revert, args=(d, item_id, i), disabled=not state.annotator())


def _revert(d, item_id: str, index: int) -> None:
    try:
        result = d.revert(item_id, index, state.annotator())
        flash("success" if result.applied else "warning", f"Reverted: {result.summary()}")
    except VSSError as e:
        flash("error", str(e))
