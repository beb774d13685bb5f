"""Search: embed query images, find their nearest exemplars, suggest labels."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vss_core.fastapi_vss.results import fastapi_result
from vss_core.labeling.labels import csv_cell


@dataclass(frozen=True)
class Vote:
    """A suggested label and the share of the vote it got (0..1)."""

    label: str
    share: float


@dataclass(frozen=True)
class QueryResult:
    """One query image: its neighbors (best first) and the label suggestions."""

    filename: str
    neighbors: tuple = ()
    majority: Vote | None = None
    weighted: Vote | None = None
    error: str | None = None


@dataclass
class SearchResults:
    """Results of one search, in the order the query images were given."""

    results: list[QueryResult] = field(default_factory=list)
    top_n: int = 0

    @property
    def ok(self) -> list[QueryResult]:
        return [r for r in self.results if r.error is None]

    @property
    def errors(self) -> list[QueryResult]:
        return [r for r in self.results if r.error is not None]

    def to_fastapi_json(self) -> dict:
        """fastapi-vss's result shape (see :mod:`vss_core.fastapi_vss.results`): per-image lists.

        ``scores`` there are cosine distances, as fastapi-vss sends them; images
        that failed are listed under ``errors`` and left out of the lists.
        """
        done = self.ok
        return fastapi_result([r.filename for r in done], [r.neighbors for r in done],
                              {r.filename: r.error for r in self.errors})

    def to_csv(self) -> str:
        """One row per (query image, neighbor), with both suggestions on each row.

        ``similarity`` is VSS's score (cosine similarity, 1 = identical).
        """
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["filename", "rank", "label", "similarity", "id", "exemplar_source",
                         "majority_label", "majority_share", "weighted_label", "weighted_share", "error"])
        for r in self.results:
            suggestion = [*_vote_cells(r.majority), *_vote_cells(r.weighted)]
            if r.error is not None:
                writer.writerow(map(csv_cell, [r.filename, "", "", "", "", "", *suggestion, r.error]))
            for rank, n in enumerate(r.neighbors, start=1):
                writer.writerow(map(csv_cell, [r.filename, rank, n.label, f"{n.score:.6f}", n.id, n.source,
                                               *suggestion, ""]))
        return out.getvalue()


def vote(neighbors: Sequence) -> tuple[Vote | None, Vote | None]:
    """Majority vote and score-weighted vote over neighbors' labels.

    Ties go to the label of the best-scoring neighbor.  Negative similarities
    carry no weight.
    """
    if not neighbors:
        return None, None
    first_seen = {}
    counts: Counter = Counter()
    for rank, n in enumerate(neighbors):
        first_seen.setdefault(n.label, rank)
        counts[n.label] += 1
    weights = label_weights(neighbors)
    majority = min(counts, key=lambda label: (-counts[label], first_seen[label]))
    total_weight = sum(weights.values())
    if total_weight > 0:
        weighted = min(weights, key=lambda label: (-weights[label], first_seen[label]))
        weighted_vote = Vote(weighted, weights[weighted] / total_weight)
    else:
        weighted_vote = Vote(majority, counts[majority] / len(neighbors))
    return Vote(majority, counts[majority] / len(neighbors)), weighted_vote


def label_weights(neighbors: Sequence) -> dict[str, float]:
    """Each label's weight in the score-weighted vote: the sum of its neighbours' similarities
    (a negative similarity counts 0), labels in the order they first appear."""
    weights: dict[str, float] = {}
    for n in neighbors:
        weights[n.label] = weights.get(n.label, 0.0) + max(float(n.score), 0.0)
    return weights


def search(embedder, store, sources: Sequence, top_n: int = 5,
           names: Sequence[str] | None = None) -> SearchResults:
    """Embed ``sources`` (paths or bytes) and find each one's ``top_n`` nearest exemplars.

    ``names`` label the sources in the results (default: the paths).  An image
    that cannot be decoded gets an ``error`` and the others go on.
    """
    names = list(names) if names is not None else [_name(s) for s in sources]
    embedded = embedder.embed(list(sources))
    neighbor_lists = store.knn(embedded.vectors, top_n) if len(embedded.ok) else []
    return assemble(names, embedded, neighbor_lists, top_n)


def assemble(names: Sequence[str], embedded, neighbor_lists: Sequence, top_n: int) -> SearchResults:
    """Results for ``names`` from an :class:`EmbedResult` and the neighbours of its vectors."""
    by_index = dict(zip(embedded.ok, neighbor_lists))
    errors = {e.index: e.reason for e in embedded.errors}
    results = []
    for i, name in enumerate(names):
        if i in by_index:
            neighbors = tuple(by_index[i])
            majority, weighted = vote(neighbors)
            results.append(QueryResult(name, neighbors, majority, weighted))
        else:
            results.append(QueryResult(name, error=errors.get(i, "not embedded")))
    return SearchResults(results, top_n)


def _name(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "<bytes>"


def _vote_cells(v: Vote | None) -> list:
    return [v.label, f"{v.share:.3f}"] if v else ["", ""]
