"""Review: a workspace of tiles decided from the keyboard, then bulk accept after a preview, activity and export."""

import streamlit as st

from ui import jobview, predicting, resources, review, review_actions, review_workspace, sidebar, state, workspace
from vss_core.labeling.predict import threshold_of

sidebar.frame()
ctx = state.open_project()
project = ctx.project
d = resources.decisions_for(project, ctx.embedder.dim)
threshold = threshold_of(project)
workspace.compact_page()
running = [j for j in jobview.jobs_to_show(project.name, predicting.KIND) if j.active]


@st.fragment(run_every=3 if running else None)
def body():
    top, below = st.container(), st.container()
    with below:
        st.title("Review")
        review.show_flash()
        review.stale_notice(d, threshold)
        st.caption("Keys in the workspace: arrows/HJKL move · Space or click takes a tile out · A accepts every "
                   "tile still in · 1-9 give the legend's label · D dubious · Enter opens the focus view · U undo "
                   "· N/P next/previous page.")
        review.undo_button(d)
        known = sorted(set(d.exemplars.label_counts()) | set(d.pool.counts("tag")))
        where, sort, size = review.filters(d, review_workspace.PAGE_SIZES)
    with top:
        if d.pool.info().count == 0:
            st.info("The pool is empty: predict labels for new images below.")
        else:
            review_workspace.show(d, where, sort, size, known)


body()
st.subheader("Accept in bulk")
review_actions.bulk_accept(d, threshold, project.promote)
with st.expander("Predict labels for new images", expanded=d.pool.info().count == 0):
    predicting.form(ctx, d, busy=bool(running))
jobview.panel(project.name, predicting.KIND, on_resume=lambda snap: predicting.resume(ctx, d, snap))
with st.expander("Overview"):
    review_actions.overview(d, threshold)
review_actions.activity(d)
st.subheader("Export")
review_actions.export(d, project)
