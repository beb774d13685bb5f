"""Rare events: actions on a set of pool images, groups of novel images, and rare classes."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui import group_action, mining_view, state
from ui.plain import md
from vss_core.errors import VSSError
from vss_core.mining import runs as mining_jobs
from vss_core.mining import scores as mining
from vss_core.redis.pool import LEAST_CONFIDENT, PoolFilter
from vss_core.redis.schema import ACCEPTED, DISMISSED, PREDICTED, RARE

MAX_GROUPED = 500


def set_actions(d, items: list, known: list[str], key: str, source: str = "selection") -> None:
    """Assign a label, create a new class, mark a rare event or dismiss.  One image (a row the annotator
    picked) is decided at once; a set (``source``: "selection", "group", "map selection") is first listed
    in full (:mod:`ui.group_action`) and applied to exactly what was listed, each one undoable action."""
    if not items:
        return
    blocked = not state.annotator()
    c0, c1 = st.columns(2, vertical_alignment="bottom")
    picked = c0.selectbox("Label", known, index=None, key=f"{key}_label", placeholder="an existing label")
    typed = c1.text_input("…or a new class", key=f"{key}_new").strip()
    label = typed or picked
    new = bool(label) and label not in known
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button("Create class" if new else "Assign", key=f"{key}_assign", disabled=blocked or not label,
                  help="The images become the first exemplars of the new class" if new else None,
                  on_click=_click, args=(d, items, key, source, None, known))
        st.button("Rare event", key=f"{key}_rare", disabled=blocked, icon=":material/star:", on_click=_click,
                  args=(d, items, key, source, ("mark rare event", "Mark {n} image(s) as rare events",
                                                dict(status=None, flag=RARE))))
        st.button("Dismiss", key=f"{key}_dismiss", disabled=blocked, on_click=_click,
                  args=(d, items, key, source, ("dismiss", "Dismiss {n} image(s)", dict(status=None, flag=DISMISSED))))
        st.caption(f"{len(items)} image(s)" + (": all are listed before an action applies" if len(items) > 1 else ""))
    group_action.preview(d, key)


def _click(d, items, key: str, source: str, what, known=()) -> None:
    """An action button's callback (:func:`ui.group_action.decide`); ``what`` is (kind, title, change), or
    None to assign the label in the boxes as they are at the click."""
    n = len(items)
    if what is None:
        label = (st.session_state.get(f"{key}_new") or "").strip() or st.session_state.get(f"{key}_label")
        if not label:
            return
        new = label not in known
        kind, title, change = ("new class" if new else "assign label",
                               f"Label {n} image(s) “{label}”" + (" (a new class)" if new else ""),
                               dict(status=ACCEPTED, label=label))
    else:
        kind, title, change = what[0], what[1].format(n=n), what[2]
    group_action.decide(d, items, key, kind, title, source, **change)


def groups(d, scored: list, similarity: float, known: list[str], shown: int = 8) -> None:
    """The novel images grouped by mutual similarity; each group is reviewed as one (its first ``shown``
    images here; an action lists all of them first)."""
    scored = scored[:MAX_GROUPED]
    items = [i for i in d.pool.get([s.member for s in scored]) if i is not None]
    if len(items) < 2:
        st.caption("Groups need at least two images among those chosen above: choose more (a larger top N, "
                   "a larger share or a lower score)." if scored else "Score novelty first.")
        return
    try:
        labels = mining.group(d.pool.vectors([i.id for i in items]), threshold=similarity)
    except VSSError as e:
        st.error(md(e))
        return
    sizes = np.bincount(labels)
    alone = int((sizes == 1).sum())
    if alone:
        st.caption(f"{alone} image(s) resemble no other chosen image this closely: act on them in the table above.")
    for g in range(min(int((sizes > 1).sum()), 12)):  # groups come largest first
        members = [item for item, label in zip(items, labels) if label == g]
        with st.container(border=True):
            st.markdown(f"**Group {g + 1}** · {len(members)} image(s)")
            group_action.grid(group_action.pool_cells([m.id for m in members[:shown]], members[:shown]))
            if len(members) > shown:
                st.caption(f"The first {shown} of {len(members)}; an action lists all {len(members)} "
                           "before it applies.")
            set_actions(d, members, known, key=f"group{g}", source="group")


def rare_classes(d, known_counts: dict[str, int]) -> None:
    """Undecided pool images whose suggested label has few exemplars, or whose neighbours disagree."""
    n = st.number_input("Labels with at most this many exemplars are rare", 1, 10_000, 5, key="rare_max")
    rare = sorted(label for label, count in known_counts.items() if count <= n)
    st.caption(("Rare labels: " + ", ".join(md(r) for r in rare)) if rare else "No label is that rare.")
    stale = d.pool.stale_count(d.pool.generation())
    if stale:
        st.warning(f"{stale:,} undecided suggestion(s) below are stale (made before the exemplars last changed): "
                   "re-suggest them on the Review page.", icon=":material/history:")
    if rare:
        _, items = d.pool.page(PoolFilter(statuses=(PREDICTED,), suggestions=tuple(rare)), limit=100)
        _table(d, items, "rare_table", "share", sorted(known_counts))
    st.markdown("**Neighbours disagree** (undecided, marked uncertain)")
    _, items = d.pool.page(PoolFilter(statuses=(PREDICTED,), uncertain_only=True), sort=LEAST_CONFIDENT, limit=100)
    _table(d, items, "disagree_table", "best", sorted(known_counts))


def _table(d, items, key: str, field: str, known: list[str]) -> None:
    scored = [mining_jobs.Scored(i.id, getattr(i, field)) for i in items]
    selected = mining_view.pool_table(d, scored, key, field)
    set_actions(d, [item for item, _ in selected], known, key=f"{key}_sel")
