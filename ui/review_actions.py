"""Review-page actions on many images (bulk accept, selection), the overview chart, activity and export."""

from __future__ import annotations

import json
from dataclasses import replace

import altair as alt
import streamlit as st

from ui import state
from ui.plain import md
from ui.review import flash, thumb_uri
from vss_core.errors import VSSError
from vss_core.labeling import labelsheet
from vss_core.labeling.audit import describe
from vss_core.labeling.decisions import Change
from vss_core.redis.pool import PoolFilter
from vss_core.config.keys import BULK as BULK_HOW
from vss_core.config.keys import describe_policy
from vss_core.redis.schema import ACCEPTED, PREDICTED, STATUSES

ANY = "any suggestion"
PANEL, PREDICT = "review_panel", "Predict"
PANELS = ("Accept in bulk", PREDICT, "Overview", "Activity", "Export")
"""The Review page's panels under the workspace, in tab order; only the open one is drawn."""


def overview(d, threshold: float) -> None:
    """Counts per status and a histogram of best scores with the acceptance threshold marked."""
    counts = d.pool.counts("status")
    cols = st.columns(len(STATUSES) + 1)
    cols[0].metric("In the pool", f"{sum(counts.values()):,}")
    for col, status in zip(cols[1:], STATUSES):
        col.metric(status, f"{counts.get(status, 0):,}")
    bins = d.pool.histogram()
    if not bins:
        return
    data = [{"from": lo, "to": hi, "images": n} for lo, hi, n in bins]
    bars = alt.Chart(alt.Data(values=data)).mark_bar(color="#0b6e99").encode(
        x=alt.X("from:Q", title="best cosine similarity of the suggested label", scale=alt.Scale(zero=False)),
        x2="to:Q", y=alt.Y("images:Q", title="images"), y2=alt.datum(0),
        tooltip=[alt.Tooltip("from:Q", format=".3f"), alt.Tooltip("to:Q", format=".3f"), "images:Q"])
    rule = alt.Chart(alt.Data(values=[{"t": threshold}])).mark_rule(color="#d62728", strokeDash=[4, 3]).encode(
        x="t:Q")
    st.altair_chart((bars + rule).properties(height=140), width="stretch")
    st.caption(f"Red line: the project's acceptance threshold {threshold:.2f} (vss.threshold). "
               "Images under it, or whose neighbours disagree, are marked uncertain.")


BULK, SEEN, BULK_PAGE = "bulk_preview", "bulk_seen", "bulk_page"
PREVIEW_PAGE = 48


def bulk_accept(d, threshold: float, policy) -> None:
    """Accept undecided images with a suggestion (or any) at or above a score, after a preview of every one
    of them: the accept button appears once each page of the preview was shown."""
    if st.session_state.get(BULK):
        _preview(d)
        return
    labels = sorted(d.pool.counts("suggestion"))
    row = st.container(horizontal=True, vertical_alignment="bottom")
    label = row.selectbox("Suggestion", [ANY, *labels], key="bulk_label", width=240)
    t = row.number_input("Best score at or above", -1.0, 1.0, float(threshold), 0.0005, format="%.4f",
                         key="bulk_threshold", width=200)
    uncertain = row.toggle("With uncertain", key="bulk_uncertain",
                           help="Uncertain: under the threshold, or its neighbours disagree")
    where = PoolFilter(statuses=(PREDICTED,), suggestions=() if label == ANY else (label,), min_score=t)
    ids = d.pool.ids(where)  # ids only: the documents are read when the preview opens
    if not uncertain:
        doubtful = set(d.pool.ids(replace(where, uncertain_only=True)))
        ids = [id for id in ids if id not in doubtful]
    st.caption(f"{describe_policy(policy)}.")
    if st.button(f"Preview {len(ids):,} image(s)", key="bulk_open", disabled=not ids or not state.annotator(),
                 icon=":material/preview:"):
        # ids and the versions previewed: a change since is refused
        st.session_state[BULK] = [(i.id, i.version) for i in d.pool.get(ids) if i is not None]
        st.session_state[SEEN], st.session_state[BULK_PAGE] = [0], 0
        st.rerun()


def _preview(d) -> None:
    ids = [id for id, _ in st.session_state[BULK]]
    pages = max(1, -(-len(ids) // PREVIEW_PAGE))
    page = min(int(st.session_state.get(BULK_PAGE, 0)), pages - 1)
    seen = set(st.session_state.get(SEEN, [])) | {page}
    st.session_state[SEEN] = sorted(seen)
    items = [i for i in d.pool.get(ids[page * PREVIEW_PAGE:(page + 1) * PREVIEW_PAGE]) if i is not None]
    st.markdown(f"**Bulk accept: {len(ids):,} image(s)**, each with its suggested label. Page {page + 1} of "
                f"{pages}; seen {len(seen)} of {pages} page(s).")
    cols = st.columns(8)
    for n, item in enumerate(items):
        cols[n % 8].image(thumb_uri(item.source), caption=f"{md(item.suggestion)} · {item.best:.4f}", width="stretch")
    c1, c2, c3, c4 = st.columns(4)
    c1.button("◀ Page", key="bulk_prev", disabled=page == 0, on_click=_bulk_page, args=(page - 1,), width="stretch")
    c2.button("Page ▶", key="bulk_next", disabled=page >= pages - 1, on_click=_bulk_page, args=(page + 1,),
              width="stretch")
    c3.button("Cancel", key="bulk_cancel", on_click=_bulk_close, width="stretch")
    done = len(seen) >= pages
    c4.button(f"Accept these {len(ids):,}", key="bulk_accept", type="primary", width="stretch",
              disabled=not done or not state.annotator(), on_click=_bulk_apply, args=(d,),
              help=None if done else "Page through every page of the preview first")


def _bulk_page(page: int) -> None:
    st.session_state[BULK_PAGE] = page


def _bulk_close() -> None:
    for key in (BULK, SEEN, BULK_PAGE):
        st.session_state.pop(key, None)


def _bulk_apply(d) -> None:
    chosen = st.session_state.get(BULK) or []
    _apply(d, [Change(id, ACCEPTED, None, int(version), how=BULK_HOW) for id, version in chosen], "bulk accept")
    _bulk_close()


def _apply(d, changes: list[Change], kind: str) -> None:
    try:
        result = d.apply(changes, state.annotator(), kind=kind)
    except VSSError as e:
        flash("error", str(e))
        return
    flash("success" if not result.refused else "warning", f"{kind}: {result.summary()}")


def activity(d) -> None:
    """The last 50 decisions of the audit log."""
    entries = d.audit(50)
    if not entries:
        st.caption("No decisions yet.")
        return
    st.dataframe([{"at": e.get("at", ""), "annotator": e.get("annotator", ""), "action": e.get("kind", ""),
                   "image": e.get("id", ""), "before": _state(e.get("before")), "after": _state(e.get("after"))}
                  for e in entries], hide_index=True, width="stretch")


def _state(raw: str | None) -> str:
    """A recorded state in words: a pool image's status and label, or an exemplar audit's key and label."""
    try:
        state = json.loads(raw or "{}")
    except ValueError:
        return ""
    return describe(state) if isinstance(state, dict) else ""


def export(d, project) -> None:
    """The label sheet as CSV and fastapi-vss JSON: downloads, and files under vss.output_path."""
    row = st.container(horizontal=True)
    row.download_button("Label sheet (CSV)", lambda: labelsheet.to_csv(d.pool), file_name="labels.csv",
                        mime="text/csv", icon=":material/download:", key="dl_csv")
    row.download_button("fastapi-vss JSON", lambda: json.dumps(labelsheet.to_fastapi_json(d.pool), indent=2),
                        file_name="labels.json", mime="application/json", icon=":material/download:", key="dl_json")
    if row.button("Write both files", key="write_sheet", help="Under the project's vss.output_path"):
        try:
            paths = [labelsheet.write_csv(d.pool, project.output_path),
                     labelsheet.write_json(d.pool, project.output_path)]
            st.success("Written: " + ", ".join(f"`{p}`" for p in paths))
        except VSSError as e:
            st.error(str(e))
    st.caption("One row per image: path, label, score (best cosine similarity), status, share, margin, "
               "suggestion, uncertain, flag, annotator, time, model, id, how it was decided, whether it became an "
               "exemplar. The JSON has fastapi-vss's shape: "
               "per-image lists and cosine distances.")
