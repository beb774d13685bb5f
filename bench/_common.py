"""Shared helpers of the bench scripts: machine facts, test images, models, an embedded Redis,
timing, memory, tables and result files.  Not a benchmark itself."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from tests.fixtures_models import natural_image  # noqa: E402,F401  (the tests' photo-like images)
from vss_core.timeutil import now_iso  # noqa: E402

# ---------------------------------------------------------------- machine, results, tables

def machine() -> dict:
    """What the numbers were measured on, including the load at the time."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "python": platform.python_version(),
            "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    with contextlib.suppress(OSError, IndexError, ValueError):  # share of time runnable tasks waited for a CPU
        some = Path("/proc/pressure/cpu").read_text().split()[1:4]
        info["cpu_pressure_some_avg10_60_300"] = [float(v.split("=")[1]) for v in some]
    with contextlib.suppress(ImportError):
        import torch
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return info


def save_result(name: str, payload: dict) -> Path:
    """Write bench/results/<name>.json (latest run) and append it to bench/results/history.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"bench": name, "when": now_iso(),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float))
    with open(RESULTS / "history.jsonl", "a") as history:
        history.write(json.dumps(record, default=float) + "\n")
    print(f"\nresults: {path.relative_to(REPO)}")
    return path


def table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print ``rows`` as an aligned text table (floats with 3 significant decimals)."""
    columns = columns or list(rows[0])
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace("x", "").replace("-", "", 1).replace("e", "").isdigit()


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


# ---------------------------------------------------------------- timing and memory

def timed(fn, repeat: int = 3) -> tuple[float, float, list[float]]:
    """(best, median, all) wall seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), times


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def peak_mb() -> float:
    """Peak RSS (VmHWM) since the start or the last :func:`reset_peak`."""
    return _status_kb("VmHWM") / 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- images

def write_jpegs(folder: Path, n: int, size=(640, 480), quality: int = 90, unique: int = 256) -> list[Path]:
    """``n`` distinct JPEG files: random ``size`` crops of ``unique`` larger photo-like images,
    each with one more ellipse (every file has its own content and bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = min(unique, n)
    big = (size[0] + 64, size[1] + 48)

    def make(i: int) -> Path:
        rng = np.random.default_rng(10_000 + i)
        base = natural_image(i % bases, big) if i < bases else cache[i % bases]
        if i < bases:
            cache[i] = base
        x, y = int(rng.integers(0, 65)), int(rng.integers(0, 49))
        image = base.crop((x, y, x + size[0], y + size[1]))
        x0, y0 = int(rng.integers(0, size[0] - 60)), int(rng.integers(0, size[1] - 60))
        ImageDraw.Draw(image).ellipse([x0, y0, x0 + 60, y0 + 40], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        path = folder / f"img_{i:05d}.jpg"
        image.save(path, quality=quality)
        return path

    cache: dict[int, Image.Image] = {}
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        paths = list(pool.map(make, range(bases)))
        paths += list(pool.map(make, range(bases, n)))
    return paths


# ---------------------------------------------------------------- models

def vit_processor(size: int = 224):
    """The image processor of google/vit-base-patch16-224 (resize size x size bilinear, /255, mean/std 0.5)."""
    import transformers

    cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    return cls(do_resize=True, size={"height": size, "width": size}, resample=2, do_rescale=True,
               rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)


MODELS = {
    # tiny: 2 layers, hidden 32, patch 16, 224 px: negligible compute, so decode/preprocess dominate
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 image_size=224, patch_size=16),
    # ViTConfig() defaults are ViT-Base/16 at 224 px: the compute of google/vit-base-patch16-224
    "vit-base": {},
}


def save_model(kind: str, folder: Path) -> Path:
    """A save_pretrained folder with a random-weight ViT of ``kind`` (see MODELS) and the ViT processor."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(**MODELS[kind])).save_pretrained(folder)
    vit_processor(224).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- redis

@contextlib.contextmanager
def embedded_redis(data_dir: str | Path | None = None):
    """A client of a fresh embedded Redis (RediSearch loaded) in a tmp data dir; stopped afterwards."""
    from vss_core.redis.server import embedded_server

    with contextlib.ExitStack() as stack:
        folder = Path(data_dir) if data_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vssb-")))
        server = embedded_server(folder).start()
        client = server.client()
        try:
            yield client
        finally:
            client.close()
            server.stop()


def one_write(client, commands: list[tuple]) -> list:
    """Send ``commands`` in ONE socket write (redis-py's pipeline makes one write per ~6 KB, i.e.
    per 1-2 commands with 3 KB vectors) and read their replies; the proposal for VectorStore."""
    connection = client.connection_pool.get_connection()
    try:
        connection.send_packed_command([b"".join(connection.pack_commands(commands))])
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()  # unread replies must not reach the next user of this connection
        raise
    finally:
        client.connection_pool.release(connection)


def clustered(n: int, dim: int, clusters: int = 100, seed: int = 0, spread: float = 0.5):
    """``n`` float32 vectors around ``clusters`` random gaussian centers, and a function drawing
    fresh queries near the centers.  The noise is gaussian with a decaying spectrum (std of
    dimension j ~ j^-1/2, effective dimension ~30, like real embeddings) and a norm of about
    ``spread`` times the center's."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (clusters, dim)).astype(np.float32)
    decay = np.arange(1, dim + 1) ** -0.5
    scale = (spread * np.sqrt(dim) * decay / np.linalg.norm(decay)).astype(np.float32)  # per-dimension std

    def draw(count: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.integers(0, clusters, count)
        return centers[which] + rng.standard_normal((count, dim), dtype=np.float32) * scale

    data = np.concatenate([draw(min(50_000, n - s), rng) for s in range(0, n, 50_000)]) if n else np.empty((0, dim))
    return data.astype(np.float32), (lambda count, seed=1: draw(count, np.random.default_rng(seed)).astype(np.float32))


def exact_knn(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the exact cosine top-k of each query (what a FLAT index returns)."""
    d = data / np.linalg.norm(data, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ d.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)
