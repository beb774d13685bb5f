"""Widgets the mining pages share: start a scoring job, a score histogram with its threshold, a table of
scored pool images with thumbnails and selection, and audited flag / label actions on a selection."""

from __future__ import annotations

import altair as alt
import numpy as np
import streamlit as st

from ui import jobview, resources, state
from ui.plain import md
from ui.review import flash, show_flash, thumb_uri
from vss_core.errors import VSSError
from vss_core.jobs import runner
from vss_core.labeling.decisions import Change
from vss_core.mining import runs as mining_jobs

KIND = "mine"
TITLES = {mining_jobs.NOVELTY: "novelty of the pool", mining_jobs.ANOMALY: "anomaly within a set",
          mining_jobs.MISLABEL: "exemplar audit"}


def page(title: str, caption: str):
    """Open the current project for a mining page: its context and decisions, the title, the last
    action's message and what the page's score means."""
    ctx = state.open_project()
    d = resources.decisions_for(ctx.project, ctx.embedder.dim)
    st.title(title)
    show_flash()
    st.caption(caption)
    return ctx, d


def start(ctx, d, what: str, scope: str = "", k: int | None = None) -> None:
    """A button that scores ``what`` as a background job (one mining job per project at a time)."""
    busy = any(j.active for j in jobview.jobs_to_show(ctx.project.name, KIND))
    if st.button(f"Score {TITLES[what]}", key=f"mine_{what}", type="primary", disabled=busy,
                 icon=":material/radar:"):
        try:
            worker = _body(ctx, d, what, scope, k)
            resources.job_registry().start(KIND, worker, project=ctx.project.name, what=what, scope=scope,
                                           label=f"{TITLES[what]}{' of ' + scope if scope else ''}",
                                           added_by=state.annotator())
            st.rerun()
        except VSSError as e:
            st.error(md(e))
    freshness(d, what, scope)
    jobview.panel(ctx.project.name, KIND, on_resume=lambda snap: _resume(ctx, d, snap))


def freshness(d, what: str, scope: str = "") -> None:
    """Say what the shown ranking was made from, and whether it is stale (older than the exemplars),
    incomplete or of unknown age."""
    made = mining_jobs.score_set(d.stores, what, scope)
    if made is None:
        return
    if not made.known:
        st.warning("Stale: this ranking was made by an older VSS, with no record of when or whether it finished. "
                   "Score again.", icon=":material/history:")
        return
    if made.cancelled_at:
        st.caption(f"The run started before {made.cancelled_at} was cancelled: "
                   + ("this is the last complete ranking." if made.complete else "there is no complete ranking yet."))
    if not made.complete:
        return
    about = f"{made.scored:,} scored at {made.at} (k={made.k}, exemplar generation {made.generation})"
    if made.stale:
        st.warning(f"Stale: the exemplars changed since this ranking was made ({about}; generation now "
                   f"{made.current}). Score again to update it.", icon=":material/history:")
    else:
        st.caption(f"Up to date with the exemplars: {about}.")


def _body(ctx, d, what: str, scope: str, k: int | None = None):
    return runner.job_body(ctx.project, KIND, dict(what=what, scope=scope, k=k),
                           lambda: mining_jobs.mine_job(what, d.stores, scope, k))


def _resume(ctx, d, snap) -> None:
    worker = _body(ctx, d, snap.meta["what"], snap.meta.get("scope", ""))
    resources.job_registry().start(KIND, worker, project=ctx.project.name, **dict(snap.meta))


def histogram(scores: np.ndarray, threshold: float | None, title: str, reference: float | None = None) -> None:
    """Histogram of ``scores`` with a red rule at ``threshold`` (the chosen cut) and a grey one at
    ``reference`` when that lies within the scores (a line outside would squash the bars to a corner)."""
    if not len(scores):
        return
    counts, edges = np.histogram(scores, bins=min(40, max(5, len(scores) // 5)))
    data = [{"from": float(a), "to": float(b), "images": int(n)} for a, b, n in zip(edges[:-1], edges[1:], counts)]
    chart = alt.Chart(alt.Data(values=data)).mark_bar(color="#0b6e99").encode(
        x=alt.X("from:Q", title=title, scale=alt.Scale(zero=False), axis=alt.Axis(labelFlush=True, labelOverlap=True)),
        x2="to:Q",
        y=alt.Y("images:Q", title="images"), y2=alt.datum(0))
    for value, colour in ((threshold, "#d62728"), (reference, "#888888")):
        if value is not None and float(scores.min()) <= value <= float(scores.max()):
            chart += alt.Chart(alt.Data(values=[{"t": value}])).mark_rule(color=colour, strokeDash=[4, 3]).encode(
                x="t:Q")
    st.altair_chart(chart.properties(height=150), width="stretch")


def reference_note(scores: np.ndarray, reference: float, what: str) -> str:
    """Where the grey ``reference`` line is, or why it is not drawn."""
    lo, hi = float(scores.min()), float(scores.max())
    if reference > hi:
        return f"Red line: the chosen threshold. {what.capitalize()} is {reference:.2f}, above every score here " \
               f"(the highest is {hi:.3g}), so it is not drawn."
    if reference < lo:
        return f"Red line: the chosen threshold. {what.capitalize()} is {reference:.2f}, below every score here " \
               f"(the lowest is {lo:.3g}), so it is not drawn."
    return f"Red line: the chosen threshold. Grey line: {reference:.2f}, {what}."


def pool_table(d, scored: list, key: str, score_name: str = "score") -> list:
    """Scored pool images as a table with thumbnails; returns the selected (item, score) pairs."""
    items = d.pool.get([s.member for s in scored])
    rows = [(i, s.score) for i, s in zip(items, scored) if i is not None]
    if not rows:
        return []
    cfg = st.column_config
    event = st.dataframe(
        [{"image": thumb_uri(i.source), "file": i.name, score_name: score, "suggestion": i.suggestion,
          "label": i.label, "status": i.status, "flag": i.flag} for i, score in rows],
        key=key, on_select="rerun", selection_mode="multi-row", hide_index=True, row_height=64,
        height=min(640, 64 * len(rows) + 40),
        column_config={"image": cfg.ImageColumn("image", width="small"),
                       score_name: cfg.NumberColumn(score_name, format="%.4f")})
    return [rows[i] for i in event.selection.rows] if event else []


def act(d, changes: list[Change], kind: str) -> None:
    """Apply ``changes`` as one audited, undoable action and say what happened."""
    try:
        result = d.apply(changes, state.annotator(), kind=kind)
        flash("success" if not result.refused else "warning", f"{kind}: {result.summary()}")
    except VSSError as e:
        flash("error", str(e))


def undo_button(d, key: str) -> None:
    def undo():
        try:
            flash("success", f"Undone: {d.undo(state.annotator()).summary()}")
        except VSSError as e:
            flash("error", str(e))

    st.button("Undo my last action", key=key, icon=":material/undo:", on_click=undo,
              disabled=not d.can_undo(state.annotator()))


__all__ = ["page", "start", "freshness", "histogram", "reference_note", "pool_table", "act", "undo_button",
           "show_flash", "KIND"]
