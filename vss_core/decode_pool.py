"""Where images are decoded and preprocessed for the embedder: threads or worker processes.

Threads (``ThreadDecoder``) share the embedder's preprocessor and return float32 model inputs.
Processes (``ProcessDecoder``) decode and resize outside the GIL and hand back uint8 batches
through shared memory; the embedder normalises them (on the GPU when there is one).

A decode thread that runs torch ops (the resize) must use one OpenMP thread, but only itself:
``torch.set_num_threads`` also sets the process-wide count that every thread which has not yet
run a parallel torch op adopts on its first one (``at::init_num_threads``), so calling it in a
decode thread halved the model's speed when the model had not yet run in the main thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing as mp
import os
import queue
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
from PIL import Image

from . import images
from .errors import ImageError


def one_torch_thread() -> None:
    """Limit the calling thread's torch ops to one OpenMP thread, leaving every other thread alone."""
    import torch

    torch.get_num_threads()  # torch's lazy per-thread init first, or it resets this thread's count later
    limit = _omp_set_num_threads()
    if limit is not None:
        limit(1)


@functools.lru_cache(maxsize=1)
def _omp_set_num_threads():
    """``omp_set_num_threads`` of the OpenMP runtime torch loaded (per thread), or None if not found."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith(("libgomp", "libiomp", "libomp")) and ".so" in path:
            try:
                return ctypes.CDLL(path).omp_set_num_threads
            except (OSError, AttributeError):
                continue
    return None


@dataclass
class Ticket:
    """One batch handed to the worker processes: its shared-memory slot and its global input indices."""

    slot: int
    start: int
    size: int


class ProcessDecoder:
    """Worker processes that decode and resize images into uint8 batches in shared memory.

    ``submit(start, sources)`` queues one batch (at most ``batch_size`` sources) into a free slot of
    ``slots``; ``collect(ticket)`` waits for it and returns ``(pixels, ok, errors)`` where ``pixels``
    is an (n_ok, H, W, 3) uint8 view valid until ``release(ticket)``.  A worker that dies or stalls
    for ``stall_s`` fails the image it was on; its other images go to a fresh worker.
    """

    def __init__(self, spec, torch_resize: bool, workers: int, batch_size: int, slots: int,
                 stall_s: float = 120.0):
        height, width = spec.crop or spec.fixed_size
        self.shape = (slots, batch_size, height, width, 3)
        self._context = mp.get_context("spawn")  # never fork a process that runs torch threads
        self._shm = shared_memory.SharedMemory(create=True, size=int(np.prod(self.shape)))
        self._pixels = np.ndarray(self.shape, np.uint8, buffer=self._shm.buf)
        self._args = (spec, torch_resize, self._shm.name, self.shape)
        self._results = self._context.Queue()
        self._workers = [self._start() for _ in range(max(1, workers))]
        self._free = deque(range(slots))
        self._done: dict[tuple[int, int], tuple | None] = {}
        self._next = 0
        self.stall_s = stall_s
        self._closer = weakref.finalize(self, _close, self._workers, self._shm)

    def submit(self, start: int, sources: list) -> Ticket:
        """Queue ``sources`` (paths or bytes; other sources are decoded here) as the batch starting at ``start``."""
        if not self._free:
            raise RuntimeError("no free decode slot: collect and release a batch first")
        ticket = Ticket(self._free.popleft(), start, len(sources))
        for pos, source in enumerate(sources):
            if not isinstance(source, (str, Path, bytes, bytearray)):
                self._done[(ticket.slot, pos)] = self._here(ticket.slot, pos, source, start + pos)
                continue
            worker = self._workers[self._next % len(self._workers)]
            self._next += 1
            task = (ticket.slot, pos, bytes(source) if isinstance(source, bytearray) else source)
            if not worker.outstanding:
                worker.last = time.monotonic()
            worker.outstanding.append(task)
            worker.tasks.put(task)
        return ticket

    def collect(self, ticket: Ticket) -> tuple[np.ndarray, list[int], list[ImageError]]:
        """Wait for ``ticket``'s images; ``(uint8 pixels of the good ones, their indices, errors)``."""
        keys = [(ticket.slot, pos) for pos in range(ticket.size)]
        while any(key not in self._done for key in keys):
            self._receive()
        outcome = [self._done.pop(key) for key in keys]
        good = [pos for pos, failed in enumerate(outcome) if failed is None]
        errors = [ImageError(*failed, index=ticket.start + pos) for pos, failed in enumerate(outcome) if failed]
        pixels = self._pixels[ticket.slot, :ticket.size]
        pixels = pixels if len(good) == ticket.size else pixels[good]
        return pixels, [ticket.start + pos for pos in good], errors

    def release(self, ticket: Ticket) -> None:
        """Give ``ticket``'s slot back once its pixels have been used."""
        self._free.append(ticket.slot)

    def close(self) -> None:
        """Stop the workers and free the shared memory."""
        self._closer()

    def _here(self, slot: int, pos: int, source, index: int) -> tuple | None:
        from .preprocess import FastPath

        name = images.source_name(source) if not isinstance(source, Image.Image) else f"<image {index}>"
        path = FastPath(*self._args[:2])
        try:
            is_image = isinstance(source, Image.Image)
            self._pixels[slot, pos] = path.process_uint8(source) if is_image else path.load_uint8(source, name)
            return None
        except ImageError as error:
            return (error.source, error.reason)
        except Exception as exc:  # noqa: BLE001  this image's problem, not the batch's
            return (name, f"cannot preprocess image ({type(exc).__name__}: {exc})")

    def _receive(self) -> None:
        try:
            slot, pos, failed = self._results.get(timeout=min(1.0, self.stall_s))
        except queue.Empty:
            self._check_workers()
            return
        self._record(slot, pos, failed)

    def _record(self, slot: int, pos: int, failed) -> None:
        self._done[(slot, pos)] = failed
        for worker in self._workers:
            if worker.outstanding and worker.outstanding[0][:2] == (slot, pos):
                worker.outstanding.popleft()
                worker.last = time.monotonic()
                break

    def _check_workers(self) -> None:
        while True:  # results a worker sent before it died are not lost
            try:
                slot, pos, failed = self._results.get_nowait()
            except queue.Empty:
                break
            self._record(slot, pos, failed)
        now = time.monotonic()
        for i, worker in enumerate(self._workers):
            stalled = worker.outstanding and now - worker.last > self.stall_s
            if worker.process.is_alive() and not stalled:
                continue
            if not worker.outstanding and worker.process.is_alive():
                continue
            worker.process.kill()
            worker.process.join(5)
            lost = list(worker.outstanding)
            self._workers[i] = fresh = self._start()
            if lost:
                slot, pos, source = lost[0]
                why = (f"the decode worker stalled for {self.stall_s:.0f} s on this image" if stalled else
                       f"the decode worker process died (exit code {worker.process.exitcode}) on this image")
                self._done[(slot, pos)] = (images.source_name(source), why)
                for task in lost[1:]:
                    fresh.outstanding.append(task)
                    fresh.tasks.put(task)

    def _start(self) -> "_Worker":
        tasks = self._context.Queue()
        process = self._context.Process(target=_work, args=(*self._args, tasks, self._results),
                                        name="vss-decode", daemon=True)
        process.start()
        return _Worker(process, tasks)


@dataclass
class _Worker:
    process: object
    tasks: object
    outstanding: deque = field(default_factory=deque)
    last: float = field(default_factory=time.monotonic)


def _work(spec, torch_resize: bool, shm_name: str, shape: tuple, tasks, results) -> None:
    """A decode process: take (slot, pos, source) tasks until None, write pixels, report failures."""
    from .preprocess import FastPath

    shm = shared_memory.SharedMemory(name=shm_name)  # the parent owns (and unlinks) it; same resource tracker
    pixels = np.ndarray(shape, np.uint8, buffer=shm.buf)
    if torch_resize:
        import torch

        torch.set_num_threads(1)  # this whole process is one decoder
    path = FastPath(spec, torch_resize)
    while (task := tasks.get()) is not None:
        slot, pos, source = task
        try:
            pixels[slot, pos] = path.load_uint8(source)
            failed = None
        except ImageError as error:
            failed = (error.source, error.reason)
        except Exception as exc:  # noqa: BLE001  this image's problem, not the batch's
            failed = (images.source_name(source), f"cannot preprocess image ({type(exc).__name__}: {exc})")
        results.put((slot, pos, failed))
    del pixels
    shm.close()


def _close(workers: list, shm) -> None:
    for worker in workers:
        with contextlib.suppress(Exception):
            worker.tasks.put(None)
    for worker in workers:
        worker.process.join(2)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(2)
    with contextlib.suppress(Exception):
        shm.close()
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()
