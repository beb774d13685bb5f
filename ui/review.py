"""The review grid: filters, a paged table of thumbnails with row selection, and the focused image
with keyboard actions.  Decisions go through vss_core.labeling.decisions; the session keeps only a page
number and a cursor."""

from __future__ import annotations

import base64

import streamlit as st

from ui import jobview, resources, state
from ui.plain import md
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError
from vss_core.labeling.audit import describe
from vss_core.labeling.decisions import Change
from vss_core.labeling.resuggest import KIND as RESUGGEST
from vss_core.labeling.resuggest import resuggest_job
from vss_core.redis.pool import BY_FILE, BY_SUGGESTION, LEAST_CONFIDENT, MOST_CONFIDENT, SORTS, PoolFilter
from vss_core.redis.schema import ACCEPTED, DUBIOUS, PREDICTED, SKIPPED, STATUSES

PAGE_SIZE = 100
PAGE, CURSOR, FLASH = "review_page", "review_cursor", "review_flash"
KEYS = {"accept": "A", "correct": "E", "dubious": "D", "skip": "S", "next": "J", "previous": "K", "undo": "U"}


def flash(kind: str, text: str) -> None:
    st.session_state[FLASH] = (kind, text)


def show_flash() -> None:
    kind, text = st.session_state.pop(FLASH, (None, None))
    if kind:
        getattr(st, kind)(md(text))


SORT_NAMES = {LEAST_CONFIDENT: "least confident", MOST_CONFIDENT: "most confident",
              BY_SUGGESTION: "suggested label", BY_FILE: "file"}


def filters(d) -> tuple[PoolFilter, str]:
    """The filter row; defaults show what is left to review, least confident first."""
    labels = sorted(d.pool.counts("tag"))
    c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 2, 1.5], vertical_alignment="bottom")
    statuses = c1.multiselect("Status", STATUSES, default=[PREDICTED], key="review_status")
    chosen = c2.multiselect("Label", labels, key="review_labels")
    low, high = c3.slider("Best score", -1.0, 1.0, (-1.0, 1.0), 0.01, key="review_scores")
    sort = c4.selectbox("Sort", list(SORTS), format_func=SORT_NAMES.get, key="review_sort")
    uncertain = c5.toggle("Uncertain", key="review_uncertain")
    where = PoolFilter(statuses=tuple(statuses), labels=tuple(chosen),
                       min_score=None if low <= -1 else low, max_score=None if high >= 1 else high,
                       uncertain_only=uncertain)
    return where, sort


def page_rows(d, where: PoolFilter, sort: str):
    """(total, items of the current page); the page number is clamped to what exists."""
    page = int(st.session_state.get(PAGE, 0))
    total, items = d.pool.page(where, sort, page * PAGE_SIZE, PAGE_SIZE)
    if not items and page:
        st.session_state[PAGE] = page = max(0, (total - 1) // PAGE_SIZE)
        total, items = d.pool.page(where, sort, page * PAGE_SIZE, PAGE_SIZE)
    return total, items


def pager(total: int) -> None:
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(int(st.session_state.get(PAGE, 0)), pages - 1)
    c1, c2, c3 = st.columns([1, 3, 1])
    if c1.button("◀ Page", disabled=page == 0, key="review_prev_page"):
        st.session_state[PAGE], st.session_state[CURSOR] = page - 1, 0
        st.rerun()
    c2.caption(f"Page {page + 1} of {pages} · {total:,} image(s) match")
    if c3.button("Page ▶", disabled=page >= pages - 1, key="review_next_page"):
        st.session_state[PAGE], st.session_state[CURSOR] = page + 1, 0
        st.rerun()


def thumb_uri(source: str) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(thumb_cache().get(source)).decode("ascii")


def grid(items) -> list[int]:
    """The page as a table with thumbnails; returns the selected row positions."""
    rows = [{"image": thumb_uri(i.source), "file": i.name, "suggestion": i.suggestion, "share": i.share,
             "best": i.best, "margin": i.margin, "flag": "uncertain" if i.uncertain else "",
             "status": i.status, "label": i.label, "annotator": i.annotator} for i in items]
    cfg = st.column_config
    event = st.dataframe(
        rows, key=f"review_grid_{st.session_state.get(PAGE, 0)}", on_select="rerun", selection_mode="multi-row",
        hide_index=True, row_height=64, height=min(720, 64 * len(rows) + 40),
        column_config={"image": cfg.ImageColumn("image", width="small"),
                       "share": cfg.NumberColumn("share", format="%.2f"),
                       "best": cfg.NumberColumn("best (cos)", format="%.3f"),
                       "margin": cfg.NumberColumn("margin", format="%.2f")})
    return list(event.selection.rows) if event else []


def focus_index(items, selected: list[int]) -> int:
    if len(selected) == 1:
        st.session_state[CURSOR] = selected[0]
    cursor = int(st.session_state.get(CURSOR, 0))
    return max(0, min(cursor, len(items) - 1))


def _decide(d, item_id: str, version: int, status: str, label: str | None, moves: bool) -> None:
    try:
        result = d.apply([Change(item_id, status, label, version)], state.annotator())
    except VSSError as e:
        flash("error", str(e))
        return
    if result.refused:
        flash("warning", f"Not saved: {result.refused[0].reason}. The grid shows the image as it is now.")
    elif moves:
        st.session_state[CURSOR] = int(st.session_state.get(CURSOR, 0)) + 1


def _move(step: int) -> None:
    st.session_state[CURSOR] = max(0, int(st.session_state.get(CURSOR, 0)) + step)


def undo(d) -> None:
    try:
        result = d.undo(state.annotator())
        flash("success" if not result.refused else "warning", f"Undone: {result.summary()}")
    except VSSError as e:
        flash("error", str(e))


def picked_label(known: list[str]) -> str | None:
    typed = (st.session_state.get("review_new_label") or "").strip()
    return typed or st.session_state.get("review_pick_label")


def focus(d, items, index: int, where: PoolFilter, known: list[str]) -> None:
    """The focused image: suggestion, scores, actions on single keys, neighbours and history."""
    item = items[index]
    stays = lambda status: not where.statuses or status in where.statuses  # noqa: E731
    can = bool(state.annotator())
    with st.container(border=True):
        left, right = st.columns([1, 3])
        left.image(thumb_cache().get(item.source), width=200)
        flag = " · :orange[uncertain]" if item.uncertain else ""
        if item.status == PREDICTED and item.generation < d.pool.generation():
            flag += " · :orange[stale: made before the exemplars last changed]"
        right.markdown(f"**{md(item.name)}** — suggested **{md(item.suggestion)}** ({item.share:.0%} of the vote, "
                       f"best cos {item.best:.3f}, margin {item.margin:.2f}){flag}  \n"
                       f"status **{md(item.status)}**, label **{md(item.label)}**"
                       + (f" by {md(item.annotator)} at {md(item.decided_at)}" if item.annotator else ""))
        right.selectbox("Correct to", known, index=known.index(item.label) if item.label in known else None,
                        key="review_pick_label", placeholder="pick a label")
        right.text_input("…or a new label", key="review_new_label")
        args = (d, item.id, item.version)
        b = st.columns(7)
        b[0].button("Accept", key="k_accept", shortcut=KEYS["accept"], disabled=not can, type="primary",
                    on_click=_decide, args=(*args, ACCEPTED, None, stays(ACCEPTED)))
        b[1].button("Correct", key="k_correct", shortcut=KEYS["correct"], disabled=not can,
                    on_click=lambda: _decide(*args, ACCEPTED, picked_label(known), stays(ACCEPTED)))
        b[2].button("Dubious", key="k_dubious", shortcut=KEYS["dubious"], disabled=not can,
                    on_click=_decide, args=(*args, DUBIOUS, None, stays(DUBIOUS)))
        b[3].button("Skip", key="k_skip", shortcut=KEYS["skip"], disabled=not can,
                    on_click=_decide, args=(*args, SKIPPED, None, stays(SKIPPED)))
        b[4].button("Previous", key="k_prev", shortcut=KEYS["previous"], on_click=_move, args=(-1,))
        b[5].button("Next", key="k_next", shortcut=KEYS["next"], on_click=_move, args=(1,))
        b[6].button("Undo", key="k_undo", shortcut=KEYS["undo"], disabled=not d.can_undo(state.annotator()),
                    on_click=undo, args=(d,))
        st.caption("Keys: " + " · ".join(f"**{k}** {name}" for name, k in KEYS.items())
                      + ". Correct uses the new label if typed, else the picked one.")
        with st.expander("Neighbours"):
            cols = st.columns(max(1, len(item.neighbors)))
            for col, (label, _id, score, source) in zip(cols, item.neighbors):
                col.image(thumb_cache().get(source), caption=f"{md(label)} · {score:.3f}", width=120)
        history(d, item.id)


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
