"""Anomalies within a set: score a folder's (a predict job's) images against each other, mark, export."""

import streamlit as st

from ui import group_action, mining_view, sidebar, state, thresholds
from ui.plain import md
from vss_core.errors import VSSError
from vss_core.labeling import labelsheet
from vss_core.mining import runs as mining_jobs
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import ANOMALY, NORMAL

SHOW = 200


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
    usual = int((scores >= scores.mean() + 2 * scores.std()).sum())  # the default: beyond two deviations
    cut = thresholds.threshold(scores, "anomaly", score_name="anomaly score", default_top=max(usual, 1))
    mining_view.histogram(scores, cut.value, "anomaly score")
    st.markdown(f"**{cut.count:,}** image(s) above the threshold, oddest first"
                + (f" (the first {SHOW} listed)" if cut.count > SHOW else ""))
    selected = mining_view.pool_table(d, cut.rows(d.stores, mining_jobs.ANOMALY, scope, limit=SHOW), "anomaly_table",
                                      "anomaly")
    items = [item for item, _ in selected]
    with st.container(horizontal=True):
        for flag, text in ((ANOMALY, "Mark anomaly"), (NORMAL, "Mark normal")):
            st.button(f"{text} ({len(items)})", key=f"mark_{flag}", disabled=not items or not state.annotator(),
                      on_click=group_action.decide, args=(d, items, "anomaly_sel", f"mark {flag}",
                                                          f"Mark {len(items)} image(s) {flag}"), kwargs=dict(flag=flag))
        mining_view.undo_button(d, "anomaly_undo")
    group_action.preview(d, "anomaly_sel")
st.subheader("Marked anomalies")
marked = PoolFilter(flags=(ANOMALY,), jobs=(scope,) if scope else ())
st.caption(f"{d.pool.page(marked, limit=0)[0]:,} image(s) marked as anomalies in this set.")
with st.container(horizontal=True):
    st.download_button("Download CSV", lambda: labelsheet.to_csv(d.pool, marked), file_name="anomalies.csv",
                       mime="text/csv", key="anomaly_csv", icon=":material/download:")
    write = st.button("Write CSV", key="anomaly_write", icon=":material/save:",
                      help="Write anomalies.csv under the project's output_path on the server")
if write:
    try:
        st.success(f"Written: `{labelsheet.write_csv(d.pool, ctx.project.output_path, marked, name='anomalies')}`")
    except VSSError as e:
        st.error(md(e))
