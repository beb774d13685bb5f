"""Image embeddings with a Hugging Face vision transformer (ViT, DINOv2, fine-tuned ViT, ...).

The embedding is the CLS token of ``last_hidden_state`` as float32, unnormalised,
exactly as fastapi-vss stores it.  torch and transformers are imported lazily.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from vss_core.config import projects as config
from vss_core.embed import model_cache
from vss_core.embed.decode_pool import ProcessDecoder, one_torch_thread
from vss_core.embed.preprocess import FastPath, make_preprocessor
from vss_core.errors import ConfigError, ImageError, ModelLoadError
from vss_core.files import images

# torch's OpenMP threads otherwise spin-wait for work while the decode threads and Redis
# need the cores (about 30% of the tiny-model pipeline on 2 cores); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PREFETCH_BATCHES = 2
_LOCAL_HINT = (
    "Point `vss.model` in the project config at a local directory written by save_pretrained "
    "(config.json, model weights and preprocessor_config.json), e.g. made on a machine with internet by "
    "`python -m vss_core fetch-model ID DIR`."
)


@dataclass
class EmbedResult:
    """Embeddings of the images that decoded; ``ok[i]`` is the input index of ``vectors[i]``.

    Each error is an :class:`ImageError` with an ``index`` attribute (its input index).
    """

    vectors: np.ndarray
    ok: list[int] = field(default_factory=list)
    errors: list[ImageError] = field(default_factory=list)


class Embedder:
    """A loaded model + image processor that turns images into CLS embeddings. Thread-safe.

    ``model`` is a Hugging Face id (from the local cache when offline) or a local
    save_pretrained directory.  ``device`` is "auto", "cpu", "cuda" or "cuda:N"; CUDA
    runs in float16.  ``batch_size`` defaults to env ``BATCH_SIZE`` (32).  ``fast`` enables
    the fast preprocessing path when the processor's config allows it.  ``workers`` threads
    or processes (default: up to 8 on CUDA; on CPU a quarter of the cores, at least 2, at most 8)
    decode and preprocess up to ``prefetch`` batches ahead of inference.  ``decode`` is "threads",
    "processes" (uint8 batches through shared memory; fast path with a fixed input size only) or
    "auto": processes on CUDA or with 8+ cores, else threads.  ``cache_dir`` keeps a compiled copy of
    a CPU model there (:mod:`vss_core.embed.model_cache`), so that the next process starts without transformers.
    """

    def __init__(self, model: str | Path, device: str = "auto", batch_size: int | None = None,
                 fast: bool = True, workers: int | None = None, prefetch: int = PREFETCH_BATCHES,
                 decode: str = "auto", cache_dir: str | Path | None = None):
        import torch

        self.model_name = str(model)
        self.batch_size = config.batch_size(batch_size)
        self.device = _resolve_device(device)
        self.dtype = "float16" if self.device.startswith("cuda") else "float32"
        self._torch_dtype = torch.float16 if self.dtype == "float16" else torch.float32
        cacheable = cache_dir is not None and fast and self.device == "cpu"
        cached = model_cache.load(cache_dir, self.model_name) if cacheable else None
        if cached is not None:
            self._model = self._processor = None
            self._forward, self.dim, self.preprocessor = cached.forward, cached.dim, FastPath(cached.spec, True)
        else:
            self._model, self._processor = _load(self.model_name, self.device, self.dtype)
            self._forward = model_cache.cls_forward(self._model)
            self.dim = int(self._model.config.hidden_size)
            self.preprocessor = make_preprocessor(self._processor, fast, torch_resize=self.device == "cpu")
            if cacheable and self.preprocessor.fast:
                model_cache.save(cache_dir, self.model_name, self._forward, self.preprocessor.spec, self.dim)
        self.workers = workers or _default_workers(self.device)
        self.prefetch = max(0, int(prefetch))
        self.decode = _decode_mode(decode, self.device, self.preprocessor)
        self._lock = threading.Lock()
        self._decoder_lock = threading.Lock()
        self._decoder: ProcessDecoder | None = None

    @property
    def processor(self):
        """The model's transformers image processor (loaded on first use when the model came from the cache)."""
        if self._processor is None:
            from transformers import AutoImageProcessor

            self._processor = AutoImageProcessor.from_pretrained(_check_local(self.model_name),
                                                                 local_files_only=True)
        return self._processor

    @property
    def fast(self) -> bool:
        """Whether the fast preprocessing path is in use (else the transformers processor)."""
        return self.preprocessor.fast

    def __repr__(self) -> str:
        return f"Embedder({self.model_name!r}, device={self.device!r}, dim={self.dim}, fast={self.fast})"

    def embed(self, sources: Iterable) -> EmbedResult:
        """Embed paths, bytes, binary files or PIL images; bad ones land in ``errors``, the rest go on."""
        parts = list(self.iter_embed(sources))
        vectors = [p.vectors for p in parts if len(p.ok)]
        return EmbedResult(
            np.concatenate(vectors) if vectors else np.empty((0, self.dim), np.float32),
            [i for p in parts for i in p.ok],
            [e for p in parts for e in p.errors],
        )

    def iter_embed(self, sources: Iterable) -> Iterator[EmbedResult]:
        """Yield one :class:`EmbedResult` per batch, indices global, in input order.

        Decoding and preprocessing run in a thread pool (or in worker processes, see ``decode``)
        up to ``prefetch`` batches ahead of the batch being embedded.
        """
        if self.decode == "processes" and self._decoder_lock.acquire(blocking=False):
            try:  # one pipeline at a time uses the processes; a concurrent one takes threads
                yield from self._iter_processes(sources)
            finally:
                self._decoder_lock.release()
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="vss-decode",
                                  initializer=one_torch_thread)
        pending: deque[tuple[int, list[Future]]] = deque()
        try:
            for start, chunk in _chunks(sources, self.batch_size):
                pending.append((start, [pool.submit(self._prepare, start + i, s) for i, s in enumerate(chunk)]))
                if len(pending) > self.prefetch:
                    yield self._embed_batch(*pending.popleft())
            while pending:
                yield self._embed_batch(*pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Embed already decoded PIL images; returns (n, dim) float32."""
        pixels = [self.preprocessor.process(image) for image in images]
        out = [self.embed_pixels(np.stack(pixels[i:i + self.batch_size]))
               for i in range(0, len(pixels), self.batch_size)]
        return np.concatenate(out) if out else np.empty((0, self.dim), np.float32)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on preprocessed (n, 3, H, W) pixels; returns the (n, dim) float32 CLS tokens."""
        import torch

        with self._lock, torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
            tensor = tensor.to(self.device).to(self._torch_dtype)
            return self._forward(tensor).float().cpu().numpy()

    def _iter_processes(self, sources: Iterable) -> Iterator[EmbedResult]:
        if self._decoder is None:
            self._decoder = ProcessDecoder(self.preprocessor.spec, self.preprocessor.torch_resize, self.workers,
                                           self.batch_size, self.prefetch + 2)
        decoder, pending = self._decoder, deque()
        try:
            for start, chunk in _chunks(sources, self.batch_size):
                pending.append(decoder.submit(start, chunk))
                if len(pending) > self.prefetch:
                    yield self._embed_ticket(pending.popleft())
            while pending:
                yield self._embed_ticket(pending.popleft())
        finally:
            for ticket in pending:  # a caller that stops early leaves every slot free
                decoder.collect(ticket)
                decoder.release(ticket)

    def _embed_ticket(self, ticket) -> EmbedResult:
        pixels, ok, errors = self._decoder.collect(ticket)
        try:
            return EmbedResult(self._embed_uint8(pixels), ok, errors)
        finally:
            self._decoder.release(ticket)

    def _embed_uint8(self, pixels: np.ndarray) -> np.ndarray:
        """Normalise (n, H, W, 3) uint8 on the model's device (uint8 is 1/4 of the host->GPU copy) and embed."""
        if not len(pixels):
            return np.empty((0, self.dim), np.float32)
        import torch

        spec = self.preprocessor.spec
        with self._lock, torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, non_blocking=True)
            mul = torch.tensor(spec.mul, device=self.device).view(1, 3, 1, 1)
            add = torch.tensor(spec.add, device=self.device).view(1, 3, 1, 1)
            tensor = (tensor.permute(0, 3, 1, 2).float() * mul + add).to(self._torch_dtype)
            return self._forward(tensor).float().cpu().numpy()

    def _prepare(self, index: int, source) -> np.ndarray | ImageError:
        name = images.source_name(source) if not isinstance(source, Image.Image) else f"<image {index}>"
        try:
            if isinstance(source, Image.Image):
                return self.preprocessor.process(source)
            return self.preprocessor.load(source, name)
        except ImageError as error:
            error.index = index
            return error
        except Exception as exc:  # a preprocessing failure is this image's problem, not the batch's
            error = ImageError(name, f"cannot preprocess image ({type(exc).__name__}: {exc})")
            error.index = index
            return error

    def _embed_batch(self, start: int, futures: list[Future]) -> EmbedResult:
        results = [f.result() for f in futures]
        ok = [start + i for i, r in enumerate(results) if not isinstance(r, ImageError)]
        errors = [r for r in results if isinstance(r, ImageError)]
        pixels = [r for r in results if not isinstance(r, ImageError)]
        return EmbedResult(self._embed_arrays(pixels), ok, errors)

    def _embed_arrays(self, pixels: list[np.ndarray]) -> np.ndarray:
        if not pixels:
            return np.empty((0, self.dim), np.float32)
        shapes = {p.shape for p in pixels}
        if len(shapes) == 1:
            return self.embed_pixels(np.stack(pixels))
        out = np.empty((len(pixels), self.dim), np.float32)
        for shape in shapes:
            rows = [i for i, p in enumerate(pixels) if p.shape == shape]
            out[rows] = self.embed_pixels(np.stack([pixels[i] for i in rows]))
        return out


def _decode_mode(mode: str, device: str, preprocessor) -> str:
    """"threads" or "processes": processes pay where the model outruns the GIL-bound decode threads
    (a GPU, or 8+ cores); on a small CPU box threads are faster (docs/benchmarks.md)."""
    name = (mode or "auto").strip().lower()
    if name not in ("auto", "threads", "processes"):
        raise ConfigError(f"unknown decode mode '{mode}': use auto, threads or processes", key="decode")
    possible = preprocessor.fast and preprocessor.output_size is not None
    if name == "auto":
        name = "processes" if device.startswith("cuda") or _cpus() >= 8 else "threads"
    return name if possible else "threads"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _chunks(sources: Iterable, size: int) -> Iterator[tuple[int, list]]:
    iterator, start = iter(sources), 0
    while chunk := list(islice(iterator, size)):
        yield start, chunk
        start += len(chunk)


def _default_workers(device: str) -> int:
    cpus = _cpus()
    if device.startswith("cuda"):
        return max(1, min(cpus - 1, 8))  # more threads only fight over the GIL with the forward pass
    return min(8, max(2, cpus // 4))  # with passive OpenMP waits, two decoders help even on 2 cores


def _resolve_device(device: str | None) -> str:
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise ModelLoadError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"device '{device}' was requested but CUDA is not available; use device 'auto' or 'cpu'")
    if match.group(1) and int(match.group(1)) >= torch.cuda.device_count():
        raise ModelLoadError(f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    return name


def _load(name: str, device: str, dtype: str):
    import torch
    from transformers import AutoImageProcessor, AutoModel

    source = _check_local(name)
    is_hub_id = not Path(source).is_dir()
    try:
        try:
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=is_hub_id)
            model = AutoModel.from_pretrained(source, local_files_only=is_hub_id)
        except OSError:
            if not is_hub_id or _hub_offline() or not _hub_reachable():
                raise
            processor = AutoImageProcessor.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for a bad model
        raise ModelLoadError(_load_message(name, exc)) from exc
    if not isinstance(getattr(model.config, "hidden_size", None), int):
        raise ModelLoadError(f"model '{name}' ({type(model).__name__}) is not a vision transformer "
                             "with a CLS token (its config has no hidden_size)")
    model.eval()
    model.to(device=device, dtype=torch.float16 if dtype == "float16" else torch.float32)
    return model, processor


def for_project(project, device: str | None = None) -> Embedder:
    """The embedder ``project`` asks for (model, device, batch size), with the data dir's model cache."""
    return Embedder(project.model, device=device or project.device, batch_size=project.batch_size,
                    cache_dir=model_cache.default_dir())


def save_model(model_id: str, folder: str | Path) -> Path:
    """Load ``model_id`` (hub or cache) and save model + processor to ``folder`` for offline use."""
    model, processor = _load(model_id, "cpu", "float32")
    target = Path(folder).expanduser().resolve()
    try:
        model.save_pretrained(target)
        processor.save_pretrained(target)
    except OSError as exc:
        raise ModelLoadError(f"cannot save model '{model_id}' to '{target}': {exc.strerror or exc}") from exc
    return target


def _check_local(name: str) -> str:
    """The name to load: a checked local directory, or the hub id unchanged."""
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
    if not path.exists():
        if looks_local:
            raise ModelLoadError(f"model directory '{name}' does not exist. {_LOCAL_HINT}")
        return name
    if not path.is_dir():
        raise ModelLoadError(f"model path '{name}' is not a directory. {_LOCAL_HINT}")
    for required in ("config.json", "preprocessor_config.json"):
        if not (path / required).is_file():
            raise ModelLoadError(f"model directory '{name}' has no {required}: it is not a complete "
                                 f"save_pretrained folder. {_LOCAL_HINT}")
    return str(path)


def _hub_offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP check of the hub, so a machine without internet fails at once, not after retries."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _load_message(name: str, exc: Exception) -> str:
    reason = " ".join(str(exc).split())[:300]
    if Path(name).expanduser().is_dir():
        return f"cannot load model from directory '{name}': {reason}"
    why = ("the hub is disabled (HF_HUB_OFFLINE=1)" if _hub_offline()
           else "the Hugging Face hub could not be reached")
    detail = "" if "can't load" in reason.lower() else f" ({reason})"
    return (f"cannot load model '{name}': it is not in the local Hugging Face cache and {why}, "
            f"or the id is wrong{detail}. {_LOCAL_HINT}")
