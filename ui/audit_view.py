"""Exemplar self-audit: each suspect exemplar beside its nearest neighbours, with keep / relabel / retire."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.group_action import grid
from ui.plain import md
from ui.review import flash
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
    """One suspect exemplar: thumbnail, label and score, then its neighbours with their labels and
    similarities (a grid that wraps at any width), then the actions."""
    shown = d.exemplars.for_audit(scored.member)
    if shown is None:
        return  # retired or relabelled since it was scored
    label = shown.label
    hits = d.exemplars.knn(shown.vector, n_neighbors + 1)[0]
    hits = [h for h in hits if h.key != scored.member][:n_neighbors]
    blocked = not state.annotator()
    key = scored.member
    with st.container(border=True):
        st.markdown(f"**{md(label)}** · suspicion {scored.score:.2f} · then its {len(hits)} nearest exemplars "
                    "(✓ same label, ✗ another)")
        grid([(key, shown.source, (f"▶ {label}", f"suspicion {scored.score:.2f}"))]
             + [(h.key, h.source, (("✓ " if h.label == label else "✗ ") + h.label, f"{h.score:.3f}"))
                for h in hits],
             first=True)
        if shown.audit:
            st.caption(md(shown.audit))
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.button("Keep", key=f"keep_{key}", disabled=blocked, on_click=_do, args=(d, "keep", key))
            new = st.selectbox("Relabel to", [x for x in known if x != label], index=None, key=f"relabel_to_{key}",
                               accept_new_options=True, placeholder="pick or type a label", width=220)
            st.button("Relabel", key=f"relabel_{key}", disabled=blocked or not new, on_click=_do,
                      args=(d, "relabel", key, new))
            st.button("Retire", key=f"retire_{key}", disabled=blocked, on_click=_do, args=(d, "retire", key))
