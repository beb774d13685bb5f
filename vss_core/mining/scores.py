"""Scores for rare-event mining: novelty, anomaly and mislabel, plus grouping and a 2-D map.

Pure numpy / scikit-learn on float32 vectors (normalised here, so cosine similarity is a dot
product); one float per row out, higher = more novel / anomalous / suspect.  Each score has ONE
definition, in a ``*_from_neighbors`` building block that takes neighbour lists (cosine
similarities best first, as ``SearchIndex.knn`` gives them).  The full-matrix functions find the
neighbours exactly in row chunks and call the same blocks; a Redis job gets the neighbours from
the vector index in chunks and calls them too, so 100,000 vectors never need an n x n matrix.
The methods and their parameters were picked by measurement on synthetic worlds
(``bench/mining_worlds.py``, docs/benchmarks.md "Mining scores").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vss_core.errors import InputError

CHUNK = 2048  # query rows per block of the exact neighbour search (CHUNK x n floats at a time)
NOVELTY_LOCAL_SCALE = 0.5  # share of the exemplars' own k-distance taken off a query's (bench/mining_worlds.py)
ANOMALY_CONTRAST = 1.0  # share of the neighbours' k-distance taken off a member of a large group
ANOMALY_GROUP = 0.02  # a group of this share of the set (at least k) gets half that share
ANOMALY_JUMP = 0.25  # weight of the rise from the mean to the k-th neighbour distance
ANOMALY_TRUST = (3.0, 8.0)  # median group size / k at which contrast and jump start, and are in full
GROUP_LIMIT = 20_000  # agglomerative clustering needs O(n^2) memory


# ---------------------------------------------------------------- building blocks

def kdist_from_neighbors(sims: np.ndarray) -> np.ndarray:
    """k-distance of each row: cosine distance to its k-th (last) neighbour.

    ``sims[n, k]``: similarities of each vector's k nearest OTHER vectors of its set, best first
    (leave-one-out: the vector itself removed).  Used for the exemplars' own k-distance that
    :func:`novelty_from_neighbors` needs; a row without neighbours (k = 0) gets 0.
    """
    sims = _sims(sims)
    if sims.shape[1] == 0:
        return np.zeros(len(sims), np.float32)
    return np.maximum(1.0 - sims[:, -1], 0.0).astype(np.float32)


def novelty_from_neighbors(sims: np.ndarray, neighbor_kdist: np.ndarray, *,
                           scale: float = NOVELTY_LOCAL_SCALE) -> np.ndarray:
    """Novelty of queries from their k nearest exemplars: a k-th neighbour distance corrected for
    how spread out the exemplars there are.

    ``sims[n, k]``: cosine similarities of each query's k nearest exemplars, best first.
    ``neighbor_kdist[n, k]``: the k-distance (:func:`kdist_from_neighbors`, same k, leave-one-out
    within the exemplars) of each of those exemplars, in the same order; a job computes the
    exemplars' k-distances once with a self-KNN pass over the exemplar index and looks them up.
    Score = d_k(query) - scale * mean(min(d_k(neighbour), d_k(query))): a neighbour more spread
    out than the query is far from it excuses no more than the query's own distance (an exemplar
    of a class with fewer than k members has a k-distance that reaches into other classes).
    """
    sims = _sims(sims)
    kdist = np.asarray(neighbor_kdist, np.float32)
    if kdist.shape != sims.shape:
        raise InputError(f"neighbor_kdist has shape {kdist.shape}, the similarities {sims.shape}")
    if sims.shape[1] == 0:
        raise InputError("novelty needs at least one exemplar neighbour per query")
    own = np.maximum(1.0 - sims[:, -1], 0.0)
    return (own - scale * np.minimum(kdist, own[:, None]).mean(axis=1)).astype(np.float32)


def anomaly_from_neighbors(ids: np.ndarray, sims: np.ndarray, *, contrast: float = ANOMALY_CONTRAST,
                           group: float = ANOMALY_GROUP, jump: float = ANOMALY_JUMP,
                           trust: tuple[float, float] = ANOMALY_TRUST) -> np.ndarray:
    """Anomaly of each vector of a set from the set's own neighbour graph: its k-th neighbour
    distance d_k, less the local density of its neighbourhood where that is a large group, plus
    the rise of its distances from the first neighbours to the k-th:

        score = d_k - t * (contrast * w * mean(d_k of its k neighbours) - jump * (d_k - mean distance))

    s = the size of the vector's group: its connected component in the mutual k-NN graph (i and j
    linked when each is among the other's k nearest); w = s / (s + max(k, group * n)).  A sparse
    but large class is excused its sparseness (a local-density contrast, as in LOF); a lone point
    or a small group of odd ones out is not; a small tight group (a few near copies, then a gap)
    is raised by the jump.  t in [0, 1] trusts both only as far as the set's groups are large
    next to k: 0 while the median vector's group holds at most trust[0] x k vectors (then the
    score is the plain d_k), 1 from trust[1] x k.  ``group=0``: w = 1 for every vector.  Chosen
    at k = 10 (the app's k) on synthetic worlds of 600 to 10,000 vectors (bench/mining_worlds.py,
    docs/benchmarks.md section 8): it did not lose to plain d_k on any, unlike LOF and the earlier
    contrast; at k = 5 it lost on two of them.

    ``ids[n, k]``: row numbers (0..n-1, in this same set) of each vector's k nearest OTHER
    vectors, best first; ``sims[n, k]``: their cosine similarities.  Needs the neighbour lists of
    every vector of the set (n x k numbers, 12 MB for 100,000 x 10), gathered chunk by chunk.
    Rows without neighbours (a set of one) score 0.  A small set is scored with fewer neighbours
    (:func:`small_set_k`).
    """
    sims = _sims(sims)
    ids = np.asarray(ids)
    if ids.shape != sims.shape:
        raise InputError(f"ids have shape {ids.shape}, the similarities {sims.shape}")
    n, k = sims.shape
    if k == 0:
        return np.zeros(n, np.float32)
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise InputError(f"neighbour ids must be row numbers 0..{n - 1} of the same set")
    k = small_set_k(n, k)
    ids, sims = ids[:, :k], sims[:, :k]
    dist = np.maximum(1.0 - sims.astype(np.float64), 0.0)
    kdist = dist[:, -1]
    size = group_sizes(ids)
    low, high = trust
    t = float(np.clip((np.median(size) / k - low) / max(high - low, 1e-9), 0.0, 1.0))
    weight = size / (size + max(k, group * n)) if group > 0 else np.ones(n)
    local = contrast * weight * kdist[ids].mean(axis=1) - jump * (kdist - dist.mean(axis=1))
    return (kdist - t * local).astype(np.float32)


def small_set_k(n: int, k: int) -> int:
    """The k a set of ``n`` vectors is scored with: at most a fifth of the set, so that in a small run
    (26 images of three kinds of 8) the k-th neighbour does not lie outside every class alike; from 50
    vectors on, k itself (the scores were chosen on sets of 600 to 10,000)."""
    return max(1, min(k, max(2, n // 5)))


def group_sizes(ids: np.ndarray) -> np.ndarray:
    """Size of each row's connected component in the mutual k-NN graph of ``ids[n, k]`` (row
    numbers of each row's neighbours): rows i and j are linked when each lists the other."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.asarray(ids, np.int64)
    n, k = ids.shape
    rows = np.repeat(np.arange(n), k)
    graph = coo_matrix((np.ones(n * k, np.int32), (rows, ids.ravel())), shape=(n, n)).tocsr()
    graph.data[:] = 1  # a neighbour listed twice (padded rows) is one link
    _, component = connected_components(graph.multiply(graph.T), directed=False)
    return np.bincount(component)[component]


def mislabel_from_neighbors(labels_of_neighbors, sims: np.ndarray, own_labels: Sequence[str]) -> np.ndarray:
    """Suspicion that each labeled vector carries the wrong label: the similarity-weighted share
    of its k nearest OTHER labeled vectors (leave-one-out) whose label differs from its own.

    ``labels_of_neighbors[n, k]``: labels of the neighbours, best first; ``sims[n, k]``: their
    cosine similarities (negative ones weigh almost nothing); ``own_labels[n]``.  In [0, 1]; 0 when every
    neighbour agrees or there are none.
    """
    sims = _sims(sims)
    neighbor_labels = np.asarray(labels_of_neighbors, dtype=object).reshape(sims.shape)
    own = np.asarray(list(own_labels), dtype=object)
    if len(own) != len(sims):
        raise InputError(f"{len(own)} own labels for {len(sims)} rows of neighbours")
    if sims.shape[1] == 0:
        return np.zeros(len(sims), np.float32)
    weights = np.maximum(sims, 1e-6)
    disagree = neighbor_labels != own[:, None]
    return ((weights * disagree).sum(axis=1) / weights.sum(axis=1)).astype(np.float32)


# ---------------------------------------------------------------- full-matrix scores

def novelty_scores(queries: np.ndarray, exemplars: np.ndarray, k: int = 5) -> np.ndarray:
    """How far each query lies from everything labeled (see :func:`novelty_from_neighbors`).

    k is capped at the number of exemplars; no exemplars at all is an :class:`InputError`.
    """
    exemplars = unit(exemplars, "exemplars")
    queries = unit(queries, "queries", dim=exemplars.shape[1] if exemplars.size else None)
    if len(exemplars) == 0:
        raise InputError("novelty needs at least one exemplar to compare the queries with")
    k = _k(k, len(exemplars))
    if len(queries) == 0:
        return np.zeros(0, np.float32)
    ids, sims = top_k(queries, exemplars, k)
    self_ids, self_sims = top_k(exemplars, exemplars, min(k, len(exemplars) - 1), exclude_self=True)
    kdist = kdist_from_neighbors(self_sims)
    return novelty_from_neighbors(sims, kdist[ids])


def anomaly_scores(vectors: np.ndarray, k: int = 10) -> np.ndarray:
    """How odd each vector is inside its own set (see :func:`anomaly_from_neighbors`).

    k is capped at n - 1; a set of one vector scores 0.
    """
    vectors = unit(vectors, "vectors")
    k = _k(k, max(len(vectors) - 1, 0))
    ids, sims = top_k(vectors, vectors, k, exclude_self=True)
    return anomaly_from_neighbors(ids, sims)


def mislabel_scores(vectors: np.ndarray, labels: Sequence[str], k: int = 10) -> np.ndarray:
    """How likely each labeled vector carries the wrong label, from its k nearest other labeled
    vectors (leave-one-out; see :func:`mislabel_from_neighbors`).  k is capped at n - 1."""
    vectors = unit(vectors, "vectors")
    labels = np.asarray([str(label) for label in labels], dtype=object)
    if len(labels) != len(vectors):
        raise InputError(f"{len(labels)} labels for {len(vectors)} vectors")
    k = _k(k, max(len(vectors) - 1, 0))
    ids, sims = top_k(vectors, vectors, k, exclude_self=True)
    return mislabel_from_neighbors(labels[ids], sims, labels)


# ---------------------------------------------------------------- grouping and map

def group(vectors: np.ndarray, threshold: float | None = None, n_groups: int | None = None) -> np.ndarray:
    """Group vectors by mutual similarity: average-linkage agglomerative clustering on cosine.

    Give exactly one of ``threshold`` (cosine similarity in [-1, 1]: groups are merged while
    their average similarity is at least this) or ``n_groups``.  Returns an int label per row,
    0 = the largest group, then by size.  At most GROUP_LIMIT vectors (memory is O(n^2)).
    """
    from sklearn.cluster import AgglomerativeClustering

    vectors = unit(vectors, "vectors")
    if (threshold is None) == (n_groups is None):
        raise InputError("group needs exactly one of threshold or n_groups")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InputError(f"threshold {threshold} is not a cosine similarity in [-1, 1]")
    if n_groups is not None and n_groups < 1:
        raise InputError(f"n_groups must be at least 1, got {n_groups}")
    if len(vectors) > GROUP_LIMIT:
        raise InputError(f"{len(vectors)} vectors to group; at most {GROUP_LIMIT}: score and keep the most novel first")
    if len(vectors) < 2:
        return np.zeros(len(vectors), np.int64)
    model = AgglomerativeClustering(
        n_clusters=min(n_groups, len(vectors)) if n_groups else None,
        distance_threshold=None if n_groups else 1.0 - threshold,
        metric="cosine", linkage="average")
    raw = model.fit_predict(vectors)
    sizes = np.bincount(raw)
    order = np.lexsort((np.arange(len(sizes)), -sizes))  # largest first, ties by first label
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[raw].astype(np.int64)


def projections() -> list[str]:
    """The 2-D projection methods available here: "pca", plus "umap" when umap-learn is installed."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return ["pca"]
    return ["pca", "umap"]


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A 2-D map of the vectors (float32 [n, 2]): PCA by default, "umap" when installed."""
    vectors = unit(vectors, "vectors")
    if method not in ("pca", "umap"):
        raise InputError(f"unknown projection {method!r} (known: pca, umap)")
    if method not in projections():
        raise InputError("projection 'umap' needs the umap-learn package, which is not installed; use 'pca'")
    out = np.zeros((len(vectors), 2), np.float32)
    if len(vectors) < 3:
        return out
    if method == "umap":
        import umap

        neighbors = min(15, len(vectors) - 1)
        return umap.UMAP(n_components=2, n_neighbors=neighbors, metric="cosine",
                         random_state=seed).fit_transform(vectors).astype(np.float32)
    from sklearn.decomposition import PCA

    components = min(2, vectors.shape[1], len(vectors) - 1)
    out[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(vectors)
    return out


# ---------------------------------------------------------------- helpers

def unit(vectors: np.ndarray, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """``vectors`` as a float32 [n, d] array of unit rows; InputError for other shapes, a wrong
    dimension, non-finite values or all-zero rows (which have no direction)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, dim or 0)
    if array.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array [n, dim], got shape {array.shape}")
    if dim is not None and len(array) and array.shape[1] != dim:
        raise InputError(f"{name} have dimension {array.shape[1]}, the exemplars {dim}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: row {int(np.where(~np.isfinite(array).all(axis=1))[0][0])} is not finite")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if len(array) and (norms == 0).any():
        raise InputError(f"{name}: row {int(np.where(norms[:, 0] == 0)[0][0])} is all zeros")
    return array / norms if len(array) else array


def top_k(queries: np.ndarray, data: np.ndarray, k: int, exclude_self: bool = False):
    """Exact cosine top-k of unit rows: (ids [n, k] int64, sims [n, k] float32), best first, ties by
    lower id.  ``exclude_self`` (queries is data): each row's own position is left out."""
    n = len(queries)
    if k == 0 or n == 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    ids = np.empty((n, k), np.int64)
    sims = np.empty((n, k), np.float32)
    for start in range(0, n, CHUNK):
        block = queries[start:start + CHUNK] @ data.T
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, start + rows] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else np.tile(np.arange(k), (len(block), 1))
        part_sims = np.take_along_axis(block, part, 1)
        order = np.lexsort((part, -part_sims), axis=1)
        ids[start:start + len(block)] = np.take_along_axis(part, order, 1)
        sims[start:start + len(block)] = np.take_along_axis(part_sims, order, 1)
    return ids, sims


def _sims(sims: np.ndarray) -> np.ndarray:
    array = np.asarray(sims, dtype=np.float32)
    if array.ndim != 2:
        raise InputError(f"similarities must be a 2-D array [n, k], got shape {array.shape}")
    return array


def _k(k: int, available: int) -> int:
    if int(k) < 1:
        raise InputError(f"k must be at least 1, got {k}")
    return min(int(k), available)
