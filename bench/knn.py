"""Batched KNN vs sequential FT.SEARCH (FLAT and HNSW), and HNSW recall vs EF_RUNTIME.

    python bench/knn.py [--n 20000] [--dim 768] [--queries 32] [--k 10] [--repeat 15]
                        [--recall-sizes 20000,100000] [--recall-queries 200] [--ef 10,20,50,100,200]

Part 1, speed (--n vectors, --queries queries, top --k, embedded Redis on a unix socket):
VectorStore.knn (one pipeline, parsed into Neighbors) vs --queries sequential FT.SEARCH calls with
the store's own query string; for reference the same commands in one raw pipeline (no parsing),
redisvl's batch_query and fastapi-vss's style (redis-py ft().search per query).
Targets: knn >= 1.2x sequential on FLAT, >= 2x on HNSW.

Part 2, HNSW recall@k against the exact answer (what FLAT returns, computed with numpy and
checked against the FLAT index at --n) on clustered vectors, sweeping the query's EF_RUNTIME.
Building a 100k x 768 HNSW index takes ~2-3 min on 2 cores: --recall-sizes 20000 skips it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as common
import numpy as np
from insert import records

FLAT_TARGET, HNSW_TARGET = 1.2, 2.0
HNSW = {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 10}  # vss_core.config.projects.HNSW_DEFAULTS


def wait_indexed(client, index: str) -> None:
    while True:
        info = client.execute_command("FT.INFO", index)
        if int(info[info.index(b"indexing") + 1]) == 0:
            return
        time.sleep(0.05)


def server_usec_per_search(client) -> float:
    stats = client.info("commandstats")
    entry = stats.get("cmdstat_FT.SEARCH") or stats.get("cmdstat_ft.search") or {}
    return float(entry.get("usec_per_call", 0.0))


def speed_methods(client, store, queries: np.ndarray, k: int) -> dict:
    """name -> zero-argument function answering all ``queries``."""
    commands = lambda: [store._knn_command(v, k) for v in queries]  # noqa: E731  the store's exact query

    def raw_pipeline():
        pipe = client.pipeline(transaction=False)
        for command in commands():
            pipe.execute_command(*command)
        return pipe.execute()

    def sequential():
        return [client.execute_command(*command) for command in commands()]

    def lean():  # proposal for VectorStore.knn: one socket write, RETURN __dist + source, label/id from the key
        from vss_core.redis.exemplars import Neighbor

        replies = common.one_write(client, [(
            "FT.SEARCH", store.index_name, f"*=>[KNN {k} @vector $vec AS __dist]", "PARAMS", 2, "vec", v.tobytes(),
            "SORTBY", "__dist", "ASC", "RETURN", 2, "__dist", "source", "LIMIT", 0, k,
            "TIMEOUT", store.timeout_ms, "DIALECT", 2) for v in queries])
        cut, results = len(store.prefix), []
        for reply in replies:
            hits = []
            for raw_key, flat in zip(reply[1::2], reply[2::2]):
                key, fields = raw_key.decode(), dict(zip(flat[::2], flat[1::2]))
                label, _, id = key[cut:].rpartition(":")
                hits.append(Neighbor(key, label, id, 1.0 - float(fields[b"__dist"]), fields.get(b"source", b"").decode()))
            results.append(hits)
        return results

    methods = {"VectorStore.knn (1 pipeline)": lambda: store.knn(queries, k),
               "raw pipeline, unparsed (ref)": raw_pipeline,
               f"{len(queries)} sequential FT.SEARCH": sequential,
               "proposal: 1 write, lean RETURN+parse": lean}
    try:
        from redisvl.index import SearchIndex
        from redisvl.query import VectorQuery

        index = SearchIndex.from_existing(store.index_name, redis_client=client)
        fields = ["label", "tag", "source"]
        methods["redisvl batch_query"] = lambda: index.batch_query(
            [VectorQuery(v.tobytes(), "vector", fields, num_results=k) for v in queries], batch_size=len(queries))
    except Exception as exc:  # noqa: BLE001  for the record only
        print(f"redisvl unavailable for {store.index_name}: {type(exc).__name__}: {exc}")
    from redis.commands.search.query import Query

    def fastapi_vss():
        query = Query(f"*=>[KNN {k} @vector $vec as score]").sort_by("score").return_fields("id", "score")
        query = query.paging(0, k).dialect(2)
        return [client.ft(store.index_name).search(query, {"vec": v.tobytes()}).docs for v in queries]
    methods["fastapi-vss ft().search per query"] = fastapi_vss
    return methods


def speed(client, stores: dict, queries: np.ndarray, k: int, repeat: int) -> tuple[list, dict]:
    rows, summary = [], {}
    for algorithm, store in stores.items():
        methods = speed_methods(client, store, queries, k)
        times = {name: [] for name in methods}
        server = {name: [] for name in methods}  # server-side us per FT.SEARCH (INFO commandstats)
        for fn in methods.values():
            fn()  # warm-up
        assert methods[list(methods)[3]]() == store.knn(queries, k), "the proposal must give the same neighbours"
        for _ in range(repeat):  # interleaved: load changes hit every method alike
            for name, fn in methods.items():
                client.config_resetstat()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                server[name].append(server_usec_per_search(client))
        names = list(methods)
        knn, raw, seq = (statistics.median(times[n]) for n in names[:3])
        replies = methods[names[1]]()
        parse = common.timed(lambda: [store._hits(reply) for reply in replies], 20)[0]  # the store's parser
        for name in names:
            rows.append({"index": algorithm, "method": name, "best ms": min(times[name]) * 1e3,
                         "median ms": statistics.median(times[name]) * 1e3,
                         "server us/query": statistics.median(server[name]),
                         "seq/this (median)": seq / statistics.median(times[name])})
        per_query = lambda seconds: seconds / len(queries) * 1e6  # noqa: E731
        summary[algorithm] = {
            "knn_speedup_best": min(times[names[2]]) / min(times[names[0]]), "knn_speedup_median": seq / knn,
            "raw_pipeline_speedup_median": seq / raw,
            "proposal_speedup_median": seq / statistics.median(times[names[3]]),
            "server_us_per_query_pipelined": statistics.median(server[names[1]]),
            "server_us_per_query_sequential": statistics.median(server[names[2]]),
            "store_parse_us_per_query": per_query(parse), "knn_minus_raw_us_per_query": per_query(knn - raw),
            "round_trip_us_per_query": per_query(seq - raw), "times_s": times}
    return rows, summary


def ids_of(reply) -> list[int]:
    return [int(key.rsplit(b":", 1)[1]) for key in reply[1::2]]


def knn_query(index: str, vector: np.ndarray, k: int, ef: int | None) -> tuple:
    ef_clause, params = ("EF_RUNTIME $ef ", ["ef", ef]) if ef else ("", [])
    return ("FT.SEARCH", index, f"*=>[KNN {k} @vector $vec {ef_clause}AS __dist]", "PARAMS", 2 + len(params),
            "vec", vector.tobytes(), *params, "SORTBY", "__dist", "ASC", "RETURN", 1, "__dist",
            "LIMIT", 0, k, "DIALECT", 2)


def recall_of(client, index: str, queries, truth, k: int, ef: int | None) -> float:
    pipe = client.pipeline(transaction=False)
    for v in queries:
        pipe.execute_command(*knn_query(index, v, k, ef))
    found = [ids_of(reply) for reply in pipe.execute()]
    return float(np.mean([len(set(f) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def sweep(client, index: str, queries, truth, k: int, efs: list[int], latency_queries: int) -> list[dict]:
    rows = []
    for ef in efs:
        recall = recall_of(client, index, queries, truth, k, ef)
        sample = queries[:latency_queries]
        one_by_one = common.timed(lambda: [client.execute_command(*knn_query(index, v, k, ef)) for v in sample], 3)[0]

        def pipelined():
            pipe = client.pipeline(transaction=False)
            for v in sample:
                pipe.execute_command(*knn_query(index, v, k, ef))
            pipe.execute()
        rows.append({"EF_RUNTIME": ef, f"recall@{k}": recall, "ms/query (sequential)": one_by_one / len(sample) * 1e3,
                     f"ms/{len(sample)} pipelined": common.timed(pipelined, 3)[0] * 1e3})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="indexed vectors for the speed test (default 20000)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=32, help="queries per batch (default 32)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per method (default 15)")
    parser.add_argument("--recall-sizes", default="20000,100000", help="index sizes for the recall sweep ('' skips)")
    parser.add_argument("--recall-queries", type=int, default=200, help="queries for recall (default 200)")
    parser.add_argument("--ef", default="10,20,50,100,200", help="EF_RUNTIME values to sweep")
    parser.add_argument("--clusters", type=int, default=100)
    args = parser.parse_args()
    efs = [int(v) for v in args.ef.split(",") if v]
    sizes = [int(v) for v in args.recall_sizes.split(",") if v]
    from vss_core.redis.exemplars import VectorStore
    from vss_core.redis.schema import project_layout

    started = time.perf_counter()
    result = {"n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k, "hnsw": HNSW, "recall": {}}
    with common.embedded_redis() as client:
        data, draw = common.clustered(max([args.n, *sizes]), args.dim, args.clusters)
        hnsw = VectorStore(client, project_layout("hnsw", "v:", "HNSW", HNSW).exemplars)
        hnsw.ensure_index(args.dim)
        start = time.perf_counter()
        hnsw.add(records(data[:args.n]))
        result["hnsw_insert_s"] = {args.n: time.perf_counter() - start}
        flat = VectorStore(client, project_layout("flat", "v:", "FLAT").exemplars)  # a second index over the same hashes
        start = time.perf_counter()
        flat.ensure_index(args.dim)
        wait_indexed(client, "flat")
        result["flat_index_s"] = time.perf_counter() - start

        queries = draw(args.queries, seed=7)
        rows, summary = speed(client, {"FLAT": flat, "HNSW": hnsw}, queries, args.k, args.repeat)
        result.update(speed_rows=rows, speed=summary)
        print(f"\nKNN, {args.queries} queries, top {args.k}, {args.n} x {args.dim} (EF_RUNTIME {HNSW['EF_RUNTIME']})")
        print(f"machine: {common.machine()}\n")
        common.table(rows)
        print()
        for algorithm, target in (("FLAT", FLAT_TARGET), ("HNSW", HNSW_TARGET)):
            s = summary[algorithm]
            s.update(target=target, verdict=common.verdict(s["knn_speedup_median"], target))
            print(f"{algorithm}: knn {s['knn_speedup_median']:.2f}x sequential (median; best {s['knn_speedup_best']:.2f}x), "
                  f"raw pipeline {s['raw_pipeline_speedup_median']:.2f}x, proposal {s['proposal_speedup_median']:.2f}x; "
                  f"target >= {target}x: {s['verdict']}.\n"
                  f"  per query: server {s['server_us_per_query_pipelined']:.0f} us pipelined / "
                  f"{s['server_us_per_query_sequential']:.0f} us sequential, store parsing "
                  f"{s['store_parse_us_per_query']:.0f} us, extra per sequential round trip "
                  f"{s['round_trip_us_per_query']:.0f} us")

        for size in sizes:
            if size != args.n:
                client.flushall()
                hnsw = VectorStore(client, project_layout("hnsw", "v:", "HNSW", HNSW).exemplars)
                hnsw.ensure_index(args.dim)
                start = time.perf_counter()
                for chunk in range(0, size, 10_000):
                    hnsw.add(records(data[chunk:min(size, chunk + 10_000)], start=chunk))
                result["hnsw_insert_s"][size] = time.perf_counter() - start
            rq = draw(args.recall_queries, seed=11)
            truth = common.exact_knn(data[:size], rq, args.k)
            entry = {"insert_s": result["hnsw_insert_s"][size]}
            if size == args.n:
                entry["flat_recall_vs_numpy"] = recall_of(client, "flat", rq, truth, args.k, None)
            entry["sweep"] = sweep(client, "hnsw", rq, truth, args.k, efs, args.queries)
            good = [r for r in entry["sweep"] if r[f"recall@{args.k}"] >= 0.95]
            entry["smallest_ef_for_0.95"] = good[0] if good else None
            result["recall"][size] = entry
            print(f"\nHNSW recall@{args.k} vs exact, {size} x {args.dim}, {args.clusters} clusters, "
                  f"{args.recall_queries} queries (HNSW insert {entry['insert_s']:.0f} s"
                  + (f", FLAT recall vs numpy {entry['flat_recall_vs_numpy']:.3f})" if size == args.n else ")"))
            common.table(entry["sweep"])
            best = entry["smallest_ef_for_0.95"]
            print("smallest EF_RUNTIME with recall >= 0.95: " + (
                f"{best['EF_RUNTIME']} ({best['ms/query (sequential)']:.2f} ms/query)" if best else "none swept"))
        client.flushall()
    result["total_s"] = time.perf_counter() - started
    print(f"\ntotal {result['total_s']:.0f} s")
    common.save_result("knn", result)


if __name__ == "__main__":
    main()
