"""Exemplar loads as background jobs: the start form; the job body is vss_core.labeling.loader.load_job."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import inputs, resources, state
from ui.plain import md
from vss_core.errors import VSSError
from vss_core.jobs import runner
from vss_core.labeling import loader

KIND = "load"
SOURCES = {
    "folder": "Server folder (one sub-folder per label)",
    "csv": "Server CSV file (path,label)",
    "zip": "Upload a zip (one folder per label)",
}


def start(ctx, source: str, path: str) -> str:
    """Start a load job for the current project; the job's meta lets it be resumed."""
    worker = runner.job_body(ctx.project, KIND, dict(source=source, path=path, added_by=state.annotator()),
                             lambda: loader.load_job(source, path, ctx.project.data_roots, ctx.embedder, ctx.store,
                                                     state.annotator()))
    return resources.job_registry().start(
        KIND, worker, project=ctx.project.name, source=source, path=path,
        added_by=state.annotator(), label=f"{source} {Path(path).name if source == 'zip' else path}")


def resume(ctx, snap) -> str:
    return start(ctx, snap.meta["source"], snap.meta["path"])


def form(ctx, busy: bool) -> None:
    """Pick a source and start loading (needs an annotator; refuses paths outside the roots)."""
    project = ctx.project
    source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                      key="load_source")
    if source == "zip":
        upload = st.file_uploader("Zip of labeled images", type=["zip"], key="load_zip")
        text = None
    else:
        roots = ", ".join(f"`{r}`" for r in project.data_roots) or "none (set vss.data_roots)"
        text = st.text_input("Server folder" if source == "folder" else "Server CSV file",
                             key=f"load_path_{source}", help=f"Under the data roots: {roots}")
        st.caption(f"Data roots: {roots}")
    can_write = state.require_annotator("load exemplars")
    if busy:
        st.info("A load is running for this project; wait for it or cancel it below.")
    if not st.button("Load exemplars", type="primary", disabled=busy or not can_write,
                     icon=":material/upload:", key="load_start"):
        return
    try:
        if source == "zip":
            if upload is None:
                raise VSSError("Choose a zip file to upload first.")
            if upload.size > inputs.upload_cap_bytes():
                raise VSSError(f"{upload.name}: over the upload cap of "
                               f"{inputs.upload_cap_bytes() // 2**20} MB.")
            path = str(inputs.save_upload(upload.getvalue(), upload.name,
                                          inputs.uploads_dir(project)))
        else:
            if not (text or "").strip():
                raise VSSError("Give a server path first.")
            resolved = inputs.resolve_server_path(text, project)
            path = str(resolved)
        start(ctx, source, path)
        st.rerun()
    except VSSError as e:
        st.error(md(e))
