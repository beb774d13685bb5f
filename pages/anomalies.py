"""Anomalies within a set: score a folder's (a predict job's) images against each other, mark, export."""

import streamlit as st

from ui import mining_view, sidebar, state
from ui.plain import md
from vss_core.errors import VSSError
from vss_core.labeling import labelsheet
from vss_core.labeling.decisions import Change
from vss_core.mining import runs as mining_jobs
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import ANOMALY, NORMAL

sidebar.frame()
ctx, d = mining_view.page(
    "Anomalies",
    "How odd each image is inside its own set (the images of one prediction run, or the whole "
    "pool): its distance to its nearest neighbours in the set against theirs. Higher is odder."
)
sets = mining_jobs.pool_jobs(d.stores)
everything = d.pool.info().count
scope = st.selectbox("Set", ["", *sorted(sets)], key="anomaly_scope",
                     format_func=lambda j: f"whole pool ({everything:,} images)" if not j
                     else f"prediction run {j} ({sets[j]:,} images)")
mining_view.start(ctx, d, mining_jobs.ANOMALY, scope=scope)
scores = mining_jobs.all_scores(d.stores, mining_jobs.ANOMALY, scope)
if len(scores):
    lo, hi = float(scores.min()), float(max(scores.max(), scores.min() + 1e-3))
    default = float(min(max(scores.mean() + 2 * scores.std(), lo), hi))
    threshold = st.slider("Threshold", lo, hi, default, key="anomaly_threshold", format="%.4f")
    mining_view.histogram(scores, threshold, "anomaly score")
    total, top = mining_jobs.ranked(d.stores, mining_jobs.ANOMALY, scope, min_score=threshold, limit=200)
    st.markdown(f"**{total:,}** image(s) above the threshold, oddest first")
    selected = mining_view.pool_table(d, top, "anomaly_table", "anomaly")
    items = [item for item, _ in selected]
    blocked = not items or not state.annotator()
    c1, c2, c3 = st.columns(3)
    c1.button(f"Mark anomaly ({len(items)})", key="mark_anomaly", disabled=blocked, on_click=mining_view.act,
              args=(d, [Change(i.id, None, expected_version=i.version, flag=ANOMALY) for i in items], "mark anomaly"))
    c2.button(f"Mark normal ({len(items)})", key="mark_normal", disabled=blocked, on_click=mining_view.act,
              args=(d, [Change(i.id, None, expected_version=i.version, flag=NORMAL) for i in items], "mark normal"))
    with c3:
        mining_view.undo_button(d, "anomaly_undo")
st.subheader("Marked anomalies")
marked = PoolFilter(flags=(ANOMALY,), jobs=(scope,) if scope else ())
st.caption(f"{d.pool.page(marked, limit=0)[0]:,} image(s) marked as anomalies in this set.")
c1, c2 = st.columns(2)
c1.download_button("Download CSV", lambda: labelsheet.to_csv(d.pool, marked), file_name="anomalies.csv",
                   mime="text/csv", key="anomaly_csv", icon=":material/download:")
if c2.button("Write CSV under output_path", key="anomaly_write"):
    try:
        st.success(f"Written: `{labelsheet.write_csv(d.pool, ctx.project.output_path, marked, name='anomalies')}`")
    except VSSError as e:
        st.error(md(e))
