"""Old import paths of the RQ chunk functions, kept for one release (until VSS 0.3).

RQ stores a queued job's function as an import path; jobs enqueued before vss_core moved into packages
name ``vss_core.rq_worker.load_chunk`` (and ``predict_chunk``, ``mine_chunk``).  They now live in
:mod:`vss_core.jobs.rq_worker`; a worker of this release still runs those queued jobs through these names.
"""

from vss_core.jobs.rq_worker import load_chunk, mine_chunk, predict_chunk

__all__ = ["load_chunk", "predict_chunk", "mine_chunk"]
