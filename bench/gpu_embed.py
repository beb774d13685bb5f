"""GPU embedding throughput: Embedder (fp16; decode threads or processes) from JPEG files vs the forward pass alone.

    .venv/bin/python bench/gpu_embed.py [--n 2048] [--batches 32,64,128] [--workers 4,8,default]
                                        [--decode processes,threads] [--device auto] [--budget-s 240] [--out FILE]
    CPU smoke test:  .venv/bin/python bench/gpu_embed.py --n 16 --batches 8 --workers default

Self-contained: writes --n 640x480 photo-like JPEGs (quality 90) to a tmp dir, builds ViT-Base/16
(224 px, random weights, the processor of google/vit-base-patch16-224) and measures images/s of
  forward          the model on ready fp16 tensors already on the GPU (the ceiling)
  embed_pixels     Embedder.embed_pixels on a ready float32 host array (adds host->GPU copy + cast)
  embed(files)     Embedder(device, batch, workers, decode).embed(paths): read, decode, preprocess, copy, forward;
                   decode=processes hands uint8 batches through shared memory and normalises on the GPU
  decode only      ProcessDecoder alone (no model): the rate the worker processes can feed
for each batch size and --decode mode (default workers) and each worker count (largest batch), plus fast=False once.
Sized to finish in < 4 min on a 16-core H100/H200 box; configs left when --budget-s is spent are skipped.
The JSON goes to --out, else $OUT/gpu_embed.json when $OUT is set, else bench/results/gpu_embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from vss_core.embed.embedder import Embedder, _default_workers  # noqa: E402


def photo(seed: int, size=(704, 528)) -> Image.Image:
    """A photo-like image: color waves, gradients, noise, ellipses, slight blur."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    waves = np.stack([127 + 100 * np.sin(x / rng.uniform(20, 90) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(20, 90)),
                      127 + 100 * np.cos((x + y) / rng.uniform(30, 120)), x / w * 200 + y / h * 55], -1)
    image = Image.fromarray(np.clip(waves + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w - 50)), int(rng.integers(0, h - 50))
        draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image.filter(ImageFilter.GaussianBlur(1))


def write_jpegs(folder: Path, n: int, unique: int = 128) -> list[Path]:
    """``n`` distinct 640x480 JPEGs: random crops of ``unique`` base images, each with its own ellipse."""
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        bases = list(pool.map(photo, range(min(n, unique))))

        def one(i: int) -> Path:
            rng = np.random.default_rng(i)
            x, y = int(rng.integers(0, 65)), int(rng.integers(0, 49))
            image = bases[i % len(bases)].crop((x, y, x + 640, y + 480))
            x0, y0 = int(rng.integers(0, 580)), int(rng.integers(0, 420))
            ImageDraw.Draw(image).ellipse([x0, y0, x0 + 60, y0 + 40], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            image.save(folder / f"img_{i:05d}.jpg", quality=90)
            return folder / f"img_{i:05d}.jpg"
        return list(pool.map(one, range(n)))


def save_vit_base(folder: Path) -> Path:
    import transformers
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig()).save_pretrained(folder)  # ViTConfig() defaults = ViT-Base/16, 224 px
    cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    cls(do_resize=True, size={"height": 224, "width": 224}, resample=2, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(fn, images: int, device: str, repeat: int = 2) -> float:
    """Best images/s of ``repeat`` calls (after one warm-up call)."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return images / best


def decode_rate(model_dir: Path, paths: list[Path], batch: int, workers: int) -> float:
    """Images/s of ProcessDecoder alone (decode + resize into shared memory, no model)."""
    sys.path.insert(0, str(REPO / "bench"))
    from decode import process_rate

    from vss_core.embed.decode_pool import ProcessDecoder
    from vss_core.embed.embedder import Embedder

    spec = Embedder(model_dir, device="cpu", batch_size=batch).preprocessor.spec
    decoder = ProcessDecoder(spec, False, workers, batch, 4)
    try:
        return rate(lambda: process_rate(decoder, paths, batch), len(paths), "cpu")
    finally:
        decoder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="JPEG files (default 2048)")
    parser.add_argument("--batches", default="32,64,128", help="batch sizes (default 32,64,128)")
    parser.add_argument("--workers", default="4,8,default", help="decode workers to try at the largest batch")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default auto)")
    parser.add_argument("--decode", default="processes,threads", help="decode modes to compare (default both)")
    parser.add_argument("--budget-s", type=float, default=240, help="skip configs once this much time is spent")
    parser.add_argument("--out", type=Path, help="JSON result file")
    args = parser.parse_args()
    started = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",") if b]
    modes = [m for m in args.decode.split(",") if m]
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    default_workers = _default_workers(device)
    workers = sorted({default_workers if w == "default" else int(w) for w in args.workers.split(",") if w})
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    print(f"device {device} ({gpu}), torch {torch.__version__}, cuda {torch.version.cuda}, "
          f"{os.cpu_count()} CPUs, default decode workers {default_workers}", flush=True)

    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="vss-gpu-bench-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "img").mkdir()
        paths = write_jpegs(tmp_path / "img", args.n)
        model_dir = save_vit_base(tmp_path / "vit-base")
        print(f"{len(paths)} JPEGs + ViT-Base written in {time.perf_counter() - started:.0f} s", flush=True)

        def add(config: str, value: float, ceiling: float | None) -> None:
            rows.append({"config": config, "img_per_s": round(value, 1),
                         "x_forward": round(value / ceiling, 3) if ceiling else None})
            print(f"  {config:48s} {value:9.1f} img/s" + (f"   {value / ceiling:5.2f}x forward" if ceiling else ""), flush=True)

        def over_budget(config: str) -> bool:
            if time.perf_counter() - started > args.budget_s:
                notes.append(f"skipped (budget): {config}")
                print(f"  skipped (over --budget-s): {config}", flush=True)
                return True
            return False

        ceilings = {}
        for batch in batches:
            if over_budget(f"batch {batch}"):
                continue
            emb = Embedder(model_dir, device=device, batch_size=batch, workers=default_workers)
            assert emb.fast, "the ViT processor must take the fast path"
            host = np.stack([emb.preprocessor.load(paths[i % len(paths)]) for i in range(batch)])
            on_gpu = torch.from_numpy(host).to(device=device, dtype=emb._model.dtype)
            steps = max(1, len(paths) // batch)

            def forward():
                with torch.inference_mode():
                    for _ in range(steps):
                        emb._model(pixel_values=on_gpu).last_hidden_state[:, 0, :].float()
            ceilings[batch] = ceiling = rate(forward, steps * batch, device)
            add(f"batch {batch:3d}: forward ({emb.dtype} tensors on {device})", ceiling, None)
            add(f"batch {batch:3d}: embed_pixels (host float32 array)",
                rate(lambda: [emb.embed_pixels(host) for _ in range(steps)], steps * batch, device), ceiling)
            emb = on_gpu = None  # free the GPU memory before the next model
            for mode in modes:
                emb = Embedder(model_dir, device=device, batch_size=batch, workers=default_workers, decode=mode)
                add(f"batch {batch:3d}: embed(files), {default_workers} workers, decode={emb.decode}",
                    rate(lambda: emb.embed(paths), len(paths), device), ceiling)
                emb = None
        big = max(ceilings) if ceilings else batches[-1]
        for w in workers:
            if not over_budget(f"decode only, {w} workers"):
                add(f"batch {big:3d}: decode only (processes), {w} workers", decode_rate(model_dir, paths, big, w),
                    ceilings.get(big))
            for mode in modes:
                if w == default_workers or over_budget(f"batch {big}, {w} workers, {mode}"):
                    continue
                emb = Embedder(model_dir, device=device, batch_size=big, workers=w, decode=mode)
                add(f"batch {big:3d}: embed(files), {w} workers, decode={emb.decode}",
                    rate(lambda: emb.embed(paths), len(paths), device), ceilings.get(big))
                del emb
        if not over_budget("fast=False"):
            emb = Embedder(model_dir, device=device, batch_size=big, workers=default_workers, fast=False)
            add(f"batch {big:3d}: embed(files), fast=False (processor)",
                rate(lambda: emb.embed(paths), len(paths), device, repeat=1), ceilings.get(big))

    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    result = {"bench": "gpu_embed", "device": device, "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
              "cpus": os.cpu_count(), "default_workers": default_workers, "n": args.n, "rows": rows,
              "notes": notes, "total_s": total, "command": " ".join(sys.argv)}
    out = args.out or (Path(os.environ["OUT"]) / "gpu_embed.json" if os.environ.get("OUT")
                       else REPO / "bench" / "results" / "gpu_embed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
