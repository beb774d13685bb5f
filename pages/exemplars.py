"""Exemplars: load labeled images as a background job, and look after the index."""

import streamlit as st

from ui import index_view, jobview, loading, sidebar, state

sidebar.frame()
ctx = state.open_project()
st.title("Exemplars")
name = ctx.project.name

st.subheader("Load labeled exemplars")
running = [j for j in jobview.jobs_to_show(name, loading.KIND) if j.active]
loading.form(ctx, busy=bool(running))
jobview.panel(name, loading.KIND, on_resume=lambda snap: loading.resume(ctx, snap))

st.divider()
st.subheader("Index")
index_view.render(ctx.store, ctx.project.model)
