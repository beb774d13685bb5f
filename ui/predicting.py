"""Prediction jobs: the start form; the job body is vss_core.labeling.predict.predict_job."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import inputs, resources, state
from ui.plain import md
from vss_core.errors import VSSError
from vss_core.jobs import runner
from vss_core.labeling import predict

KIND = "predict"
SOURCES = {
    "folder": "Server folder (recursive)",
    "csv": "Server CSV (one path per row)",
    "upload": "Upload images",
}


def start(ctx, decisions, source: str, path: str | None, top_n: int, uploads=(), names=()) -> str:
    """Start a prediction job for the current project; its meta lets it be resumed."""
    project = ctx.project
    spec = dict(source=source, path=path, top_n=top_n, threshold=predict.threshold_of(project),
                uploads=[str(u) for u in uploads], names=list(names))
    worker = runner.job_body(project, KIND, spec, lambda: predict.predict_job(
        source, path, project.data_roots, ctx.embedder, decisions.exemplars, decisions.pool, top_n=top_n,
        threshold=spec["threshold"], uploads=[Path(u) for u in uploads], upload_names=list(names)))
    label = f"{len(uploads)} uploaded image(s)" if source == "upload" else f"{source} {path}"
    return resources.job_registry().start(
        KIND, worker, project=project.name, source=source, path=path, top_n=top_n,
        uploads=tuple(str(u) for u in uploads), names=tuple(names), added_by=state.annotator(), label=label)


def resume(ctx, decisions, snap) -> str:
    meta = snap.meta
    return start(ctx, decisions, meta["source"], meta.get("path"), int(meta.get("top_n", 5)),
                 meta.get("uploads", ()), meta.get("names", ()))


def form(ctx, decisions, busy: bool) -> None:
    """Pick images and start predicting (needs an annotator and exemplars)."""
    project = ctx.project
    source = st.radio("Images", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="predict_source")
    files, text = None, None
    if source == "upload":
        files = st.file_uploader("Images to label", accept_multiple_files=True, type=inputs.IMAGE_TYPES,
                                 key="predict_uploads")
    else:
        roots = ", ".join(f"`{r}`" for r in project.data_roots) or "none (set vss.data_roots)"
        text = st.text_input("Server folder" if source == "folder" else "Server CSV file",
                             key=f"predict_path_{source}", help=f"Under the data roots: {roots}")
    top_n = st.slider("Neighbours per image", 1, 25, 5, key="predict_top_n")
    can_write = state.require_annotator("predict and review")
    if busy:
        st.info("A prediction is running for this project: review what it has done so far below.")
    if not st.button("Predict labels", type="primary", disabled=busy or not can_write, icon=":material/bolt:",
                     key="predict_start"):
        return
    try:
        predict.precheck(decisions.exemplars)
        if source == "upload":
            if not files:
                raise VSSError("Choose images to upload first.")
            saved = [inputs.save_upload(f.getvalue(), f.name, inputs.uploads_dir(project)) for f in files]
            start(ctx, decisions, source, None, top_n, saved, [f.name for f in files])
        else:
            if not (text or "").strip():
                raise VSSError("Give a server path first.")
            start(ctx, decisions, source, str(inputs.resolve_server_path(text, project)), top_n)
        st.rerun()
    except VSSError as e:
        st.error(md(e))
