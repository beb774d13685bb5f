"""Full passes past a million exemplars: the scan every full pass uses (SearchIndex.scan) against the
LIMIT-offset paging it replaced, which stops at the search module's MAXSEARCHRESULTS (1,000,000).

    python bench/scan.py [--n 1050000] [--dim 32] [--batch 1000] [--labels 50] [--skip-old]

--n exemplars are written through ``VectorStore.add`` (the app's write path) into a FLAT index of the
embedded Redis (the algorithm does not matter to a scan; FLAT loads fastest).  Then, each timed:
  keys      ``scan("*")``: every key (SCAN MATCH on the prefix), no fields
  vectors   ``mining_jobs.exemplar_batches``: keys, labels and vectors, as novelty, mislabel and the map read them
  filtered  ``scan("@label:{...}")`` naming every label: the FT.AGGREGATE cursor path, checked against the count
  old       the LIMIT-offset paging of exemplar_batches before the scan (RETURN vector, label, tag)
Each reports rows, distinct keys, seconds, rows/s and the peak RSS of this process during it;
a pass is "exact" when it saw every key once.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import _common as common
import numpy as np
from insert import records

CHUNK = 10_000


def load(client, n: int, dim: int, labels: int):
    from vss_core.redis.exemplars import VectorStore

    client.flushall()
    store = VectorStore(client)  # the default layout: FLAT
    store.ensure_index(dim)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        store.add(records(rng.standard_normal((min(CHUNK, n - start), dim), dtype=np.float32), labels, start))
    seconds = time.perf_counter() - started
    while store.info().count < n:  # FLAT indexes as it is written; this only guards the count
        time.sleep(0.5)
    return store, seconds


def measure(name: str, n: int, batches) -> dict:
    """Drain ``batches`` (lists of keys), timing it and counting rows and distinct keys."""
    common.reset_peak()
    base = common.rss_mb()
    seen: set[str] = set()
    rows, error, started = 0, "", time.perf_counter()
    try:
        for keys in batches:
            rows += len(keys)
            seen.update(keys)
    except Exception as exc:  # noqa: BLE001  the old paging's failure is the point
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    entry = {"pass": name, "rows": rows, "distinct": len(seen), "exact": rows == len(seen) == n,
             "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0,
             "peak_rss_mb_over_start": common.peak_mb() - base, "error": error}
    print(f"  {name}: {rows:,} rows, {len(seen):,} distinct, {seconds:.1f} s"
          + (f" -- {error[:160]}" if error else ""), flush=True)
    return entry


def old_batches(store, batch: int):
    """exemplar_batches before the scan: FT.SEARCH "*" ... LIMIT offset batch, no sort."""
    from vss_core.redis.index_layout import as_text
    from vss_core.redis.schema import TAG, VECTOR

    offset = 0
    while True:
        reply = store.search("*", "RETURN", 3, VECTOR, "label", TAG, "LIMIT", offset, batch)
        keys = [as_text(k) for k in reply[1::2]]
        yield keys
        if len(keys) < batch:
            return
        offset += batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_050_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--skip-old", action="store_true")
    args = parser.parse_args()
    from vss_core.mining.runs import exemplar_batches

    result = {"n": args.n, "dim": args.dim, "batch": args.batch, "labels": args.labels,
              "machine_at_start": common.machine()}
    with common.embedded_redis() as client:
        result["redis"] = client.info("server").get("redis_version")
        result["maxsearchresults"] = str(client.execute_command("FT.CONFIG", "GET", "MAXSEARCHRESULTS"))
        print(f"loading {args.n:,} x {args.dim} exemplars ...", flush=True)
        store, seconds = load(client, args.n, args.dim, args.labels)
        result["load"] = {"seconds": seconds, "vectors_per_s": args.n / seconds,
                          "redis_used_memory_mb": client.info("memory")["used_memory"] / 2**20}
        every_label = "@label:{" + " | ".join(f"label{i}" for i in range(args.labels)) + "}"
        passes = [
            ("keys: scan('*')", lambda: ([k for k, _ in rows] for rows in store.scan(batch=args.batch))),
            ("vectors: exemplar_batches", lambda: (keys for keys, _, _ in
                                                   exemplar_batches(SimpleNamespace(exemplars=store), args.batch))),
            ("filtered: scan(every label), FT cursor",
             lambda: ([k for k, _ in rows] for rows in store.scan(every_label, batch=args.batch))),
        ]
        if not args.skip_old:
            passes.append(("old: LIMIT offset paging", lambda: old_batches(store, args.batch)))
        result["passes"] = [measure(name, args.n, make()) for name, make in passes]
        client.flushall()
    print(f"\n{args.n:,} exemplars x {args.dim}-d, batches of {args.batch}, embedded Redis {result['redis']}, "
          f"load {result['load']['vectors_per_s']:.0f} vectors/s, Redis {result['load']['redis_used_memory_mb']:.0f} MB")
    print(f"machine: {common.machine()}\n")
    common.table([{"pass": e["pass"], "rows": e["rows"], "distinct": e["distinct"], "exact": e["exact"],
                   "s": e["seconds"], "rows/s": e["rows_per_s"], "peak RSS MB": e["peak_rss_mb_over_start"],
                   "error": e["error"][:70]} for e in result["passes"]])
    common.save_result("scan", result)


if __name__ == "__main__":
    main()
