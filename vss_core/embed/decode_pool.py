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
import itertools
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import types
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
from PIL import Image

from vss_core.errors import ImageError
from vss_core.files import images


def one_torch_thread() -> None:
    """Limit the calling thread's torch ops to one OpenMP thread, leaving every other thread alone."""
    import torch

    torch.get_num_threads()  # torch's lazy per-thread init first, or it resets this thread's count later
    omp = _openmp()
    if omp is not None:
        omp.omp_set_num_threads(1)


@functools.lru_cache(maxsize=1)
def _openmp():
    """The OpenMP runtime torch loaded (its thread counts are per thread), or None if not found."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith(("libgomp", "libiomp", "libomp")) and ".so" in path:
            try:
                lib = ctypes.CDLL(path)
                lib.omp_set_num_threads  # noqa: B018  AttributeError when it is not an OpenMP runtime
                return lib
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

    A batch goes to the workers as one chunk each and comes back as one message per chunk (two
    queue messages per worker and batch, not two per image); each image's progress is a byte in
    shared memory, so a dead or stalled worker is still blamed for the one image it was on.
    """

    def __init__(self, spec, torch_resize: bool, workers: int, batch_size: int, slots: int,
                 stall_s: float = 120.0):
        height, width = spec.crop or spec.fixed_size
        self.shape = (slots, batch_size, height, width, 3)
        self._context = mp.get_context("spawn")  # never fork a process that runs torch threads
        size = int(np.prod(self.shape))
        self._shm = shared_memory.SharedMemory(create=True, size=size + slots * batch_size)
        self._pixels, self._progress = _views(self._shm, self.shape)
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
        self._progress[ticket.slot, :ticket.size] = PENDING
        tasks = []
        for pos, source in enumerate(sources):
            if isinstance(source, (str, Path, bytes, bytearray)):
                tasks.append((ticket.slot, pos, bytes(source) if isinstance(source, bytearray) else source))
            else:
                self._done[(ticket.slot, pos)] = self._here(ticket.slot, pos, source, start + pos)
        share = -(-len(tasks) // len(self._workers))
        for first in range(0, len(tasks), share or 1):
            self._send(self._workers[self._next % len(self._workers)], tasks[first:first + share])
            self._next += 1
        return ticket

    def _send(self, worker: "_Worker", chunk: list) -> None:
        if not worker.outstanding:
            worker.last, worker.seen = time.monotonic(), 0
        worker.outstanding.extend(chunk)
        worker.tasks.put(chunk)

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
        from vss_core.embed.preprocess import FastPath

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
            outcomes = self._results.get(timeout=min(1.0, self.stall_s))
        except queue.Empty:
            self._check_workers()
            return
        self._record(outcomes)

    def _record(self, outcomes: list) -> None:
        for slot, pos, failed in outcomes:
            self._done[(slot, pos)] = failed
        head = outcomes[0][:2]
        for worker in self._workers:
            if worker.outstanding and worker.outstanding[0][:2] == head:
                for _ in outcomes:
                    worker.outstanding.popleft()
                worker.last, worker.seen = time.monotonic(), 0
                break

    def _check_workers(self) -> None:
        while True:  # results a worker sent before it died are not lost
            try:
                outcomes = self._results.get_nowait()
            except queue.Empty:
                break
            self._record(outcomes)
        now = time.monotonic()
        for i, worker in enumerate(self._workers):
            finished = self._finished(worker)
            if finished > worker.seen:  # still moving through its chunk
                worker.last, worker.seen = now, finished
            stalled = worker.outstanding and now - worker.last > self.stall_s
            if worker.process.is_alive() and not stalled:
                continue
            if not worker.outstanding and worker.process.is_alive():
                continue
            worker.process.kill()
            worker.process.join(5)
            self._workers[i] = self._start()
            self._recover(worker, self._workers[i], stalled)

    def _finished(self, worker: "_Worker") -> int:
        return sum(1 for _ in itertools.takewhile(lambda t: self._progress[t[0], t[1]] != PENDING,
                                                   worker.outstanding))

    def _recover(self, dead: "_Worker", fresh: "_Worker", stalled: bool) -> None:
        """Keep what ``dead`` decoded, blame it for the image it was on, send the rest to ``fresh``."""
        lost = list(dead.outstanding)
        again = []
        for n, (slot, pos, source) in enumerate(lost):
            state = self._progress[slot, pos]
            if state == DECODED:
                self._done[(slot, pos)] = None
            elif state == FAILED:  # its reason died with the worker: the fresh one finds it again
                again.append((slot, pos, source))
            else:
                why = (f"the decode worker stalled for {self.stall_s:.0f} s on this image" if stalled else
                       f"the decode worker process died (exit code {dead.process.exitcode}) on this image")
                self._done[(slot, pos)] = (images.source_name(source), why)
                again.extend(lost[n + 1:])
                break
        if again:
            self._send(fresh, again)

    def _start(self) -> "_Worker":
        tasks = self._context.Queue()
        process = self._context.Process(target=_work, args=(*self._args, tasks, self._results),
                                        name="vss-decode", daemon=True)
        with _main_without_file():
            process.start()
        return _Worker(process, tasks)


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_without_file():
    """Start a spawned process without it importing the parent's ``__main__`` script.

    A spawned child runs the file of a ``__main__`` that has no ``__spec__`` (multiprocessing's
    documented behaviour).  Streamlit's script runner installs such a module, with the app's page as
    its file, for every script run (in the server and in AppTest): a decode process would run the app.
    The worker function lives in this module, so the child needs nothing from ``__main__``."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    with _START_LOCK:
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


@dataclass
class _Worker:
    process: object
    tasks: object
    outstanding: deque = field(default_factory=deque)
    last: float = field(default_factory=time.monotonic)
    seen: int = 0


PENDING, DECODED, FAILED = 0, 1, 2


def _views(shm, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The pixel slots and, after them, one progress byte per image (PENDING, DECODED or FAILED)."""
    size = int(np.prod(shape))
    return (np.ndarray(shape, np.uint8, buffer=shm.buf),
            np.ndarray(shape[:2], np.uint8, buffer=shm.buf, offset=size))


def _work(spec, torch_resize: bool, shm_name: str, shape: tuple, tasks, results) -> None:
    """A decode process: take chunks of (slot, pos, source) until None, write pixels and progress,
    then report the chunk's outcomes in one message."""
    from vss_core.embed.preprocess import FastPath

    shm = shared_memory.SharedMemory(name=shm_name)  # the parent owns (and unlinks) it; same resource tracker
    pixels, progress = _views(shm, shape)
    if torch_resize:
        import torch

        torch.set_num_threads(1)  # this whole process is one decoder
    path = FastPath(spec, torch_resize)
    while (chunk := tasks.get()) is not None:
        outcomes = []
        for slot, pos, source in chunk:
            failed = _decode_into(path, pixels, slot, pos, source)
            progress[slot, pos] = FAILED if failed else DECODED
            outcomes.append((slot, pos, failed))
        results.put(outcomes)
    del pixels, progress
    shm.close()


def _decode_into(path, pixels: np.ndarray, slot: int, pos: int, source) -> tuple | None:
    try:
        pixels[slot, pos] = path.load_uint8(source)
        return None
    except ImageError as error:
        return (error.source, error.reason)
    except Exception as exc:  # noqa: BLE001  this image's problem, not the batch's
        return (images.source_name(source), f"cannot preprocess image ({type(exc).__name__}: {exc})")


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
