"""When a project's index should change algorithm or machine, from bench/scale.py's figures.

The constants were measured on the embedded Redis (RediSearch 2.10, one core, 768-d FLOAT32
vectors) and are recorded in docs/benchmarks.md (section 6) and docs/scaling.md.  FLAT scans
every vector, so its query time grows linearly with the count and the dimension; HNSW's grows
with the log of the count but costs memory and a slow build.
"""

from __future__ import annotations

FLAT_MS_PER_MILLION = 150.0
"""One FLAT KNN query (top 10, in a batch of 32) per million 768-d vectors, in ms: 13-17 ms at 100k."""

GB_PER_MILLION = {"FLAT": 7.4, "HNSW": 7.7}
"""Redis memory (used_memory) per million 768-d exemplars with the store's hash fields."""

FLAT_LIMIT_MS = 30.0
"""Above this per-image KNN time a search of 32 images waits about a second for Redis (HNSW at 1M: 12 ms)."""

MEMORY_LIMIT_GB = 64.0
"""Above this the index outgrows a typical single Redis machine (docs/scaling.md)."""


def flat_query_ms(count: int, dim: int = 768) -> float:
    """Estimated server time of one FLAT KNN query over ``count`` vectors of ``dim`` dimensions."""
    return FLAT_MS_PER_MILLION * count / 1e6 * dim / 768


def memory_gb(algorithm: str, count: int, dim: int = 768) -> float:
    """Estimated Redis memory of ``count`` exemplars (vector storage scales with ``dim``)."""
    per_million = GB_PER_MILLION.get(algorithm.upper(), GB_PER_MILLION["HNSW"])
    return per_million * count / 1e6 * (0.1 + 0.9 * dim / 768)


def index_advice(algorithm: str | None, count: int, dim: int = 768) -> str | None:
    """One sentence for a project's status when its index should change, else ``None``.

    e.g. "FLAT at 300k exemplars: searches take ~45 ms per image; HNSW recommended".
    """
    if not algorithm or count <= 0:
        return None
    algorithm = algorithm.upper()
    gb = memory_gb(algorithm, count, dim)
    if gb > MEMORY_LIMIT_GB:
        return (f"{algorithm} at {_amount(count)} exemplars needs ~{gb:.0f} GB of Redis memory: "
                "plan a larger or sharded Redis (docs/scaling.md)")
    ms = flat_query_ms(count, dim)
    if algorithm == "FLAT" and ms > FLAT_LIMIT_MS:
        return f"FLAT at {_amount(count)} exemplars: searches take ~{ms:.0f} ms per image; HNSW recommended"
    return None


def _amount(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M".replace(".0M", "M")
    return f"{count / 1000:.0f}k" if count >= 10_000 else f"{count:,}"
