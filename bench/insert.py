"""Bulk insert: VectorStore.add (pipelined) vs one HSET round trip per vector.

    python bench/insert.py [--n 20000] [--dim 768] [--algorithm FLAT] [--repeat 3]

Both write the same hash fields (vector, tag, label, source, added_by, added_at, model) into
a fresh index on an embedded Redis in a tmp dir (unix socket, AOF everysec as in the app).
Target: add >= 5x the one-round-trip-per-vector loop.  For reference, the same HSETs sent in one
socket write per 256 records (redis-py's pipeline makes ~1 write per HSET with 3 KB vectors).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as common
import numpy as np

from vss_core.timeutil import now_iso

TARGET = 5.0


def records(vectors: np.ndarray, labels: int = 50, start: int = 0) -> list:
    """Records of ``vectors``; ids (the row numbers) count from ``start``."""
    from vss_core.redis.exemplars import Record

    return [Record(f"label{i % labels}", f"{i:08d}", v, source=f"/data/img_{i:08d}.jpg",
                   added_by="bench", model="bench-model") for i, v in enumerate(vectors, start)]


def fresh_store(client, dim: int, algorithm: str):
    from vss_core.redis.exemplars import VectorStore
    from vss_core.redis.schema import project_layout

    client.flushall()
    store = VectorStore(client, project_layout(algorithm=algorithm, hnsw={"M": 16, "EF_CONSTRUCTION": 200,
                                                                           "EF_RUNTIME": 10}).exemplars)
    store.ensure_index(dim)
    return store


def one_round_trip_each(store, recs: list) -> None:
    """What a simple client does: one HSET (one round trip) per vector."""
    added_at = now_iso()
    for r in recs:
        store.client.hset(store.key_for(r.label, r.id), mapping={
            "vector": np.asarray(r.vector, dtype=np.float32).tobytes(), "tag": r.model, "label": r.label,
            "source": r.source, "added_by": r.added_by, "added_at": added_at, "model": r.model})


def packed_writes(store, recs: list, chunk: int = 256) -> None:
    """Reference, not what the store does: the same HSETs, each chunk of 256 sent in one socket write
    (redis-py's pipeline writes every 1-2 commands when values are 3 KB)."""
    added_at = now_iso()
    for start in range(0, len(recs), chunk):
        common.one_write(store.client, [(
            "HSET", store.key_for(r.label, r.id), "vector", np.asarray(r.vector, dtype=np.float32).tobytes(),
            "tag", r.model, "label", r.label, "source", r.source, "added_by", r.added_by,
            "added_at", added_at, "model", r.model) for r in recs[start:start + chunk]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="vectors to insert (default 20000)")
    parser.add_argument("--dim", type=int, default=768, help="vector dimension (default 768)")
    parser.add_argument("--algorithm", default="FLAT", choices=["FLAT", "HNSW"], help="index type (default FLAT)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method; best and median are reported")
    args = parser.parse_args()

    vectors, _ = common.clustered(args.n, args.dim)
    recs = records(vectors)
    methods = {"VectorStore.add (pipelined)": lambda store: store.add(recs),
               "one HSET round trip per vector": lambda store: one_round_trip_each(store, recs),
               "reference: 1 socket write per 256": lambda store: packed_writes(store, recs)}
    times: dict[str, list[float]] = {name: [] for name in methods}
    with common.embedded_redis() as client:
        for _ in range(args.repeat):  # interleaved, so load changes hit both methods alike
            for name, method in methods.items():
                store = fresh_store(client, args.dim, args.algorithm)
                start = time.perf_counter()
                method(store)
                times[name].append(time.perf_counter() - start)
                count = store.info().count
                assert count == args.n, f"{name}: index holds {count} of {args.n} documents"
        client.flushall()

    rows = []
    for name, runs in times.items():
        best, median = min(runs), statistics.median(runs)
        rows.append({"method": name, "best s": best, "median s": median, "vectors/s (best)": args.n / best,
                     "us/vector": best / args.n * 1e6})
    for row in rows:
        row["x one-by-one (median)"] = rows[1]["median s"] / row["median s"]
    ratio_best = min(times["one HSET round trip per vector"]) / min(times["VectorStore.add (pipelined)"])
    ratio_median = rows[1]["median s"] / rows[0]["median s"]
    print(f"\nInsert {args.n} x {args.dim} FLOAT32 vectors, {args.algorithm} index, embedded Redis (unix socket)")
    print(f"machine: {common.machine()}\n")
    common.table(rows)
    print(f"\nspeed-up of add: {ratio_best:.2f}x (best), {ratio_median:.2f}x (median); "
          f"target >= {TARGET}x: {common.verdict(ratio_best, TARGET)}")
    common.save_result("insert", {"n": args.n, "dim": args.dim, "algorithm": args.algorithm, "rows": rows,
                                  "times": times, "speedup_best": ratio_best, "speedup_median": ratio_median,
                                  "target": TARGET, "verdict": common.verdict(ratio_best, TARGET)})


if __name__ == "__main__":
    main()
