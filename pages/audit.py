"""Exemplar audit: exemplars ranked by how likely their label is wrong; keep, relabel or retire each."""

import streamlit as st

from ui import audit_view, mining_view, sidebar
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
    mining_view.histogram(scores, 0.5, "suspicion (share of disagreeing neighbours)")
    total, _ = mining_jobs.ranked(d.stores, mining_jobs.MISLABEL, limit=0)
    pages = max(1, -(-total // PAGE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="audit_page") - 1
    _, shown = mining_jobs.ranked(d.stores, mining_jobs.MISLABEL, offset=page * PAGE, limit=PAGE)
    known = sorted(d.exemplars.label_counts())
    for scored in shown:
        audit_view.row(d, scored, known)
mining_view.undo_button(d, "audit_undo")
