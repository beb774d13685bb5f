"""Rare events: pool images ranked by novelty, grouped, and rare classes; one action turns a find into labels."""

import streamlit as st

from ui import mining_view, rare_view, sidebar, thresholds
from vss_core.labeling.predict import threshold_of
from vss_core.mining import runs as mining_jobs

SHOW = 100

sidebar.frame()
ctx, d = mining_view.page(
    "Rare events",
    "Novelty: how far a pool image lies from everything labeled (its k-th nearest exemplar's "
    "distance, corrected for how spread out the exemplars are there). Higher is more novel."
)
mining_view.start(ctx, d, mining_jobs.NOVELTY)
scores = mining_jobs.all_scores(d.stores, mining_jobs.NOVELTY)
known_counts = d.exemplars.label_counts()
known = sorted(known_counts)
if len(scores):
    cut = thresholds.threshold(scores, "novel", score_name="novelty", default_top=50)
    line = 1.0 - threshold_of(ctx.project)
    mining_view.histogram(scores, cut.value, "novelty", reference=line)
    st.caption(mining_view.reference_note(scores, line, f"the cosine distance of the project's threshold "
                                                        f"(vss.threshold {threshold_of(ctx.project):.2f})"))
    st.markdown(f"The {min(cut.count, SHOW):,} most novel first"
                + (f" (of {cut.count:,} chosen)" if cut.count > SHOW else ""))
    selected = mining_view.pool_table(d, cut.rows(d.stores, mining_jobs.NOVELTY, limit=SHOW), "novel_table", "novelty")
    rare_view.set_actions(d, [item for item, _ in selected], known, key="novel_sel")
    st.subheader("Groups of novel images")
    similarity = st.slider("Group images at least this similar", 0.0, 1.0, 0.8, 0.01, key="group_sim")
    rare_view.groups(d, cut.rows(d.stores, mining_jobs.NOVELTY, limit=rare_view.MAX_GROUPED), similarity, known)
st.subheader("Rare classes")
rare_view.rare_classes(d, known_counts)
mining_view.undo_button(d, "rare_undo")
