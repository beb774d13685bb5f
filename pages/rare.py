"""Rare events: pool images ranked by novelty, grouped, and rare classes; one action turns a find into labels."""

import streamlit as st

from ui import mining_view, rare_view, sidebar
from vss_core.labeling.predict import threshold_of
from vss_core.mining import runs as mining_jobs

sidebar.frame()
ctx, d = mining_view.page(
    "Rare events",
    "Novelty: how far a pool image lies from everything labeled (its k-th nearest exemplar's "
    "distance, corrected for how spread out the exemplars are there). Higher is more novel."
)
mining_view.start(ctx, d, mining_jobs.NOVELTY)
scores = mining_jobs.all_scores(d.stores, mining_jobs.NOVELTY)
line = 1.0 - threshold_of(ctx.project)
mining_view.histogram(scores, line, "novelty")
st.caption(f"Red line: {line:.2f}, the cosine distance of the project's threshold (vss.threshold "
           f"{threshold_of(ctx.project):.2f}).")
known_counts = d.exemplars.label_counts()
known = sorted(known_counts)
if len(scores):
    low = st.slider("Show novelty at or above", float(scores.min()), float(max(scores.max(), scores.min() + 1e-3)),
                    float(min(max(line, scores.min()), scores.max())), key="novel_min")
    total, top = mining_jobs.ranked(d.stores, mining_jobs.NOVELTY, min_score=low, limit=100)
    st.markdown(f"**{total:,}** image(s) at or above {low:.3f}, most novel first")
    selected = mining_view.pool_table(d, top, "novel_table", "novelty")
    rare_view.set_actions(d, [item for item, _ in selected], known, key="novel_sel")
    st.subheader("Groups of novel images")
    similarity = st.slider("Group images at least this similar", 0.0, 1.0, 0.8, 0.01, key="group_sim")
    rare_view.groups(d, mining_jobs.ranked(d.stores, mining_jobs.NOVELTY, min_score=low, limit=rare_view.MAX_GROUPED)[1],
                     similarity, known)
st.subheader("Rare classes")
rare_view.rare_classes(d, known_counts)
mining_view.undo_button(d, "rare_undo")
