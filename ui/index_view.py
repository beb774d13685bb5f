"""Index overview: totals, count per label, browsing exemplars, deleting with a confirmation."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError

CONFIRM = "confirm_delete"   # holds "label:<label>" or "key:<redis key>" while asking
BROWSE_PAGE = 24


def overview(store) -> dict[str, int]:
    info = store.info()
    counts = store.label_counts()
    c = st.columns(4)
    c[0].metric("Exemplars", f"{info.count:,}")
    c[1].metric("Labels", f"{len(counts):,}")
    c[2].metric("Dimension", info.dim)
    c[3].metric("Algorithm", info.algorithm)
    st.caption(f"Index `{info.name}`")
    if counts:
        rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        st.bar_chart({"label": [k for k, _ in rows], "exemplars": [v for _, v in rows]},
                     x="label", y="exemplars", horizontal=True, sort="-exemplars",
                     height=max(160, 28 * len(rows) + 60))
    else:
        st.info("The index is empty: load labeled exemplars above.")
    return counts


def _confirm(store) -> None:
    pending = st.session_state.get(CONFIRM)
    if not pending:
        return
    kind, _, target = pending.partition(":")
    what = f"every exemplar labeled **{target}**" if kind == "label" else f"exemplar `{target}`"
    with st.container(border=True):
        st.warning(f"Delete {what}? This cannot be undone.", icon=":material/delete_forever:")
        yes, no = st.columns(2)
        if yes.button("Yes, delete", type="primary", key="confirm_yes"):
            st.session_state.pop(CONFIRM, None)
            if kind == "label":
                st.toast(f"Deleted {store.delete_label(target)} exemplar(s) labeled {target}.")
            else:
                st.toast("Deleted." if store.delete(target) else "It was already gone.")
            st.rerun()
        if no.button("Cancel", key="confirm_no"):
            st.session_state.pop(CONFIRM, None)
            st.rerun()


def browse(store, counts: dict[str, int]) -> None:
    """A page of one label's exemplars as thumbnails, with delete buttons behind a confirmation."""
    if not counts:
        return
    st.subheader("Browse and delete")
    labels = sorted(counts)
    left, right = st.columns([3, 1])
    label = left.selectbox("Label", labels, key="browse_label")
    pages = max(1, (counts.get(label, 0) + BROWSE_PAGE - 1) // BROWSE_PAGE)
    page = right.number_input(f"Page (of {pages})", 1, pages, 1, key=f"browse_page_{label}")
    exemplars = store.exemplars(label, offset=(page - 1) * BROWSE_PAGE, limit=BROWSE_PAGE)
    cache = thumb_cache()
    st.caption(f"{counts.get(label, 0):,} exemplars labeled **{label}**")
    if exemplars:
        st.image([cache.for_path(e.source) for e in exemplars],
                 caption=[f"{e.id[:8]} · {e.added_by or '?'}" for e in exemplars], width=110)
    can_write = state.require_annotator("delete exemplars")
    a, b, c = st.columns([2, 3, 2], vertical_alignment="bottom")
    if a.button(f"Delete label '{label}'…", disabled=not can_write, key="ask_delete_label",
                icon=":material/delete:"):
        st.session_state[CONFIRM] = f"label:{label}"
    keys = {e.key: f"{e.id[:10]} — {e.source}" for e in exemplars}
    key = b.selectbox("Exemplar", list(keys), format_func=keys.get, key="browse_exemplar")
    if c.button("Delete exemplar…", disabled=not can_write or key is None,
                key="ask_delete_exemplar", icon=":material/delete:"):
        st.session_state[CONFIRM] = f"key:{key}"
    _confirm(store)


def render(store) -> None:
    try:
        counts = overview(store)
        browse(store, counts)
    except VSSError as e:
        st.error(str(e))
