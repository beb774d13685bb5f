"""Exemplar self-audit: each suspect exemplar beside its nearest neighbours, with keep / relabel / retire."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.plain import md
from ui.review import flash
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError
from vss_core.labeling.exemplar_review import ExemplarReview


def _do(d, what: str, key: str, label: str | None = None) -> None:
    review = ExemplarReview(d)
    try:
        if what == "relabel":
            result = review.relabel([key], label or "", state.annotator())
        else:
            result = getattr(review, what)([key], state.annotator())
        flash("success" if result.applied else "warning", f"{what}: {result.summary()}")
    except VSSError as e:
        flash("error", str(e))


def row(d, scored, known: list[str], n_neighbors: int = 6) -> None:
    """One suspect exemplar: thumbnail, label and score, its neighbours with their labels, actions."""
    shown = d.exemplars.for_audit(scored.member)
    if shown is None:
        return  # retired or relabelled since it was scored
    label = shown.label
    hits = d.exemplars.knn(shown.vector, n_neighbors + 1)[0]
    hits = [h for h in hits if h.key != scored.member][:n_neighbors]
    blocked = not state.annotator()
    with st.container(border=True):
        cols = st.columns([1.3, *([1] * n_neighbors)])
        cols[0].image(thumb_cache().get(shown.source), width=120,
                      caption=f"{md(label)} · suspicion {scored.score:.2f}")
        if shown.audit:
            cols[0].caption(md(shown.audit))
        for col, h in zip(cols[1:], hits):
            col.image(thumb_cache().get(h.source), width=90,
                      caption=("✓ " if h.label == label else "✗ ") + f"{md(h.label)} · {h.score:.3f}")
        key = scored.member
        a, b, c, e = st.columns([1, 3, 1, 1], vertical_alignment="bottom")
        a.button("Keep", key=f"keep_{key}", disabled=blocked, on_click=_do, args=(d, "keep", key))
        new = b.selectbox("Relabel to", [x for x in known if x != label], index=None, key=f"relabel_to_{key}",
                          accept_new_options=True, placeholder="pick or type a label")
        c.button("Relabel", key=f"relabel_{key}", disabled=blocked or not new, on_click=_do,
                 args=(d, "relabel", key, new))
        e.button("Retire", key=f"retire_{key}", disabled=blocked, on_click=_do, args=(d, "retire", key))
