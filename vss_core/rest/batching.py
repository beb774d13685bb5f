"""Batching across requests: the images of concurrent requests go through the model together.

A REST server gets many small requests (aipipeline posts a few images at a
time).  One :class:`Batcher` per (embedder, store) runs a single worker thread:
it takes every request waiting in its queue, up to ``max_images`` images, embeds
them in one call and searches their neighbours in one KNN exchange, then hands
each request its own part.  While one batch runs, the next requests queue up and
go together in the following batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from vss_core.embed.embedder import EmbedResult
from vss_core.errors import ImageError
from vss_core.labeling.search import SearchResults, assemble

__all__ = ["Batcher"]

log = logging.getLogger(__name__)


@dataclass
class _Request:
    sources: list
    names: list[str]
    top_n: int  # 0: embeddings only
    future: Future = field(default_factory=Future)


class Batcher:
    """Embed (and search) the images of concurrent requests in shared batches; thread-safe."""

    def __init__(self, embedder, store=None, max_images: int = 64):
        self.embedder = embedder
        self.store = store
        self.max_images = max(1, int(max_images))
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def search(self, sources, names, top_n: int) -> "Future[SearchResults]":
        """A future of the :class:`SearchResults` of ``sources`` (bytes or paths) with ``top_n`` neighbours."""
        if top_n < 1:
            raise ValueError("top_n must be at least 1")
        return self._submit(_Request(list(sources), list(names), int(top_n)))

    def embed(self, sources, names) -> "Future[EmbedResult]":
        """A future of the :class:`EmbedResult` of ``sources``."""
        return self._submit(_Request(list(sources), list(names), 0))

    def _submit(self, request: _Request) -> Future:
        self._queue.put(request)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, daemon=True, name="vss-batcher")
                self._thread.start()
        return request.future

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=30)
            except queue.Empty:
                with self._lock:  # idle: stop; the next submit starts a new thread
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch, size = [first], len(first.sources)
            while size < self.max_images:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(more)
                size += len(more.sources)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        try:
            embedded = self.embedder.embed([s for r in batch for s in r.sources])
            parts = _split(embedded, [len(r.sources) for r in batch])
            searched = [(r, p) for r, p in zip(batch, parts) if r.top_n > 0]
            neighbors = self._knn(searched)
        except Exception as e:  # noqa: BLE001 - every waiting request learns why
            for r in batch:
                r.future.set_exception(e)
            return
        for r, part in zip(batch, parts):
            if r.top_n == 0:
                r.future.set_result(part)
            else:
                lists = [ns[:r.top_n] for ns in neighbors[id(r)]]
                r.future.set_result(assemble(r.names, part, lists, r.top_n))

    def _knn(self, searched: list) -> dict[int, list]:
        """Neighbours of every searched request's vectors, from one KNN exchange."""
        vectors = [p.vectors for _, p in searched if len(p.ok)]
        if not vectors:
            return {id(r): [] for r, _ in searched}
        k = max(r.top_n for r, _ in searched)
        found = self.store.knn(np.concatenate(vectors), k)
        out, start = {}, 0
        for r, p in searched:
            out[id(r)] = found[start:start + len(p.ok)]
            start += len(p.ok)
        return out


def _split(embedded: EmbedResult, sizes: list[int]) -> list[EmbedResult]:
    """Cut one EmbedResult over concatenated inputs back into one per request, indices local."""
    parts, start, row = [], 0, 0
    for size in sizes:
        end = start + size
        ok = [i for i in embedded.ok if start <= i < end]
        vectors = embedded.vectors[row:row + len(ok)]
        row += len(ok)
        errors = [ImageError(e.source, e.reason, index=e.index - start)
                  for e in embedded.errors if start <= e.index < end]
        parts.append(EmbedResult(vectors, [i - start for i in ok], errors))
        start = end
    return parts
