"""Embedding map: exemplars and pool in 2-D, coloured by label, novelty or anomaly; select to review."""

import streamlit as st

from ui import map_view, mining_view, rare_view, resources, sidebar, state
from vss_core.mining import runs as mining_jobs
from vss_core.mining import scores as mining

MAP_ID = "map_id"

sidebar.frame()
ctx = state.open_project()
d = resources.decisions_for(ctx.project, ctx.embedder.dim)
st.title("Embedding map")
mining_view.show_flash()
with st.container(horizontal=True, vertical_alignment="bottom"):
    method = st.selectbox("Projection", mining.projections(), key="map_method", width=160)
    colour = st.selectbox("Colour by", ["label", "novelty", "anomaly"], key="map_colour", width=160)
    draw = st.button("Draw the map", type="primary", key="map_draw")
if draw or st.session_state.get(MAP_ID) is None:
    with st.spinner("Projecting…"):
        st.session_state[MAP_ID] = map_view.keep(map_view.build(d, method))
points = map_view.cached(st.session_state.get(MAP_ID))
if points is None or not points["rows"]:
    st.info("Nothing to draw yet: load exemplars or predict some images.")
    st.stop()
picked = map_view.chart(points, colour)
st.caption("Circles are exemplars, triangles pool images. Drag a box over pool images to review them.")
if picked:
    if len(picked) > 200:
        st.caption(f"{len(picked):,} pool images in the box; the first 200 are listed and acted on.")
    scored = [mining_jobs.Scored(id, 0.0) for id in picked[:200]]
    selected = mining_view.pool_table(d, scored, "map_table", "—")
    chosen = [item for item, _ in selected]
    rare_view.set_actions(d, chosen or [i for i in d.pool.get(picked[:200]) if i], sorted(d.exemplars.label_counts()),
                          key="map_sel", source="selection" if chosen else "map selection")
