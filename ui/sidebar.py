"""What every page starts with (:func:`frame`): the page settings, the navigation and the sidebar
(project picker, config errors, annotator and the project's status)."""

from __future__ import annotations

import streamlit as st

from ui import resources, state
from ui.plain import md
from ui.thumbs import favicon
from vss_core.config.projects import ProjectConfig
from vss_core.errors import VSSError
from vss_core.redis.sizing import index_advice

NAVIGATION = (
    ("app.py", "Search", ":material/image_search:"),
    ("pages/review.py", "Review", ":material/fact_check:"),
    ("pages/rare.py", "Rare events", ":material/star:"),
    ("pages/anomalies.py", "Anomalies", ":material/warning:"),
    ("pages/map.py", "Embedding map", ":material/scatter_plot:"),
    ("pages/exemplars.py", "Exemplars", ":material/library_add:"),
    ("pages/audit.py", "Exemplar audit", ":material/rule:"),
)
"""(page file, label, icon) in menu order.  Streamlit names its own menu of a ``pages/`` app after
the files, so the app hides it (``client.showSidebarNavigation = false``) and draws this one."""


def frame(sidebar: str = "auto") -> None:
    """The first call of every page: page settings, the navigation and the sidebar (``sidebar``: how it
    starts, "auto", "expanded" or "collapsed")."""
    st.set_page_config(page_title="VSS", page_icon=favicon(), layout="wide", initial_sidebar_state=sidebar)
    state.keep_choices()
    with st.sidebar:
        for path, label, icon in NAVIGATION:
            st.page_link(path, label=label, icon=icon)
    render()


def render() -> None:
    with st.sidebar:
        try:
            project_set = resources.projects()
        except VSSError as e:  # e.g. a bad BATCH_SIZE: no project can load
            st.error(f"Configuration error: {md(e)}")
            return
        names = sorted(project_set.projects)
        state.init_from_url(names)
        if names:
            st.selectbox("Project", names, key=state.PROJECT)
        else:
            st.warning("No project could be loaded from the config folder.")
        if project_set.errors:
            n = len(project_set.errors)
            with st.expander(f":material/warning: {n} config file{'s' if n > 1 else ''} with errors",
                             expanded=not names):
                for error in project_set.errors:
                    st.error(md(error))
        _annotator()
        state.sync_to_url()
        project = state.current_project()
        if project is not None:
            _status(project)
        if st.button("Reload configs", key="reload_configs", type="tertiary",
                     icon=":material/refresh:"):
            resources.reload_projects()
            st.rerun()


def sign_in_configured() -> bool:
    """Whether Streamlit's own sign-in (``st.login``, OIDC: an ``[auth]`` secrets section) is set up."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


def _annotator() -> None:
    """The annotator: the signed-in user where sign-in is configured, else a name typed in."""
    if not sign_in_configured():
        st.text_input("Annotator", key=state.ANNOTATOR, placeholder="your name",
                      help="Recorded with every exemplar you load; needed to load or delete.")
        return
    if not getattr(st.user, "is_logged_in", False):
        st.session_state[state.ANNOTATOR] = ""
        st.button("Sign in", on_click=st.login, key="sign_in", icon=":material/login:")
        return
    name = str(st.user.get("name") or st.user.get("email") or st.user.get("sub") or "").strip()
    st.session_state[state.ANNOTATOR] = name
    st.markdown(f"**Annotator** {md(name)} (signed in)")
    st.button("Sign out", on_click=st.logout, key="sign_out", type="tertiary", icon=":material/logout:")


def _status(project: ProjectConfig) -> None:
    st.divider()
    st.caption("STATUS")
    if project.notice:
        st.warning(md(project.notice), icon=":material/cloud_off:")
    redis_line = f"**Redis** {project.redis.describe()}"
    try:
        resources.client_for(project).ping()
        redis_ok = True
    except Exception as e:  # noqa: BLE001 - any failure means "does not answer"
        redis_ok = False
        redis_error = e if isinstance(e, VSSError) else f"{type(e).__name__}: {e}"
        resources.forget_target(project)
    st.markdown(f"{redis_line} · {':green[answers]' if redis_ok else ':red[does not answer]'}")
    if not redis_ok:
        st.caption(md(redis_error))
    device = project.device
    count, advice = "–", None
    try:
        embedder = resources.embedder_for(project)
        device = embedder.device
        if redis_ok:
            info = resources.store_for(project, embedder.dim).info()
            count, advice = f"{info.count:,}", index_advice(info.algorithm, info.count, embedder.dim)
    except VSSError:
        device = ":red[model not loaded, see the page]"
    st.markdown(f"**Model** `{project.model}`  \n**Device** {device}  \n**Vectors** {count}")
    if advice:
        st.caption(f":material/speed: {advice}")
