"""Decode + preprocess: which decoder, threads or processes, and how it scales with workers.

    python bench/decode.py [--n 1024] [--repeat 5] [--workers 1,2] [--image-dir DIR] [--baseline GIT_REV]

640x480 photo-like JPEGs (quality 90), the processor of google/vit-base-patch16-224 (224x224 bilinear).
  decoders   one thread, ms per image, and the cosine of its model input with the processor's (min):
             FastPath.load (simplejpeg DCT-scaled decode) and PIL draft mode (before), each with the
             torch resize (CPU devices) and PIL's (GPU devices); the transformers processor itself
  scaling    images/s of decode + preprocess alone with 1 and 2 workers: ProcessDecoder (processes,
             uint8 batches in shared memory) and a thread pool of FastPath.load (float32, today's path)
  pipeline   Embedder(tiny ViT).embed(files) with decode="threads" vs decode="processes"; with --baseline,
             also Embedder(...).embed(files) of this tree vs the vss_core of GIT_REV (git archive into a tmp
             dir), each in its own process, alternating, the same files and model (--baseline-model)
Targets on this 2-core VM: processes, 2 workers >= 1.8x 1 worker; the CPU pipeline no slower than today.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common as common
import numpy as np

SCALING_TARGET = 1.8


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def decoders(processor):
    from vss_core.embed.preprocess import make_preprocessor
    from vss_core.files import images

    torch_path, pil_path = make_preprocessor(processor, torch_resize=True), make_preprocessor(processor, torch_resize=False)
    reference = make_preprocessor(processor, fast=False)

    def pil_draft(path):  # the fast path before simplejpeg: PIL draft-mode decode
        return lambda p: path.normalize(path._resized(*vars(images.decode_full(p, None, path.draft_size)).values()))

    return {"simplejpeg DCT-scaled + torch resize (CPU path)": torch_path.load,
            "PIL draft + torch resize (CPU path before)": pil_draft(torch_path),
            "simplejpeg DCT-scaled + PIL resize (GPU path)": pil_path.load,
            "PIL draft + PIL resize (GPU path before)": pil_draft(pil_path),
            "transformers processor": reference.load}, reference.load


def bench_decoders(paths, processor, repeat):
    from vss_core.embed.decode_pool import one_torch_thread

    one_torch_thread()  # as in a decode worker
    methods, reference = decoders(processor)
    refs = [reference(p) for p in paths[:32]]
    rows = []
    times = {name: [] for name in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            for p in paths[:256]:
                fn(p)
            times[name].append((time.perf_counter() - start) / min(256, len(paths)) * 1e3)
    for name, fn in methods.items():
        agreement = min(cosine(fn(p), r) for p, r in zip(paths[:32], refs))
        rows.append({"decoder": name, "ms/image (median)": statistics.median(times[name]),
                     "min cosine vs processor": f"{agreement:.6f}"})
    return rows


def process_rate(decoder, paths, batch: int, prefetch: int = 2) -> None:
    from collections import deque

    pending = deque()
    for start in range(0, len(paths), batch):
        pending.append(decoder.submit(start, paths[start:start + batch]))
        if len(pending) > prefetch:
            ticket = pending.popleft()
            decoder.collect(ticket)
            decoder.release(ticket)
    while pending:
        ticket = pending.popleft()
        decoder.collect(ticket)
        decoder.release(ticket)


def bench_scaling(paths, processor, workers: list[int], repeat: int, batch: int):
    from vss_core.embed.decode_pool import ProcessDecoder, one_torch_thread
    from vss_core.embed.preprocess import make_preprocessor

    fast = make_preprocessor(processor, torch_resize=True)
    methods = {}
    for w in workers:
        decoder = ProcessDecoder(fast.spec, True, w, batch, 4)
        process_rate(decoder, paths[:batch * 2], batch)  # workers started and warm
        methods[f"processes, {w} worker{'s' * (w > 1)}"] = (lambda d: lambda: process_rate(d, paths, batch))(decoder)
        pool = ThreadPoolExecutor(w, initializer=one_torch_thread)
        list(pool.map(fast.load, paths[:8]))
        methods[f"threads, {w} worker{'s' * (w > 1)}"] = (lambda p: lambda: list(p.map(fast.load, paths)))(pool)
    times = {name: [] for name in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    rate = {name: len(paths) / statistics.median(t) for name, t in times.items()}
    rows = []
    for name in methods:
        kind = name.split(",")[0]
        one = rate[f"{kind}, {workers[0]} worker{'s' * (workers[0] > 1)}"]
        rows.append({"method": name, "img/s (median)": rate[name], "img/s (best)": len(paths) / min(times[name]),
                     f"x {workers[0]} worker": rate[name] / one})
    return rows, rate


def bench_pipeline(paths, model_dir, repeat: int, batch: int):
    from vss_core.embed.embedder import Embedder

    embedders = {mode: Embedder(model_dir, device="cpu", batch_size=batch, decode=mode) for mode in ("threads", "processes")}
    for e in embedders.values():
        e.embed(paths[:batch * 2])
    times = {mode: [] for mode in embedders}
    for _ in range(repeat):
        for mode, e in embedders.items():
            start = time.perf_counter()
            assert len(e.embed(paths).ok) == len(paths)
            times[mode].append(time.perf_counter() - start)
    rate = {mode: len(paths) / statistics.median(t) for mode, t in times.items()}
    return [{"pipeline (tiny ViT, embed files)": f"decode={mode}", "workers": embedders[mode].workers,
             "img/s (median)": rate[mode], "x threads": rate[mode] / rate["threads"]} for mode in embedders], rate


BASELINE_CHILD = r"""
import statistics, sys, time
from pathlib import Path
from vss_core.embed.embedder import Embedder
model, *paths = sys.argv[1:]
embedder = Embedder(model, device="cpu", batch_size=32)
embedder.embed(paths[:32])
times = []
for _ in range(3):
    start = time.perf_counter()
    assert len(embedder.embed(paths).ok) == len(paths)
    times.append(time.perf_counter() - start)
print("RESULT", len(paths) / statistics.median(times))
"""


def bench_baseline(paths, model_dir: Path, rev: str, tmp: Path, repeat: int):
    import os
    import subprocess
    import sys

    old = tmp / "baseline"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(common.REPO), "archive", rev, "vss_core"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    trees = {f"vss_core at {rev}": old, "this tree": common.REPO}
    rates = {name: [] for name in trees}
    for _ in range(max(1, repeat // 2)):
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, "-c", BASELINE_CHILD, str(model_dir), *map(str, paths)],
                                 env={**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}, cwd=tmp,
                                 capture_output=True, text=True, timeout=900, check=True)
            rates[name].append(float(out.stdout.split("RESULT")[-1]))
    base = statistics.median(rates[f"vss_core at {rev}"])
    return [{f"pipeline ({model_dir.name} ViT, embed files, default settings)": name, "img/s (median)": statistics.median(r),
             "x baseline": statistics.median(r) / base, "img/s (each run)": " ".join(f"{v:.4g}" for v in r)}
            for name, r in rates.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--image-dir", type=Path)
    parser.add_argument("--baseline", help="git revision whose vss_core the CPU pipeline is compared with")
    parser.add_argument("--baseline-model", default="tiny", choices=sorted(common.MODELS),
                        help="the model of the --baseline comparison (tiny: decode-bound; vit-base: model-bound)")
    parser.add_argument("--skip", default="", help="comma list of decoders,scaling,pipeline to skip")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    skip = set(args.skip.split(","))
    processor = common.vit_processor(224)
    result = {"n": args.n, "repeat": args.repeat, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="vss-decode-") as tmp_name:
        tmp = Path(tmp_name)
        folder = args.image_dir or tmp / "images"
        paths = sorted(folder.glob("img_*.jpg"))[:args.n] if folder.is_dir() else []
        if len(paths) < args.n:
            paths = common.write_jpegs(folder, args.n)
        if "decoders" not in skip:
            with ThreadPoolExecutor(1) as one:  # a decode thread of its own: one torch thread there only
                result["decoders"] = one.submit(bench_decoders, paths, processor, args.repeat).result()
            common.table(result["decoders"])
            print(flush=True)
        if "scaling" not in skip:
            result["scaling"], rate = bench_scaling(paths, processor, workers, args.repeat, args.batch)
            common.table(result["scaling"])
            two = rate[f"processes, {workers[-1]} workers"] / rate[f"processes, {workers[0]} worker"]
            result.update(metric=f"processes {workers[-1]} / {workers[0]} workers", value=two, target=SCALING_TARGET,
                          verdict=common.verdict(two, SCALING_TARGET))
            print(f"\ndecode+preprocess, processes: {workers[-1]} workers = {two:.2f}x {workers[0]} "
                  f"(target >= {SCALING_TARGET}x: {result['verdict']})\n", flush=True)
        model_dir = common.save_model("tiny", tmp / "tiny")
        if "pipeline" not in skip:
            result["pipeline"], rate = bench_pipeline(paths, model_dir, args.repeat, args.batch)
            common.table(result["pipeline"])
        if args.baseline:
            if args.baseline_model != "tiny":
                model_dir = common.save_model(args.baseline_model, tmp / args.baseline_model)
            result["baseline"] = bench_baseline(paths, model_dir, args.baseline, tmp, args.repeat)
            result["baseline_model"] = args.baseline_model
            print()
            common.table(result["baseline"])
    print(f"\nmachine: {common.machine()}")
    common.save_result("decode", result)


if __name__ == "__main__":
    main()
