"""Rare events: actions on a set of pool images, groups of novel images, and rare classes."""

from __future__ import annotations

import streamlit as st

from ui import mining_view, state
from ui.plain import md
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError
from vss_core.labeling.decisions import Change
from vss_core.mining import runs as mining_jobs
from vss_core.mining import scores as mining
from vss_core.redis.pool import LEAST_CONFIDENT, PoolFilter
from vss_core.redis.schema import ACCEPTED, DISMISSED, PREDICTED, RARE

MAX_GROUPED = 500


def set_actions(d, items: list, known: list[str], key: str) -> None:
    """Assign a label, create a new class, mark a rare event or dismiss: each one undoable action."""
    if not items:
        return
    blocked = not state.annotator()
    c0, c1, c2, c3, c4, c5 = st.columns([2, 2, 1.2, 1.4, 1.3, 1], vertical_alignment="bottom")
    picked = c0.selectbox("Label", known, index=None, key=f"{key}_label", placeholder="an existing label")
    typed = c1.text_input("…or a new class", key=f"{key}_new").strip()
    label = typed or picked
    new = bool(label) and label not in known
    changes = lambda **kw: [Change(i.id, expected_version=i.version, **kw) for i in items]  # noqa: E731
    c2.button("Create class" if new else "Assign", key=f"{key}_assign", disabled=blocked or not label,
              help="The images become the first exemplars of the new class" if new else None,
              on_click=mining_view.act, args=(d, changes(status=ACCEPTED, label=label),
                                              "new class" if new else "assign label"))
    c3.button("Rare event", key=f"{key}_rare", disabled=blocked, icon=":material/star:",
              on_click=mining_view.act, args=(d, changes(status=None, flag=RARE), "mark rare event"))
    c4.button("Dismiss", key=f"{key}_dismiss", disabled=blocked,
              on_click=mining_view.act, args=(d, changes(status=None, flag=DISMISSED), "dismiss"))
    c5.caption(f"{len(items)} image(s)")


def groups(d, scored: list, similarity: float, known: list[str]) -> None:
    """The novel images grouped by mutual similarity; each group is reviewed as one."""
    scored = scored[:MAX_GROUPED]
    items = [i for i in d.pool.get([s.member for s in scored]) if i is not None]
    if len(items) < 2:
        st.caption("Score novelty first; groups need at least two novel images above the threshold.")
        return
    try:
        labels = mining.group(d.pool.vectors([i.id for i in items]), threshold=similarity)
    except VSSError as e:
        st.error(md(e))
        return
    for g in range(min(int(labels.max()) + 1, 12)):
        members = [item for item, label in zip(items, labels) if label == g]
        with st.container(border=True):
            st.markdown(f"**Group {g + 1}** · {len(members)} image(s)")
            cols = st.columns(8)
            for col, item in zip(cols, members[:8]):
                col.image(thumb_cache().get(item.source), caption=f"{md(item.name)} · {md(item.suggestion)}", width=110)
            set_actions(d, members, known, key=f"group{g}")


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
