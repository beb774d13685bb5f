"""Exemplar audit: exemplars ranked by how likely their label is wrong; keep, relabel or retire each."""

import streamlit as st

from ui import audit_view, mining_view, sidebar, thresholds
from vss_core.mining import runs as mining_jobs

PAGE = 20

sidebar.frame()
ctx, d = mining_view.page(
    "Exemplar audit",
    "Suspicion: the similarity-weighted share of an exemplar's nearest other exemplars that carry "
    "another label. Works on fastapi-vss databases too. Every action is recorded and undoable."
)
mining_view.start(ctx, d, mining_jobs.MISLABEL)
scores = mining_jobs.all_scores(d.stores, mining_jobs.MISLABEL)
if len(scores):
    cut = thresholds.threshold(scores, "audit", score_name="suspicion", default_top=len(scores))
    mining_view.histogram(scores, cut.value, "suspicion (share of disagreeing neighbours)", reference=0.5)
    st.caption("Red line: the chosen threshold; grey line: 0.5, half the neighbours disagree.")
    pages = max(1, -(-cut.count // PAGE))
    page = st.pagination(pages, key="audit_page", max_visible_pages=5) if pages > 1 else 1
    st.caption(f"{cut.count:,} exemplar(s), most suspect first: page {page} of {pages}")
    known = sorted(d.exemplars.label_counts())
    for scored in cut.rows(d.stores, mining_jobs.MISLABEL, offset=(page - 1) * PAGE, limit=PAGE):
        audit_view.row(d, scored, known)
mining_view.undo_button(d, "audit_undo")
