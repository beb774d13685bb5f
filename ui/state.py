"""Per-session choices (project, annotator) and opening the current project.

``st.session_state`` holds only names and ids.  The project and annotator are
mirrored into the URL's query parameters so a page reload keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from ui import resources
from ui.plain import md
from vss_core.config.projects import ProjectConfig
from vss_core.errors import VSSError

PROJECT = "project"
ANNOTATOR = "annotator"


def _query_param(name: str) -> str | None:
    value = st.query_params.get(name)
    return value if isinstance(value, str) and value.strip() else None


def init_from_url(names: list[str]) -> None:
    """Seed the session's project/annotator from the URL (before the widgets exist)."""
    if PROJECT not in st.session_state or st.session_state[PROJECT] not in names:
        wanted = _query_param(PROJECT)
        if wanted in names:
            st.session_state[PROJECT] = wanted
        elif names:
            st.session_state[PROJECT] = names[0]
    if ANNOTATOR not in st.session_state:
        st.session_state[ANNOTATOR] = _query_param(ANNOTATOR) or ""


def sync_to_url() -> None:
    for name in (PROJECT, ANNOTATOR):
        value = (st.session_state.get(name) or "").strip()
        if value and st.query_params.get(name) != value:
            st.query_params[name] = value
        elif not value and name in st.query_params:
            del st.query_params[name]


def annotator() -> str:
    return (st.session_state.get(ANNOTATOR) or "").strip()


def current_project() -> ProjectConfig | None:
    try:
        projects = resources.projects().projects
    except VSSError:
        return None
    return projects.get(st.session_state.get(PROJECT) or "")


@dataclass(frozen=True)
class ProjectContext:
    project: ProjectConfig
    embedder: Any
    store: Any


def keep_choices() -> None:
    """Carry the sidebar's project and annotator to the page being opened.

    Each page of Streamlit's ``pages/`` app draws its own sidebar, and Streamlit forgets a widget's
    value when the next page's run does not draw that same widget; setting the keys again before
    the widgets exist keeps them (Streamlit's documented way to keep widget state across pages).
    """
    for key in (PROJECT, ANNOTATOR):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def open_project() -> ProjectContext:
    """The current project with its embedder and store, or an error panel and ``st.stop()``.

    Another project stays selectable in the sidebar whatever goes wrong here.
    """
    project = current_project()
    if project is None:
        st.info("No usable project. Add a project YAML file to the config folder "
                "(see the sidebar for files that failed to load).")
        st.stop()
    try:
        embedder = resources.embedder_for(project)
        store = resources.store_for(project, embedder.dim)
    except VSSError as e:
        project_error_panel(project, e)
        st.stop()
    return ProjectContext(project, embedder, store)


def project_error_panel(project: ProjectConfig, error: Exception) -> None:
    st.error(f"**Project '{md(project.name)}' is not usable right now.**\n\n{md(str(error))}\n\n"
             f"Config file: {md(str(project.source_file))} · Redis: {md(project.redis.describe())} · "
             f"model: {md(project.model)}.  Other projects in the sidebar are not affected.",
             icon=":material/error:")
    if st.button("Retry", key="retry_project"):
        resources.forget_target(project)
        st.rerun()


def require_annotator(action: str) -> bool:
    """True when an annotator name is set; otherwise a note saying it is needed for ``action``."""
    if annotator():
        return True
    st.warning(f"Enter your name as annotator in the sidebar to {action}.", icon=":material/person:")
    return False
