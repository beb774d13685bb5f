"""Review: a workspace of tiles decided from the keyboard; below it, panels drawn only when opened (bulk accept
after a preview, predicting, overview, activity, export), so the page opens with the tiles first."""

import streamlit as st

from ui import jobview, predicting, resources, review, review_actions, review_workspace, sidebar, state, workspace
from vss_core.labeling.predict import threshold_of

sidebar.frame(sidebar="collapsed")  # the tiles get the width: 8 x 6 of 128 px at 1280x800
ctx = state.open_project()
project = ctx.project
d = resources.decisions_for(project, ctx.embedder.dim)
threshold = threshold_of(project)
workspace.compact_page()
running = [j for j in jobview.jobs_to_show(project.name, predicting.KIND) if j.active]
empty = d.pool.info().count == 0


@st.fragment(run_every=3 if running else None)
def body():
    top, below = st.container(), st.container()
    with top:  # first: the filter comes from the session, and the batch applied here shows in the flash below
        if d.pool.info().count == 0:
            st.info("The pool is empty: predict labels for new images (the Predict panel below).")
        else:
            known = sorted(set(d.exemplars.label_counts()) | set(d.pool.counts("tag")))
            review_workspace.show(d, *review.chosen_filter(), known)
    with below:
        st.title("Review")
        review.show_flash()
        review.stale_notice(d, threshold)
        st.caption("Keys in the workspace: arrows/HJKL move · Space or click takes a tile out · A accepts every "
                   "tile still in · 1-9 give the legend's label · D dubious · Enter opens the focus view · U undo "
                   "· N/P next/previous page.")
        review.undo_button(d)
        review.filters(d, review_workspace.PAGE_SIZES)


body()
jobview.panel(project.name, predicting.KIND, on_resume=lambda snap: predicting.resume(ctx, d, snap))
if empty:
    st.session_state.setdefault(review_actions.PANEL, review_actions.PREDICT)
bulk, predict, overview, activity, export = st.tabs(review_actions.PANELS, key=review_actions.PANEL,
                                                    on_change="rerun")
if bulk.open:
    review_actions.bulk_accept(d, threshold, project.promote)
if predict.open:
    predicting.form(ctx, d, busy=bool(running))
if overview.open:
    review_actions.overview(d, threshold)
if activity.open:
    review_actions.activity(d)
if export.open:
    review_actions.export(d, project)
