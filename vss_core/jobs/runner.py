"""Which runner a project's batch jobs use: a thread of the starting process, or RQ workers.

``jobs.runner`` in the project file: ``thread`` (the default) runs the job's body in the
JobRegistry's thread; ``rq`` makes the body hand the work to RQ workers in chunks
(:mod:`vss_core.jobs.rq_jobs`).  Either way the job belongs to the JobRegistry that started it, so
progress, errors, cancel and resume reach the pages the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from vss_core.errors import JobError

__all__ = ["job_body", "runner_of"]


def runner_of(project) -> str:
    """The project's job runner: "thread" or "rq"."""
    return (getattr(project, "jobs", None) or {}).get("runner", "thread")


def job_body(project, kind: str, spec: Mapping[str, Any],
             local: Callable[[], Callable]) -> Callable:
    """The body ``fn(progress)`` of a ``kind`` job (load, predict, mine) of ``project``.

    ``local()`` builds the in-process body (thread runner); ``spec`` describes the same job in
    plain values for workers: load ``source, path, added_by``; predict ``source, path, top_n,
    threshold, uploads, names``; mine ``what, scope, k``.
    """
    runner = runner_of(project)
    if runner == "thread":
        return local()
    if runner == "rq":
        from vss_core.jobs.rq_jobs import distributed

        return distributed(project, kind, dict(spec))
    raise JobError(f"project '{project.name}': unknown job runner {runner!r} (thread or rq)")
