"""Index overview: totals, count per label, browsing exemplars, deleting (retiring: audited, undoable) with a
confirmation."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.mining_view import undo_button
from ui.plain import md
from ui.review import flash, show_flash
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError
from vss_core.labeling.decisions import decisions_over
from vss_core.labeling.exemplar_review import RETIRE_CHUNK, ExemplarReview
from vss_core.redis import migrations

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


def _review(store) -> ExemplarReview:
    return ExemplarReview(decisions_over(store, state.current_project()))


def _retire(store, kind: str, target: str) -> None:
    """Retire what the confirmation named (a label: 500 exemplars per undoable action) and say what happened."""
    review = _review(store)
    if kind == "label":
        results = review.retire_label(target, state.annotator())
    else:
        results = [review.retire([target], state.annotator())]
    done, actions = sum(len(r.applied) for r in results), sum(1 for r in results if r.applied)
    refused = [c.reason for r in results for c in r.refused]
    text = f"Retired {done:,} exemplar(s) {f'labeled {target}' if kind == 'label' else target}"
    if actions > 1:
        text += f" in {actions} actions of up to {RETIRE_CHUNK} (each undo takes back one)"
    text += "; undo with “Undo my last action” here or on the Exemplar audit page."
    if refused:
        text += f" {len(refused)} refused: " + "; ".join(refused[:3])
    flash("success" if done and not refused else "warning", text)


def _confirm(store) -> None:
    pending = st.session_state.get(CONFIRM)
    if not pending:
        return
    kind, _, target = pending.partition(":")
    what = f"every exemplar labeled **{md(target)}**" if kind == "label" else f"exemplar {md(target)}"
    with st.container(border=True):
        st.warning(f"Retire {what}? It leaves the index (searches and suggestions no longer see it), and a pool "
                   "image it was promoted from becomes dubious. Recorded in the audit under your name and kept "
                   "aside: undo it from the audit (“Undo my last action” here or on the Exemplar audit page).",
                   icon=":material/delete:")
        yes, no = st.columns(2)
        if yes.button("Yes, retire", type="primary", key="confirm_yes"):
            st.session_state.pop(CONFIRM, None)
            try:
                _retire(store, kind, target)
            except VSSError as e:
                flash("error", str(e))
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
    st.caption(f"{counts.get(label, 0):,} exemplars labeled **{md(label)}**")
    if exemplars:
        st.image([cache.for_path(e.source) for e in exemplars],
                 caption=[md(f"{e.id[:8]} · {e.added_by or '?'}") for e in exemplars], width=110)
    can_write = state.require_annotator("delete exemplars")
    row = st.container(horizontal=True, vertical_alignment="bottom")  # wraps when narrow: no button is cut
    if row.button(f"Delete label '{md(label)}'…", disabled=not can_write, key="ask_delete_label",
                icon=":material/delete:"):
        st.session_state[CONFIRM] = f"label:{label}"
    keys = {e.key: f"{e.id[:10]} — {e.source}" for e in exemplars}
    key = row.selectbox("Exemplar", list(keys), format_func=keys.get, key="browse_exemplar", width=320)
    if row.button("Delete exemplar…", disabled=not can_write or key is None,
                key="ask_delete_exemplar", icon=":material/delete:"):
        st.session_state[CONFIRM] = f"key:{key}"
    _confirm(store)


ADOPT_CONFIRM = "confirm_adopt"


def adoption(store, model: str) -> None:
    """Offer to adopt a fastapi-vss database (never done without asking), or to label documents added since."""
    version = migrations.layout_version(store)
    missing = store.unlabeled_count()
    if not missing or not store.info().count:
        return
    with st.container(border=True):
        if version is None:
            st.info(f"This index was built by fastapi-vss's tools (mbari-aidata): labels are read from the keys, "
                    f"so search and suggestions are right, but counting and browsing by label read all "
                    f"{missing:,} keys. **Adopt** adds a `label` field to the index and copies each key's label "
                    f"into it; fastapi-vss ignores the field and keeps working. It can be stopped and resumed.",
                    icon=":material/database:")
        else:
            st.info(f"{missing:,} exemplars were added without a `label` field (by fastapi-vss's tools?): "
                    "adopt them to browse them by label.", icon=":material/database:")
        if not st.session_state.get(ADOPT_CONFIRM):
            if st.button("Adopt this database…", key="ask_adopt", icon=":material/library_add_check:"):
                st.session_state[ADOPT_CONFIRM] = True
                st.rerun()
            return
        yes, no = st.columns(2)
        if no.button("Cancel", key="adopt_no"):
            st.session_state.pop(ADOPT_CONFIRM, None)
            st.rerun()
        if yes.button("Yes, adopt", type="primary", key="adopt_yes"):
            st.session_state.pop(ADOPT_CONFIRM, None)
            bar = st.progress(0.0, text="Adopting…")
            report = migrations.adopt(store, model, progress=lambda done, total: bar.progress(
                min(1.0, done / max(total, 1)), text=f"Labeled {done:,} of {total:,} documents"))
            st.toast(f"Adopted: labeled {report.labeled:,} of {report.total:,} documents.")
            st.rerun()


def render(store, model: str = "") -> None:
    show_flash()
    try:
        adoption(store, model)
        counts = overview(store)
        browse(store, counts)
        undo_button(_review(store).d, "exemplars_undo")
    except VSSError as e:
        st.error(md(e))
