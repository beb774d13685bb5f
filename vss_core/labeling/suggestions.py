"""A suggestion as the pool stores it: the label the neighbours vote for, its best score, the margin
to the runner-up, and whether it is uncertain."""

from __future__ import annotations

import json
from typing import Sequence

from vss_core.labeling.search import Vote, label_weights, vote
from vss_core.redis.schema import TAG
from vss_core.redis.search_index import Neighbor

DISAGREE_SHARE = 0.5


def scores(neighbors: Sequence[Neighbor], majority: Vote | None, weighted: Vote | None,
           threshold: float) -> dict:
    """Best score of the suggested label, margin to the second label's share, and whether uncertain.

    Uncertain: the best score is under ``threshold``, or the neighbours disagree (the majority and
    the score-weighted vote differ, or the suggestion has less than half the weight)."""
    if not neighbors or weighted is None:
        return dict(best=-1.0, margin=0.0, second="", uncertain=True)
    weights = label_weights(neighbors)
    total = sum(weights.values()) or 1.0
    others = sorted(((w / total, label) for label, w in weights.items() if label != weighted.label), reverse=True)
    second_share, second = others[0] if others else (0.0, "")
    best = max(float(n.score) for n in neighbors if n.label == weighted.label)
    disagree = (majority is not None and majority.label != weighted.label) or weighted.share < DISAGREE_SHARE
    return dict(best=best, margin=weighted.share - second_share, second=second,
                uncertain=best < threshold or disagree)


def suggestion_fields(neighbors: Sequence[Neighbor], threshold: float) -> dict:
    """The pool fields of the suggestion made from ``neighbors``: label, scores, neighbours and the k they
    were found at (written by :meth:`~vss_core.redis.pool.PoolStore.add` and rewritten by a re-suggest, each
    adding the exemplar-set generation)."""
    majority, weighted = vote(neighbors)
    s = scores(neighbors, majority, weighted, threshold)
    suggestion = weighted.label if weighted else ""
    return {TAG: suggestion, "label": suggestion, "suggestion": suggestion, "suggestion_text": suggestion,
            "best": s["best"], "share": weighted.share if weighted else 0.0, "margin": s["margin"],
            "second": s["second"], "uncertain": int(s["uncertain"]),
            "confidence": s["best"] - 2 * int(s["uncertain"]), "k": len(neighbors),
            "neighbors": json.dumps([[n.label, n.id, round(float(n.score), 6), n.source] for n in neighbors])}
