"""One million exemplars: HNSW load rate, memory, recall and latency on the embedded Redis; FLAT for comparison.

    python bench/scale.py [--n 1000000] [--dim 768] [--clusters 1000] [--queries 1000] [--k 10]
                          [--flat-n 100000] [--sweep-n 50000] [--sweep 8:100,16:100,16:200,32:200]
                          [--ef 10,20,50,100] [--skip-main] [--skip-flat] [--skip-sweep]

Vectors are synthetic and clustered (bench/_common.clustered's model: gaussian clusters, decaying
spectrum), generated and written in chunks of 10,000 so the script itself holds no more than one
chunk; the exact top-k of --queries fresh queries is merged chunk by chunk with numpy.
Loading goes through ``VectorStore.add`` (the app's own write path: 7 hash fields per exemplar).
  main   --n vectors into HNSW (vss defaults M 16, EF_CONSTRUCTION 200, EF_RUNTIME 50): load rate,
         build time (load + indexing backlog), used_memory and index memory per million vectors,
         recall@k vs exact per EF_RUNTIME, p50/p99 of one query and of VectorStore.knn on 32 queries
  flat   the same at --flat-n with FLAT (and at --flat-n / 5, to show latency grows linearly)
  sweep  --sweep-n vectors per M:EF_CONSTRUCTION pair: load rate, memory, recall@k at EF_RUNTIME 10 and 50
Targets: HNSW recall@10 >= 0.95 at --n.  ~25 min and ~9 GB of Redis memory at 1M on this VM.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as common
import numpy as np
from insert import records
from knn import knn_query, wait_indexed

CHUNK = 10_000
RECALL_TARGET = 0.95


class Clusters:
    """Deterministic clustered vectors, generated chunk by chunk (row i is the same whatever the chunking)."""

    def __init__(self, dim: int, clusters: int, seed: int = 0, spread: float = 0.5):
        rng = np.random.default_rng(seed)
        self.centers = rng.normal(0, 1, (clusters, dim)).astype(np.float32)
        decay = np.arange(1, dim + 1) ** -0.5
        self.scale = (spread * np.sqrt(dim) * decay / np.linalg.norm(decay)).astype(np.float32)
        self.seed = seed

    def rows(self, start: int, count: int, stream: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, start])
        which = rng.integers(0, len(self.centers), count)
        return self.centers[which] + rng.standard_normal((count, len(self.scale)), dtype=np.float32) * self.scale

    def queries(self, count: int) -> np.ndarray:
        return self.rows(0, count, stream=1)


class ExactTopK:
    """Running exact cosine top-k of fixed queries over data seen chunk by chunk."""

    def __init__(self, queries: np.ndarray, k: int):
        self.q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        self.k = k
        self.ids = np.empty((len(queries), 0), np.int64)
        self.sims = np.empty((len(queries), 0), np.float32)

    def add(self, chunk: np.ndarray, start: int) -> None:
        sims = self.q @ (chunk / np.linalg.norm(chunk, axis=1, keepdims=True)).T
        sims = np.concatenate([self.sims, sims], 1)
        ids = np.concatenate([self.ids, np.broadcast_to(np.arange(start, start + len(chunk)), (len(self.q), len(chunk)))], 1)
        top = np.argpartition(-sims, self.k, axis=1)[:, :self.k]
        self.sims, self.ids = np.take_along_axis(sims, top, 1), np.take_along_axis(ids, top, 1)


def memory_mb(client, index: str) -> dict:
    used = client.info("memory")["used_memory"] / 2**20
    info = client.execute_command("FT.INFO", index)
    fields = {info[i].decode() if isinstance(info[i], bytes) else info[i]: info[i + 1] for i in range(0, len(info) - 1, 2)}
    vector = float(fields.get("vector_index_sz_mb", 0) or 0)
    return {"used_memory_mb": used, "vector_index_mb": vector}


def load(client, gen: Clusters, n: int, algorithm: str, hnsw: dict, truth: ExactTopK | None, label: str) -> dict:
    from vss_core.redis.exemplars import VectorStore
    from vss_core.redis.schema import project_layout

    client.flushall()
    base = {"used_memory_mb": client.info("memory")["used_memory"] / 2**20}
    store = VectorStore(client, project_layout(algorithm=algorithm, hnsw=hnsw).exemplars)
    store.ensure_index(gen.centers.shape[1])
    started, writing, last = time.perf_counter(), 0.0, time.perf_counter()
    for start in range(0, n, CHUNK):
        chunk = gen.rows(start, min(CHUNK, n - start))
        if truth is not None:
            truth.add(chunk, start)
        t = time.perf_counter()
        store.add(records(chunk, start=start))
        writing += time.perf_counter() - t
        if time.perf_counter() - last > 60:
            last = time.perf_counter()
            print(f"  {label}: {start + len(chunk):,} / {n:,} after {last - started:.0f} s "
                  f"({(start + len(chunk)) / writing:.0f} vectors/s writing)", flush=True)
    wait_indexed(client, store.index_name)
    build = time.perf_counter() - started
    mem = memory_mb(client, store.index_name)
    per_million = lambda mb: mb / n * 1e6 / 1024  # noqa: E731  GB per million vectors
    return {"store": store, "n": n, "algorithm": algorithm, "hnsw": hnsw if algorithm == "HNSW" else None,
            "load_s": writing, "build_s": build, "vectors_per_s": n / writing,
            "used_memory_gb": (mem["used_memory_mb"] - base["used_memory_mb"]) / 1024,
            "gb_per_million": per_million(mem["used_memory_mb"] - base["used_memory_mb"]),
            "vector_index_gb_per_million": per_million(mem["vector_index_mb"]),
            "kb_per_vector": (mem["used_memory_mb"] - base["used_memory_mb"]) * 1024 / n}


def recall(client, index: str, queries: np.ndarray, truth: np.ndarray, k: int, ef: int | None) -> float:
    found = []
    for start in range(0, len(queries), 256):
        pipe = client.pipeline(transaction=False)
        for v in queries[start:start + 256]:
            pipe.execute_command(*knn_query(index, v, k, ef))
        found += [[int(key.rsplit(b":", 1)[1]) for key in reply[1::2]] for reply in pipe.execute()]
    return float(np.mean([len(set(f) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def latency(client, store, queries: np.ndarray, k: int, samples: int) -> dict:
    """p50/p99 ms of one FT.SEARCH (the store's query) and of VectorStore.knn on a batch of 32."""
    one = []
    for v in queries[:samples]:
        command = store._knn_command(v, k)
        t = time.perf_counter()
        client.execute_command(*command)
        one.append((time.perf_counter() - t) * 1e3)
    batch = []
    for i in range(max(1, samples // 32)):
        chunk = queries[(i * 32) % len(queries):][:32]
        t = time.perf_counter()
        store.knn(chunk, k)
        batch.append((time.perf_counter() - t) * 1e3)
    pct = lambda xs, p: float(np.percentile(xs, p))  # noqa: E731
    return {"one_p50_ms": pct(one, 50), "one_p99_ms": pct(one, 99), "batch32_p50_ms": pct(batch, 50),
            "batch32_p99_ms": pct(batch, 99), "samples_one": len(one), "samples_batch32": len(batch)}


def run_main(client, gen, args, queries) -> dict:
    truth = ExactTopK(queries, args.k)
    hnsw = {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 50}  # vss_core.config.projects.HNSW_DEFAULTS
    print(f"HNSW: loading {args.n:,} x {args.dim} ...", flush=True)
    entry = load(client, gen, args.n, "HNSW", hnsw, truth, "HNSW")
    entry["recall"] = {ef: recall(client, "index", queries, truth.ids, args.k, ef) for ef in args.ef}
    entry["latency"] = latency(client, entry.pop("store"), queries, args.k, args.latency_samples)
    return entry


def run_flat(client, gen, args, queries) -> list[dict]:
    out = []
    for n in (args.flat_n // 5, args.flat_n):
        truth = ExactTopK(queries, args.k)
        print(f"FLAT: loading {n:,} ...", flush=True)
        entry = load(client, gen, n, "FLAT", {}, truth, "FLAT")
        entry["recall"] = {"exact": recall(client, "index", queries[:200], truth.ids[:200], args.k, None)}
        entry["latency"] = latency(client, entry.pop("store"), queries, args.k, min(args.latency_samples, 320))
        out.append(entry)
    return out


def run_sweep(client, gen, args, queries) -> list[dict]:
    out = []
    truth = ExactTopK(queries, args.k)
    for start in range(0, args.sweep_n, CHUNK):
        truth.add(gen.rows(start, min(CHUNK, args.sweep_n - start)), start)
    for pair in args.sweep:
        m, efc = (int(v) for v in pair.split(":"))
        print(f"sweep: M {m}, EF_CONSTRUCTION {efc}, {args.sweep_n:,} vectors ...", flush=True)
        entry = load(client, gen, args.sweep_n, "HNSW", {"M": m, "EF_CONSTRUCTION": efc, "EF_RUNTIME": 50}, None, "sweep")
        entry.pop("store")
        entry["recall"] = {ef: recall(client, "index", queries, truth.ids, args.k, ef) for ef in (10, 50)}
        out.append(entry)
    return out


def rows_of(entries: list[dict], k: int) -> list[dict]:
    rows = []
    for e in entries:
        params = f"M {e['hnsw']['M']} EFC {e['hnsw']['EF_CONSTRUCTION']}" if e["hnsw"] else ""
        row = {"index": f"{e['algorithm']} {params}".strip(), "vectors": e["n"], "vectors/s": e["vectors_per_s"],
               "build s": e["build_s"], "GB/million": e["gb_per_million"], "KB/vector": e["kb_per_vector"]}
        row.update({f"recall@{k} EF {ef}": r for ef, r in e["recall"].items()})
        row.update({name: v for name, v in e.get("latency", {}).items() if name.endswith("ms")})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="10,20,50,100", help="EF_RUNTIME values for the main recall")
    parser.add_argument("--latency-samples", type=int, default=1000, help="single queries timed (batches: /32)")
    parser.add_argument("--flat-n", type=int, default=100_000)
    parser.add_argument("--sweep-n", type=int, default=50_000)
    parser.add_argument("--sweep", default="8:100,16:100,16:200,32:200", help="M:EF_CONSTRUCTION pairs")
    parser.add_argument("--skip-main", action="store_true")
    parser.add_argument("--skip-flat", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    args.ef = [int(v) for v in args.ef.split(",") if v]
    args.sweep = [p for p in args.sweep.split(",") if p]
    gen = Clusters(args.dim, args.clusters)
    queries = gen.queries(args.queries)
    result = {"n": args.n, "dim": args.dim, "clusters": args.clusters, "queries": args.queries, "k": args.k,
              "machine_at_start": common.machine()}
    started = time.perf_counter()
    with common.embedded_redis() as client:
        server = client.info("server")
        result["redis"] = {"version": server.get("redis_version"),
                           "modules": [m.get("name") for m in client.info("modules").get("modules", [])] or
                           str(client.execute_command("MODULE", "LIST"))}
        if not args.skip_sweep:
            result["sweep"] = run_sweep(client, gen, args, queries)
        if not args.skip_flat:
            result["flat"] = run_flat(client, gen, args, queries)
        if not args.skip_main:
            result["main"] = run_main(client, gen, args, queries)
        client.flushall()
    result["total_s"] = time.perf_counter() - started
    entries = [*result.get("flat", []), *result.get("sweep", []), *([result["main"]] if "main" in result else [])]
    print(f"\n{args.dim}-d clustered vectors ({args.clusters} clusters), {args.queries} queries, top {args.k}, "
          f"embedded Redis {result['redis']['version']}")
    print(f"machine: {common.machine()}\n")
    rows = rows_of(entries, args.k)
    common.table(rows, list(dict.fromkeys(c for row in rows for c in row)))
    if "main" in result:
        m = result["main"]
        best = m["recall"].get(50, max(m["recall"].values()))
        m.update(target=RECALL_TARGET, verdict=common.verdict(best, RECALL_TARGET))
        print(f"\nHNSW at {args.n:,}: {m['vectors_per_s']:.0f} vectors/s, built in {m['build_s'] / 60:.1f} min, "
              f"{m['gb_per_million']:.2f} GB per million, recall@{args.k} {best:.3f} at EF_RUNTIME 50 "
              f"(target >= {RECALL_TARGET}: {m['verdict']})")
    print(f"total {result['total_s'] / 60:.1f} min")
    for e in entries:
        e["recall"] = {str(k): v for k, v in e["recall"].items()}
    common.save_result("scale", result)


if __name__ == "__main__":
    main()
