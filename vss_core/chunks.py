"""Long runs in steps: a list worked through a chunk at a time, stopped between chunks when cancelled."""

from __future__ import annotations

from typing import Callable, Sequence


def each_chunk(items: Sequence, size: int, work: Callable[[int, Sequence], object],
               cancel: Callable[[], bool] | None = None, progress=None) -> bool:
    """Call ``work(start, items[start:start + size])`` for each chunk in order; before each one, stop when
    ``cancel()`` is true.  ``progress`` (optional) is told the total and then each chunk done.  Returns False
    when it was cancelled, True when every chunk was worked."""
    if progress:
        progress.set_total(len(items))
    for start in range(0, len(items), size):
        if cancel and cancel():
            return False
        chunk = items[start:start + size]
        work(start, chunk)
        if progress:
            progress.advance(len(chunk))
    return True
