"""A job's progress, polled from the registry by a fragment while the job runs."""

from __future__ import annotations

import streamlit as st

from ui import resources
from ui.plain import md
from vss_core.jobs.registry import CANCELLED, DONE, FAILED, INTERRUPTED

POLL_S = 0.5
_ICONS = {DONE: ":material/check_circle:", FAILED: ":material/error:",
          CANCELLED: ":material/cancel:", INTERRUPTED: ":material/pause_circle:"}
KIND_TEXTS = {"load": "Load", "predict": "Predict", "mine": "Mine",
              "knn": "KNN (REST)", "embed": "Embed (REST)"}
RESUMABLE = (CANCELLED, FAILED, INTERRUPTED)


def kind_text(kind: str) -> str:
    return KIND_TEXTS.get(kind, kind.title())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(snap) -> str:
    total = "?" if snap.total is None else f"{snap.total:,}"
    rate = "–" if not snap.rate else f"{snap.rate:.1f}/s"
    parts = [f"{snap.done:,} / {total}", rate]
    if snap.active:
        parts.append(f"ETA {fmt_duration(snap.eta_s)}")
    else:
        parts.append(f"took {fmt_duration(snap.elapsed_s)}")
    if snap.error_count:
        parts.append(f"{snap.error_count:,} error{'s' if snap.error_count != 1 else ''}")
    return " · ".join(parts)


def render_snapshot(snap, on_resume=None) -> None:
    """One job: what it loads, a bar with done / total, rate and ETA, errors, controls."""
    with st.container(border=True):
        who = f" by {md(snap.meta.get('added_by'))}" if snap.meta.get("added_by") else ""
        where = f" (in {md(snap.owner)})" if snap.owner else ""
        head = f"**{kind_text(snap.kind)}** {md(snap.meta.get('label', ''))}{who} — {snap.state}{where}"
        st.markdown(f"{_ICONS.get(snap.state, ':material/sync:')} {head}")
        st.progress(snap.fraction or 0.0, text=progress_text(snap))
        if snap.message:
            st.caption(md(snap.message))
        if snap.state == FAILED:
            st.error(md(snap.message or "The job failed."))
        if snap.error_count:
            with st.expander(f"{snap.error_count:,} file(s) failed", expanded=not snap.active):
                if snap.error_count > len(snap.errors):
                    st.caption(f"The first {len(snap.errors):,} are shown; all of them are in "
                               f"{md(snap.errors_file or 'the job log')}.")
                st.dataframe([{"file": f, "reason": r} for f, r in snap.errors],
                             hide_index=True, width="stretch")
        registry = resources.job_registry()
        if snap.active:
            if st.button("Cancel", key=f"cancel_{snap.id}", icon=":material/stop:"):
                registry.cancel(snap.id, project=snap.project)
                st.rerun(scope="fragment")
        elif snap.state in RESUMABLE and on_resume is not None:
            if st.button("Resume (skips what is done)", key=f"resume_{snap.id}",
                         icon=":material/play_arrow:"):
                on_resume(snap)
                st.rerun()


def jobs_to_show(project: str, kind) -> list:
    """Running jobs of the project (this process's and, through Redis, others'), else its latest one.

    ``kind`` is one job kind or several.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    jobs = [j for j in resources.job_registry().jobs(project=project) if j.kind in kinds]
    active = [j for j in jobs if j.active]
    return active or jobs[:1]


def panel(project: str, kind: str, on_resume=None) -> None:
    """Show the project's jobs; poll every POLL_S while one runs, then rerun the page once."""
    shown = jobs_to_show(project, kind)
    if not shown:
        return
    polling = any(s.active for s in shown)

    @st.fragment(run_every=POLL_S if polling else None)
    def _live():
        registry = resources.job_registry()
        snaps = [registry.get(s.id, project=s.project) or s for s in shown]
        for snap in snaps:
            render_snapshot(snap, on_resume)
        if polling and not any(s.active for s in snaps):
            st.rerun()  # a job ended: refresh the whole page (index overview, buttons)

    _live()
