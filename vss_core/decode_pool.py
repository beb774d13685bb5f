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

import ctypes
import functools
import os


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
