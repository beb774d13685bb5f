"""Review: predict labels for new images, then accept, correct or reject them, alone or in bulk."""

import streamlit as st

from ui import jobview, predicting, resources, review, review_actions, sidebar, state
from vss_core.labeling.predict import threshold_of

sidebar.frame()
ctx = state.open_project()
project = ctx.project
d = resources.decisions_for(project, ctx.embedder.dim)
threshold = threshold_of(project)
st.title("Review")

running = [j for j in jobview.jobs_to_show(project.name, predicting.KIND) if j.active]
with st.expander("Predict labels for new images", expanded=d.pool.info().count == 0):
    predicting.form(ctx, d, busy=bool(running))
jobview.panel(project.name, predicting.KIND, on_resume=lambda snap: predicting.resume(ctx, d, snap))


@st.fragment(run_every=3 if running else None)
def body():
    review.show_flash()
    review_actions.overview(d, threshold)
    known = sorted(set(d.exemplars.label_counts()) | set(d.pool.counts("tag")))
    st.subheader("Accept in bulk")
    review_actions.bulk_accept(d, threshold)
    st.subheader("Images")
    where, sort = review.filters(d)
    total, items = review.page_rows(d, where, sort)
    if not items:
        st.info("Nothing matches. Predict labels for new images above, or change the filters.")
        return
    selected = review.grid(items)
    review.pager(total)
    review_actions.selection(d, items, selected, known)
    review.focus(d, items, review.focus_index(items, selected), where, known)


body()
review_actions.activity(d)
st.subheader("Export")
review_actions.export(d, project)
