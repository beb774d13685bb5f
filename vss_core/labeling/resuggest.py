"""Re-suggest: refresh the suggestions of undecided pool images that are older than the exemplars.

A suggestion is stale once the exemplar-set generation (:mod:`vss_core.redis.generation`) has moved past the one
it was made at.  :func:`resuggest` runs the KNN again for the stored pool vectors of the undecided
(``predicted``) images whose suggestion is stale, against the exemplars as they are now, and rewrites the
suggestion fields and the generation; an image decided meanwhile is left alone.  No image is embedded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vss_core.chunks import each_chunk
from vss_core.errors import InputError
from vss_core.labeling.suggestions import suggestion_fields
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import PREDICTED

KIND = "resuggest"
CHUNK = 500
DEFAULT_K = 5


@dataclass
class ResuggestReport:
    """How many undecided images were looked at, rewritten, and left alone (decided meanwhile)."""

    checked: int = 0
    rewritten: int = 0
    left: int = 0
    cancelled: bool = False

    def summary(self) -> str:
        text = f"{self.rewritten:,} suggestion(s) refreshed of {self.checked:,} undecided image(s)"
        if self.left:
            text += f", {self.left:,} decided meanwhile and left alone"
        return text + (" (cancelled)" if self.cancelled else "")


def resuggest(d, threshold: float, progress=None, cancel: Callable[[], bool] | None = None) -> ResuggestReport:
    """Refresh every stale suggestion of an undecided image of ``d.pool`` (``d``: a
    :class:`~vss_core.labeling.decisions.Decisions`) against ``d.exemplars``; ``threshold`` marks uncertain ones."""
    if not d.exemplars.info().count:
        raise InputError(f"exemplar index '{d.exemplars.index_name}' is empty: nothing to suggest from")
    now = d.pool.generation()  # read before the KNN: exemplars changed during the run leave them stale
    ids = d.pool.ids(PoolFilter(statuses=(PREDICTED,)))
    report = ResuggestReport(checked=len(ids))

    def refresh(_, chunk) -> None:
        states = d.pool.suggestion_states(chunk)
        stale = [(id, version, k or DEFAULT_K) for id, (status, version, stamp, k) in zip(chunk, states)
                 if status == PREDICTED and stamp < now]
        if stale:
            rewritten = _rewrite(d, stale, threshold, now)
            report.rewritten += rewritten
            report.left += len(stale) - rewritten

    report.cancelled = not each_chunk(ids, CHUNK, refresh, cancel, progress)
    return report


def _rewrite(d, stale: list[tuple[str, int, int]], threshold: float, now: int) -> int:
    vectors = d.pool.vectors([id for id, _, _ in stale])
    updates = []
    for k in sorted({k for _, _, k in stale}):
        rows = [i for i, (_, _, kk) in enumerate(stale) if kk == k]
        for i, neighbors in zip(rows, d.exemplars.knn(vectors[rows], k)):
            id, version, _ = stale[i]
            updates.append((id, version, {**suggestion_fields(neighbors, threshold), "generation": now}))
    return d.pool.rewrite_suggestions(updates)


def resuggest_job(d, threshold: float):
    """The body ``fn(progress) -> ResuggestReport`` of a background re-suggest job."""

    def work(progress) -> ResuggestReport:
        progress.message("Refreshing stale suggestions…")
        report = resuggest(d, threshold, progress, cancel=lambda: progress.cancelled)
        progress.message(report.summary())
        return report

    return work


__all__ = ["KIND", "ResuggestReport", "resuggest", "resuggest_job"]
