"""Mining through Redis at scale: score a 100,000-image pool against 20,000 exemplars (novelty), the pool
within itself (anomaly) and the exemplars (mislabel), chunk by chunk through the vector indexes.

    .venv/bin/python bench/mining_redis.py [--pool 100000] [--exemplars 20000] [--algorithm HNSW]

Vectors come from bench/mining.py's synthetic world (384-d).  The pool and exemplar documents are
written with the store's own batched writes; each score runs as vss_core.mining.runs runs it in the
app.  Reported: wall time per score, the process's peak RSS (the point: no n x n matrix), and Redis's
used memory.  A full-matrix n x n float32 similarity matrix of the pool would need pool^2 * 4 bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as common  # noqa: E402
import numpy as np  # noqa: E402
from mining import World  # noqa: E402


def fill(d, world: World, n_pool: int, n_ex: int) -> None:
    from vss_core.redis.exemplars import Record
    from vss_core.redis.schema import PREDICTED, TAG, VECTOR

    classes = world.draw_known(n_ex)
    vectors = world.embed(world.latent(classes))
    d.exemplars.add(Record(f"class{c}", f"e{i}", v) for i, (c, v) in enumerate(zip(classes, vectors)))
    for start in range(0, n_pool, 5000):
        n = min(5000, n_pool - start)
        vecs = world.embed(world.latent(world.draw_known(n)))
        d.pool.write([("HSET", d.pool.key_for(f"p{start + i}"), VECTOR, v.tobytes(), TAG, "", "status", PREDICTED,
                       "job", "bench", "name", f"p{start + i}") for i, v in enumerate(vecs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--exemplars", type=int, default=20_000)
    parser.add_argument("--algorithm", default="HNSW", choices=["FLAT", "HNSW"])
    args = parser.parse_args()
    from vss_core.labeling.decisions import Decisions
    from vss_core.mining import runs as mining_jobs
    from vss_core.redis.exemplars import VectorStore
    from vss_core.redis.pool import PoolStore
    from vss_core.redis.schema import project_layout

    with tempfile.TemporaryDirectory(prefix="vss-mine-") as tmp, common.embedded_redis(tmp) as client:
        layout = project_layout(algorithm=args.algorithm, hnsw={"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 50})
        store, pool = VectorStore(client, layout.exemplars), PoolStore(client, layout.pool)
        store.ensure_index(384, model="synthetic")
        pool.ensure_index(384, model="synthetic")
        d = Decisions(pool, store, layout)
        start = time.perf_counter()
        fill(d, World(0, 20, 5, 0.40), args.pool, args.exemplars)
        load_s = time.perf_counter() - start
        rows = []
        for kind, run in ((mining_jobs.NOVELTY, lambda: mining_jobs.score_novelty(d, 5)),
                          (mining_jobs.MISLABEL, lambda: mining_jobs.score_mislabel(d, 10)),
                          (mining_jobs.ANOMALY, lambda: mining_jobs.score_anomaly(d, "", 10))):
            start = time.perf_counter()
            n = run()
            took = time.perf_counter() - start
            rows.append({"score": kind, "scored": n, "s": took, "per 1k s": 1000 * took / n,
                         "peak RSS MB": common.peak_mb()})
        used = int(client.info("memory")["used_memory"]) / 2**20
    common.table(rows)
    matrix_gb = args.pool ** 2 * 4 / 2**30
    print(f"load {args.pool:,} pool + {args.exemplars:,} exemplars ({args.algorithm}): {load_s:.1f} s; "
          f"Redis used memory {used:,.0f} MB; a full pool x pool float32 matrix would be {matrix_gb:,.1f} GB")
    common.save_result("mining_redis", {"machine": common.machine(), "pool": args.pool, "exemplars": args.exemplars,
                                        "algorithm": args.algorithm, "load_s": load_s, "redis_mb": used,
                                        "rows": rows})


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
