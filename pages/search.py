"""Search: query images in, nearest labeled exemplars and label suggestions out."""

import time

import streamlit as st

from ui import gallery, inputs, jobview, resources, sidebar, state
from ui.plain import md
from ui.thumbs import thumb_cache
from vss_core.errors import VSSError
from vss_core.fastapi_vss.results import write_result
from vss_core.labeling.search import search

RESULT_ID = "search_result_id"
REST_KINDS = ("knn", "embed")

sidebar.frame()
ctx = state.open_project()
st.title("Search")
project = ctx.project
roots = ", ".join(f"`{r}`" for r in project.data_roots) or "none configured (set vss.data_roots)"

with st.form("search_form"):
    files = st.file_uploader("Query images — drag and drop one or many",
                             accept_multiple_files=True, key="search_uploads",
                             help="JPEG, PNG, TIFF, BMP, GIF or WebP; other files are listed and skipped.")
    server_path = st.text_input("…or a server path (image file or folder)", key="search_path",
                                help=f"Under the project's data roots: {roots}")
    top_n = st.slider("Top N exemplars per image", 1, 50, 5, key="search_top_n")
    submitted = st.form_submit_button("Search", type="primary", icon=":material/search:")

if submitted:
    queries = inputs.Sources()
    try:
        inputs.add_uploads(queries, files)
        if server_path.strip():
            inputs.add_server_path(queries, server_path, project)
    except VSSError as e:
        st.error(md(e))
    if queries.problems:
        st.warning("\n".join(f"- **{md(name)}**: {md(reason)}" for name, reason in queries.problems))
    if not queries.sources:
        if not queries.problems and not server_path.strip():
            st.info("Upload images or give a server path, then press Search.")
        st.session_state.pop(RESULT_ID, None)
    else:
        try:
            start = time.perf_counter()
            with st.spinner(f"Embedding {len(queries.sources)} image(s) and searching…"):
                results = search(ctx.embedder, ctx.store, queries.sources, int(top_n),
                                 names=queries.names)
            took = time.perf_counter() - start
            saved = write_result(project.output_path, results.to_fastapi_json())
            # keep paths, or small thumbnails of uploads -- never the uploaded originals
            shown = [thumb_cache().get(s) if isinstance(s, bytes) else s for s in queries.sources]
            st.session_state[RESULT_ID] = resources.results_cache().put(
                (results, shown, took, project.name, saved))
        except VSSError as e:
            st.session_state.pop(RESULT_ID, None)
            st.error(md(e))

entry = resources.results_cache().get(st.session_state.get(RESULT_ID))
if entry is not None and entry[3] == project.name:
    results, sources, took, _, saved = entry
    st.caption(f"Search took {took:.2f} s. fastapi-vss JSON saved to `{saved}`.")
    gallery.render(results, sources, key=st.session_state[RESULT_ID][:8])

jobview.panel(project.name, REST_KINDS)  # requests to the REST API (api.py) for this project
