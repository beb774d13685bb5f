"""The Review page's tile workspace over the pool: a pinned page of images, each batch of decisions from the
browser applied as one transaction, conflicts shown on the tiles, paging, and the focus view's data.

The session keeps only ids and numbers: the pinned page's ids, its offset in the filter, and for each image
decided from this page the version the browser saw and the one its decision made (so a second key on the
same tile, before the browser has the new version, is not refused as someone else's change).
"""

from __future__ import annotations

import base64

import streamlit as st

from ui import state, workspace
from ui.thumbs import ThumbCache, thumb_cache
from vss_core.config.keys import PAGE, SINGLE
from vss_core.errors import VSSError
from vss_core.labeling.decisions import Change
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import ACCEPTED, CORRECTED, DUBIOUS, PREDICTED, SKIPPED

KEY = "review_ws"
IDS, OFFSET, SIGNATURE, VERSIONS, CONFLICTS, FOCUS = (
    "review_ws_ids", "review_ws_offset", "review_ws_filter", "review_ws_versions", "review_ws_conflicts",
    "review_ws_focus")
PAGE_SIZES = (24, 48, 96)
KIND = "workspace"
_STATUSES = {"accepted": ACCEPTED, "corrected": CORRECTED, "dubious": DUBIOUS, "skipped": SKIPPED,
             "predicted": PREDICTED}


def changes_of(batch: dict, versions: dict, suggestions: dict) -> list[Change]:
    """The changes of one browser batch, in order, one per image (the last decision on an image wins).

    ``versions`` maps an image id to (the version the browser saw, the version this session's decision made);
    ``suggestions`` gives the suggestion an undo back to "undecided" restores."""
    out: dict[str, Change] = {}
    for d in batch.get("decisions", []):
        id, status = d["id"], _STATUSES.get(d["status"])
        if status is None:
            continue
        version = d.get("version")
        seen, now = versions.get(id, (None, None))
        if version is not None and version == seen:
            version = now
        how = {"page": PAGE}.get(d.get("how"), SINGLE)
        label = d.get("label")
        if status == PREDICTED:
            label = suggestions.get(id)
        elif status == DUBIOUS:
            label = None
        out[id] = Change(id, status, label, int(version) if version is not None else None, how=how)
    return list(out.values())


def apply_batches(d, batches: list[dict], annotator: str) -> dict[str, str]:
    """Apply each batch as one action (one transaction) by ``annotator``; {image id: why refused}."""
    versions = st.session_state.setdefault(VERSIONS, {})
    conflicts: dict[str, str] = {}
    for batch in batches:
        undone = [x["id"] for x in batch.get("decisions", []) if x["status"] == PREDICTED]
        suggestions = {i.id: i.suggestion for i in d.pool.get(undone) if i is not None} if undone else {}
        changes = changes_of(batch, versions, suggestions)
        if not changes:
            continue
        try:
            result = d.apply(changes, annotator, kind=KIND)
        except VSSError as e:
            conflicts.update({c.id: str(e) for c in changes})
            continue
        by_id = {c.id: c for c in changes}
        seen = {x["id"]: x.get("version") for x in batch.get("decisions", [])}
        for id in result.applied:
            if by_id[id].expected_version is not None:
                versions[id] = (seen.get(id), by_id[id].expected_version + 1)
        conflicts.update({c.id: c.reason.removeprefix(f"{c.id}: ") for c in result.refused})  # on its tile
    return conflicts


def _signature(where: PoolFilter, sort: str, size: int) -> str:
    return repr((where, sort, size))


def pinned_page(d, where: PoolFilter, sort: str, size: int) -> tuple[list, int]:
    """(the items of the pinned page, as they are now; how many images match the filter).  The page is pinned
    until the filter changes or the annotator pages on, so decided images stay where they were seen."""
    signature = _signature(where, sort, size)
    if st.session_state.get(SIGNATURE) != signature or IDS not in st.session_state:
        st.session_state[SIGNATURE], st.session_state[OFFSET] = signature, 0
        _load(d, where, sort, size, 0)
    elif len(st.session_state[IDS]) < size:
        _top_up(d, where, sort, size)
    items = [i for i in d.pool.get(st.session_state[IDS]) if i is not None]
    total, _ = d.pool.page(where, sort, 0, 0)
    return items, total


def _load(d, where: PoolFilter, sort: str, size: int, offset: int) -> None:
    _, items = d.pool.page(where, sort, max(0, offset), size)
    st.session_state[IDS] = [i.id for i in items]
    st.session_state[OFFSET] = max(0, offset)
    st.session_state[VERSIONS] = {}
    st.session_state.pop(FOCUS, None)


def _top_up(d, where: PoolFilter, sort: str, size: int) -> None:
    """A page pinned while a prediction was still filling the pool gets the images that arrived since, after
    the ones already shown (which stay where they were seen)."""
    ids = st.session_state[IDS]
    _, items = d.pool.page(where, sort, int(st.session_state.get(OFFSET, 0)), size)
    known = set(ids)
    st.session_state[IDS] = ids + [i.id for i in items if i.id not in known][:size - len(ids)]


def turn(d, where: PoolFilter, sort: str, size: int, items: list, step: int) -> None:
    """The next (step 1) or previous (-1) page: images decided on this page have left an "undecided" filter,
    so the next page starts after those of this page that still match."""
    offset = int(st.session_state.get(OFFSET, 0))
    still = sum(1 for i in items if not where.statuses or i.status in where.statuses)
    _load(d, where, sort, size, offset + still if step > 0 else offset - size)


def uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


@st.cache_resource(show_spinner=False)
def large_cache() -> ThumbCache:
    """Large images for the focus view (512 px), fewer of them."""
    return ThumbCache(max_items=300, px=512)


def tile(item) -> dict:
    return {"id": item.id, "version": item.version, "src": uri(thumb_cache().get(item.source)),
            "suggestion": item.suggestion, "score": item.best, "status": item.status, "label": item.label,
            "uncertain": item.uncertain}


def focus_data(d, id: str, known: list[str]) -> dict | None:
    found = d.pool.get([id])[0]
    if found is None:
        return None
    return {**tile(found), "src": uri(large_cache().get(found.source)), "name": found.name,
            "neighbors": [{"label": label, "score": score, "src": uri(thumb_cache().get(source))}
                          for label, _id, score, source in found.neighbors],
            "labels": known}


def legend(d, known: list[str]) -> list[str]:
    """Keys 1-9: the most suggested labels of the pool, then the exemplar labels with most exemplars."""
    suggested = sorted(d.pool.counts("suggestion").items(), key=lambda kv: (-kv[1], kv[0]))
    labels = [label for label, _ in suggested if label]
    counts = d.exemplars.label_counts()
    labels += [label for label in sorted(counts, key=lambda k: (-counts[k], k)) if label not in labels]
    return labels[:workspace.MAX_LEGEND]


def show(d, where: PoolFilter, sort: str, size: int, known: list[str]) -> int:
    """The workspace (first thing on the page); returns how many images match the filter."""
    annotator = state.annotator()
    batches = workspace.take_batches(KEY)
    if batches:
        if annotator:
            st.session_state[CONFLICTS] = apply_batches(d, batches, annotator)
        else:
            st.session_state[CONFLICTS] = {x["id"]: "no annotator: enter your name in the sidebar"
                                           for b in batches for x in b["decisions"]}
    items, total = pinned_page(d, where, sort, size)
    asked = workspace.page_request(KEY)
    if asked in ("next", "prev"):
        turn(d, where, sort, size, items, 1 if asked == "next" else -1)
        items, total = pinned_page(d, where, sort, size)
    if workspace.focus_closed(KEY):
        st.session_state.pop(FOCUS, None)  # its neighbours are not sent again with every batch
    focus_id = workspace.focus_request(KEY) or st.session_state.get(FOCUS)
    if focus_id and focus_id in {i.id for i in items}:
        st.session_state[FOCUS] = focus_id
    focus = focus_data(d, st.session_state[FOCUS], known) if st.session_state.get(FOCUS) else None
    counts = d.pool.counts("status")
    everything = sum(counts.values())
    reviewed = everything - counts.get(PREDICTED, 0)
    offset = int(st.session_state.get(OFFSET, 0))
    label = (f"{reviewed:,} of {everything:,} reviewed · {total:,} left in this filter · "
             f"images {offset + 1:,}–{offset + len(items):,}" if items else
             f"{reviewed:,} of {everything:,} reviewed · nothing left in this filter")
    conflicts = st.session_state.get(CONFLICTS) or {}
    workspace.tiles([tile(i) for i in items], legend(d, known), key=KEY, page_label=label,
                    conflicts={k: v for k, v in conflicts.items() if k in {i.id for i in items}}, focus=focus)
    return total
