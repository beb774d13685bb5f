"""vss_core.redis.sizing: the advice the sidebar's status gives from the index's algorithm and size."""

from __future__ import annotations

from vss_core.redis.sizing import flat_query_ms, index_advice, memory_gb


def test_small_indexes_need_no_advice():
    assert index_advice("FLAT", 20_000) is None
    assert index_advice("HNSW", 500_000) is None
    assert index_advice(None, 10) is None and index_advice("FLAT", 0) is None


def test_a_large_flat_index_is_told_to_use_hnsw():
    advice = index_advice("FLAT", 300_000)
    assert advice is not None and advice.startswith("FLAT at 300k exemplars") and "HNSW recommended" in advice
    assert f"~{flat_query_ms(300_000):.0f} ms" in advice
    assert index_advice("flat", 2_000_000, dim=384).startswith("FLAT at 2M")


def test_the_threshold_follows_the_dimension():
    # FLAT scans every float: a 384-d index reaches the same query time at twice the count
    assert flat_query_ms(600_000, 384) == flat_query_ms(300_000, 768)
    assert index_advice("FLAT", 300_000, dim=32) is None


def test_an_index_beyond_one_machine_is_pointed_at_scaling():
    count = 20_000_000
    advice = index_advice("HNSW", count)
    assert advice is not None and "docs/scaling.md" in advice and f"~{memory_gb('HNSW', count):.0f} GB" in advice
