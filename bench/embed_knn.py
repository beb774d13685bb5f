"""Embed + KNN throughput from JPEG files to top-k results, on CPU.

    python bench/embed_knn.py [--models tiny,vit-base] [--n-tiny 4096] [--n-base 64] [--batch 32]
                              [--k 5] [--exemplars 5000] [--repeat-tiny 2] [--repeat-base 2] [--image-dir DIR]
                              [--workers 2] [--torch-threads N] [--profile N]

640x480 photo-like JPEGs (quality 90) are written to a tmp dir (or --image-dir, reused).  For each
model (random weights, the processor of google/vit-base-patch16-224: 224x224 bilinear, mean/std 0.5):
  forward only       Embedder.embed_pixels on a ready (batch, 3, 224, 224) array, no decode, no KNN
  fast pipeline      Embedder(fast=True).iter_embed(paths) -> VectorStore.knn(batch vectors, k)
  processor pipeline the same with Embedder(fast=False) (the transformers processor)
  naive loop         fastapi-vss's loop: PIL open, processor on the batch, forward, one FT.SEARCH per image
KNN runs against --exemplars vectors in a FLAT index of an embedded Redis in a tmp dir.
Peak RSS growth (VmHWM, reset before each run) shows that memory stays bounded.
Targets: ViT-Base fast pipeline >= 0.9x forward only; tiny fast pipeline >= 3x processor pipeline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import _common as common
import numpy as np

BASE_TARGET, TINY_TARGET = 0.9, 3.0


def fast_pipeline(embedder, store, paths, k, rss_track):
    found = 0
    for batch in embedder.iter_embed(paths):
        found += len(store.knn(batch.vectors, k))
        rss_track.append(common.rss_mb())
    assert found == len(paths), f"{found} of {len(paths)} images embedded"


def naive_loop(model_dir: Path, store, k: int, batch: int):
    """fastapi-vss's predict(): PIL open, processor on the batch, forward, one FT.SEARCH per image."""
    import torch
    from PIL import Image
    from redis.commands.search.query import Query
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    query = Query(f"*=>[KNN {k} @vector $vec as score]").sort_by("score").return_fields("id", "score").paging(0, k).dialect(2)

    def run(paths, k_, rss_track):
        found = 0
        for i in range(0, len(paths), batch):
            images = [Image.open(p).convert("RGB") for p in paths[i:i + batch]]
            inputs = processor(images=images, return_tensors="pt")
            with torch.no_grad():
                vectors = model(**inputs).last_hidden_state[:, 0, :].cpu().numpy()
            for v in vectors:
                found += bool(store.client.ft(store.index_name).search(query, {"vec": v.tobytes()}).docs)
            rss_track.append(common.rss_mb())
        assert found == len(paths)
    return run


def profile_preprocess(paths: list[Path], top: int = 8) -> None:
    """cProfile of the fast and the processor preprocessing, one thread, one image at a time."""
    import cProfile
    import pstats

    from vss_core.embed.preprocess import make_preprocessor

    for fast in (True, False):
        path = make_preprocessor(common.vit_processor(224), fast)
        path.load(paths[0])
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.runcall(lambda: [path.load(p) for p in paths])
        print(f"\n== {'fast' if fast else 'processor'} preprocessing: "
              f"{(time.perf_counter() - start) / len(paths) * 1e3:.2f} ms/image under cProfile, top {top} by own time")
        pstats.Stats(profile).sort_stats("tottime").print_stats(top)


def bench_model(kind: str, paths: list[Path], args, client, tmp: Path) -> tuple[list[dict], dict]:
    from vss_core.embed.embedder import Embedder
    from vss_core.redis.exemplars import Record, VectorStore
    from vss_core.redis.schema import project_layout

    model_dir = common.save_model(kind, tmp / kind)
    fast = Embedder(model_dir, device="cpu", batch_size=args.batch, fast=True)
    slow = Embedder(model_dir, device="cpu", batch_size=args.batch, fast=False)
    assert fast.fast and not slow.fast, "the ViT processor must take the fast path"
    store = VectorStore(client, project_layout(f"idx_{kind}", f"{kind}:", "FLAT").exemplars)
    store.ensure_index(fast.dim)
    vectors, _ = common.clustered(args.exemplars, fast.dim, clusters=50)
    store.add(Record(f"label{i % 50}", str(i), v) for i, v in enumerate(vectors))

    ready = np.stack([fast.preprocessor.load(p) for p in paths[:args.batch]])

    def forward_only(paths_, k, rss_track):
        for start in range(0, len(paths_), args.batch):
            fast.embed_pixels(ready[:min(args.batch, len(paths_) - start)])
        rss_track.append(common.rss_mb())

    methods = {"forward only (ready tensors)": forward_only,
               "fast pipeline (Embedder fast=True + knn)": lambda p, k, t: fast_pipeline(fast, store, p, k, t),
               "processor pipeline (Embedder fast=False + knn)": lambda p, k, t: fast_pipeline(slow, store, p, k, t),
               "naive fastapi-vss loop": naive_loop(model_dir, store, args.k, args.batch)}
    if kind == "tiny" and args.workers > 1:
        more = {f: Embedder(model_dir, device="cpu", batch_size=args.batch, fast=f, workers=args.workers)
                for f in (True, False)}
        methods[f"fast pipeline, {args.workers} workers"] = lambda p, k, t: fast_pipeline(more[True], store, p, k, t)
        methods[f"processor pipeline, {args.workers} workers"] = lambda p, k, t: fast_pipeline(more[False], store, p, k, t)
    for fn in methods.values():  # warm-up
        fn(paths[:min(8, args.batch)], args.k, [])

    repeat = args.repeat_tiny if kind == "tiny" else args.repeat_base
    times = {name: [] for name in methods}
    memory = {name: [] for name in methods}
    for _ in range(repeat):  # interleaved, so load changes hit every method alike
        for name, fn in methods.items():
            track: list[float] = []
            common.reset_peak()
            before = common.rss_mb()
            start = time.perf_counter()
            fn(paths, args.k, track)
            times[name].append(time.perf_counter() - start)
            quarter = track[:max(1, len(track) // 4)]
            memory[name].append((common.peak_mb() - before, max(quarter) - before, max(track) - before))

    n = len(paths)
    rate = {name: n / statistics.median(t) for name, t in times.items()}
    names = list(methods)
    rows = [{"model": kind, "method": name, "img/s (median)": rate[name], "img/s (best)": n / min(times[name]),
             "x forward": rate[name] / rate[names[0]], "x processor pipe": rate[name] / rate[names[2]],
             "peak RSS +MB": max(m[0] for m in memory[name]),
             "RSS +MB @25%/100%": f"{max(m[1] for m in memory[name]):.0f}/{max(m[2] for m in memory[name]):.0f}"}
            for name in names]
    summary = {"n": n, "dim": fast.dim, "workers_default": fast.workers, "repeat": repeat, "times_s": times,
               "rss_mb": memory, "images_per_s_median": rate}
    if kind == "tiny":
        value = rate[names[1]] / rate[names[2]]
        summary.update(metric="fast pipeline / processor pipeline", value=value, target=TINY_TARGET,
                       vs_naive=rate[names[1]] / rate[names[3]])
    else:
        value = rate[names[1]] / rate[names[0]]
        summary.update(metric="fast pipeline / forward only", value=value, target=BASE_TARGET)
    summary["verdict"] = common.verdict(value, summary["target"])
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,vit-base", help="comma list of tiny, vit-base")
    parser.add_argument("--n-tiny", type=int, default=4096, help="images for the tiny model (default 4096)")
    parser.add_argument("--n-base", type=int, default=64, help="images for ViT-Base (default 64)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--k", type=int, default=5, help="neighbours per image (default 5)")
    parser.add_argument("--exemplars", type=int, default=5000, help="vectors in the index (default 5000)")
    parser.add_argument("--repeat-tiny", type=int, default=2)
    parser.add_argument("--repeat-base", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="extra tiny rows with this many decode workers (1: none)")
    parser.add_argument("--image-dir", type=Path, help="where the JPEGs are (re)used; default a tmp dir")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's, = cores)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="only cProfile the fast and processor preprocessing of N images, then stop")
    args = parser.parse_args()
    if args.torch_threads:
        import torch
        torch.set_num_threads(args.torch_threads)
    kinds = [m for m in args.models.split(",") if m]
    counts = {"tiny": args.n_tiny, "vit-base": args.n_base}

    with tempfile.TemporaryDirectory(prefix="vss-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder = args.image_dir or tmp / "images"
        need = max(counts[m] for m in kinds)
        paths = sorted(folder.glob("img_*.jpg"))[:need] if folder.is_dir() else []
        start = time.perf_counter()
        if len(paths) < need:
            paths = common.write_jpegs(folder, need)
        print(f"{len(paths)} JPEGs 640x480 in {folder} ({time.perf_counter() - start:.0f} s, "
              f"{np.mean([p.stat().st_size for p in paths]) / 1024:.0f} KiB avg)", flush=True)
        if args.profile:
            return profile_preprocess(paths[:args.profile])
        rows, result = [], {"batch": args.batch, "k": args.k, "exemplars": args.exemplars, "models": {},
                            "env_OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
        with common.embedded_redis(tmp / "redis") as client:
            for kind in kinds:
                print(f"running {kind} on {counts[kind]} images ...", flush=True)
                model_rows, summary = bench_model(kind, paths[:counts[kind]], args, client, tmp)
                rows += model_rows
                result["models"][kind] = summary
    print(f"\nEmbed + KNN top-{args.k}, JPEG files -> results, batch {args.batch}, CPU")
    print(f"machine: {common.machine()}\n")
    common.table(rows)
    print()
    for kind, s in result["models"].items():
        extra = f" (vs naive loop {s['vs_naive']:.2f}x)" if "vs_naive" in s else ""
        print(f"{kind}: {s['metric']} = {s['value']:.2f}x{extra}; target >= {s['target']}x: {s['verdict']}")
    result["rows"] = rows
    common.save_result("embed_knn", result)


if __name__ == "__main__":
    main()
