"""Run every benchmark (``make bench``) and print the PASS/MISS summary.

    python bench/run_all.py [--quick] [--only insert,knn,embed_knn,whole_process,decode,gallery,gpu_embed,scale]

Each script runs in its own process with this interpreter and writes bench/results/<name>.json.
gpu_embed runs only where CUDA is available (on CPU it would take minutes for a smoke test:
run ``python bench/gpu_embed.py --n 8 --batches 8`` by hand).  --quick uses small sizes
(a smoke test: its numbers are not comparable with the targets).  Full run: ~20 min on 2 cores;
scale (1M vectors, ~30 min, ~8 GB) runs only when named in --only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "insert": ["--n", "2000", "--repeat", "1"],
    "knn": ["--n", "2000", "--repeat", "3", "--recall-sizes", "2000", "--recall-queries", "50"],
    "embed_knn": ["--n-tiny", "128", "--n-base", "8", "--batch", "8", "--exemplars", "500",
                  "--repeat-tiny", "1", "--repeat-base", "1"],
    "gpu_embed": ["--n", "64", "--batches", "32"],
    "gallery": ["--queries", "8", "--exemplars", "10", "--repeat", "2"],
    "whole_process": ["--n-tiny", "64", "--n-base", "8", "--repeat", "1", "--exemplars", "500"],
    "decode": ["--n", "128", "--repeat", "1"],
    "scale": ["--n", "20000", "--flat-n", "10000", "--sweep-n", "5000", "--queries", "200", "--latency-samples", "200"],
}
DEFAULT = "insert,knn,embed_knn,whole_process,decode,gallery,gpu_embed"


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def summary() -> list[str]:
    lines = []
    results = HERE / "results"

    def load(name: str) -> dict | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    if (r := load("insert")):
        lines.append(f"insert   VectorStore.add vs one HSET per vector: {r['speedup_best']:.2f}x best / "
                     f"{r['speedup_median']:.2f}x median (target >= {r['target']}x) {r['verdict']}")
    if (r := load("knn")):
        for algorithm, s in r["speed"].items():
            lines.append(f"knn      {algorithm}: knn vs sequential {s['knn_speedup_median']:.2f}x median "
                         f"(raw pipeline {s['raw_pipeline_speedup_median']:.2f}x) (target >= {s['target']}x) {s['verdict']}")
        for size, entry in r["recall"].items():
            best = entry["smallest_ef_for_0.95"]
            lines.append(f"knn      HNSW {size}: smallest EF_RUNTIME for recall >= 0.95: "
                         + (f"{best['EF_RUNTIME']} ({best['ms/query (sequential)']:.2f} ms/query)" if best else "none"))
    if (r := load("embed_knn")):
        env = f" [OMP_WAIT_POLICY={r['env_OMP_WAIT_POLICY']}]" if r.get("env_OMP_WAIT_POLICY") else ""
        for kind, s in r["models"].items():
            lines.append(f"embed    {kind}: {s['metric']} {s['value']:.2f}x (target >= {s['target']}x) {s['verdict']}{env}")
    if (r := load("whole_process")):
        for kind, s in r["models"].items():
            lines.append(f"whole    {kind}: cli / fastapi-vss (whole process) {s['cli_vs_fastapi']:.2f}x (target >= "
                         f"{s['target']}x) {s['verdict']}; app search path {s['app_vs_fastapi']:.2f}x")
    if (r := load("decode")) and "value" in r:
        lines.append(f"decode   {r['metric']}: {r['value']:.2f}x (target >= {r['target']}x) {r['verdict']}")
    if (r := load("scale")) and "main" in r:
        m = r["main"]
        lines.append(f"scale    HNSW {m['n']:,}: {m['vectors_per_s']:.0f} vectors/s, {m['gb_per_million']:.2f} GB/million, "
                     f"recall@10 {m['recall'].get('50', 0):.3f} (target >= {m['target']}) {m['verdict']}")
    if (r := load("gallery")):
        lines.append(f"gallery  {r['queries']} queries top-{r['top_n']}: render after search "
                     f"{r['worst_render_s']:.2f} s worst (target < 1 s) {'PASS' if r['worst_render_s'] < 1 else 'MISS'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--only", default=DEFAULT, help="comma list of benchmarks")
    args = parser.parse_args()
    failed = []
    for name in [n for n in args.only.split(",") if n]:
        if name == "gpu_embed" and not cuda_available():
            print(f"== {name}: skipped (no CUDA here)\n", flush=True)
            continue
        command = [sys.executable, str(HERE / f"{name}.py"), *(QUICK[name] if args.quick else [])]
        print(f"== {' '.join(command)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command)
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s\n", flush=True)
        if code:
            failed.append(name)
    print("Summary (latest results in bench/results/):")
    for line in summary():
        print("  " + line)
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
