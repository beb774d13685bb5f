"""Review-page actions on many images (bulk accept, selection), the overview chart, activity and export."""

from __future__ import annotations

import json

import altair as alt
import streamlit as st

from ui import state
from ui.review import flash, stale_notice
from vss_core.errors import VSSError
from vss_core.labeling import labelsheet
from vss_core.labeling.audit import describe
from vss_core.labeling.decisions import Change
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import ACCEPTED, DUBIOUS, PREDICTED, STATUSES

ANY = "any suggestion"


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
    stale_notice(d, threshold)


def bulk_accept(d, threshold: float) -> None:
    """Accept every undecided image with a given suggestion (or any) at or above a threshold: one action."""
    labels = sorted(d.pool.counts("suggestion"))
    c1, c2, c3 = st.columns([2, 2, 2])
    label = c1.selectbox("Suggestion", [ANY, *labels], key="bulk_label")
    t = c2.number_input("at or above", -1.0, 1.0, float(threshold), 0.01, key="bulk_threshold")
    where = PoolFilter(statuses=(PREDICTED,), suggestions=() if label == ANY else (label,), min_score=t,
                       uncertain_only=False)
    ids = d.pool.ids(where)
    c3.write("")
    c3.button(f"Accept {len(ids):,} image(s)", key="bulk_accept", type="primary",
              disabled=not ids or not state.annotator(), on_click=_apply,
              args=(d, [Change(id, ACCEPTED) for id in ids], "bulk accept"))


def selection(d, items, selected: list[int], known: list[str]) -> None:
    """Actions on the rows selected in the grid, with the versions shown."""
    if not selected:
        st.caption("Select rows in the table (click the left edge; shift-click for a range) for actions on many.")
        return
    chosen = [items[i] for i in selected if i < len(items)]
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1])
    blocked = not state.annotator()
    c1.button(f"Accept {len(chosen)}", key="sel_accept", disabled=blocked, on_click=_apply,
              args=(d, [Change(i.id, ACCEPTED, None, i.version) for i in chosen], "accept selected"))
    c2.button(f"Dubious {len(chosen)}", key="sel_dubious", disabled=blocked, on_click=_apply,
              args=(d, [Change(i.id, DUBIOUS, None, i.version) for i in chosen], "dubious selected"))
    label = c3.selectbox("Assign label", known, index=None, key="sel_label", accept_new_options=True,
                         placeholder="pick or type a label")
    c4.write("")
    c4.button("Assign", key="sel_assign", disabled=blocked or not label, on_click=_apply,
              args=(d, [Change(i.id, ACCEPTED, label, i.version) for i in chosen], "assign selected"))


def _apply(d, changes: list[Change], kind: str) -> None:
    try:
        result = d.apply(changes, state.annotator(), kind=kind)
    except VSSError as e:
        flash("error", str(e))
        return
    flash("success" if not result.refused else "warning", f"{kind}: {result.summary()}")


def activity(d) -> None:
    with st.expander("Activity (audit log)"):
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
    c1, c2, c3 = st.columns(3)
    c1.download_button("Label sheet (CSV)", lambda: labelsheet.to_csv(d.pool), file_name="labels.csv",
                       mime="text/csv", icon=":material/download:", key="dl_csv")
    c2.download_button("fastapi-vss JSON", lambda: json.dumps(labelsheet.to_fastapi_json(d.pool), indent=2),
                       file_name="labels.json", mime="application/json", icon=":material/download:", key="dl_json")
    if c3.button("Write both under output_path", key="write_sheet"):
        try:
            paths = [labelsheet.write_csv(d.pool, project.output_path),
                     labelsheet.write_json(d.pool, project.output_path)]
            st.success("Written: " + ", ".join(f"`{p}`" for p in paths))
        except VSSError as e:
            st.error(str(e))
    st.caption("One row per image: path, label, score (best cosine similarity), status, share, margin, "
               "suggestion, uncertain, annotator, time, model, id. The JSON has fastapi-vss's shape: "
               "per-image lists and cosine distances.")
