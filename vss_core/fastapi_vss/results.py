"""fastapi-vss's result shape and result files: the one owner of both.

fastapi-vss (``ViTWrapper.predict`` and ``tasks.predict_on_cpu_or_gpu``) answers a
KNN request with one list per image -- ``predictions[i]``, ``scores[i]`` and
``ids[i]`` are the top-n labels, cosine *distances* (0 = identical, rounded to
4 decimals, as RediSearch returns them for a COSINE index) and exemplar ids of
``filenames[i]`` -- and writes that payload to
``<output_path>/<YYYYmmdd_HH0000>/<YYYYmmdd_HHMMSS>.<nanoseconds>.json``.
VSS keeps similarities (1 - distance) everywhere else.

What VSS adds: an ``errors`` mapping (file name -> reason) for images that could
not be read.  Those images are left out of ``filenames`` so the per-image lists
stay aligned for clients that zip them.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

from vss_core.errors import VSSError

__all__ = ["SCORE_DECIMALS", "fastapi_result", "distance", "write_result", "embed_result", "job_status"]

SCORE_DECIMALS = 4
_WRITTEN_KEYS = ("filenames", "predictions", "scores", "ids")


def distance(similarity: float) -> float:
    """fastapi-vss's score for a neighbour: the cosine distance, rounded as it rounds it."""
    return round(1.0 - float(similarity), SCORE_DECIMALS)


def fastapi_result(filenames: Sequence[str], neighbor_lists: Sequence[Sequence],
                   errors: Mapping[str, str] | None = None) -> dict:
    """fastapi-vss's KNN payload for images and their neighbours (best first).

    ``neighbor_lists[i]`` holds the neighbours of ``filenames[i]`` -- objects with
    ``.label``, ``.id`` and ``.score`` (cosine similarity), like
    :class:`vss_core.redis.exemplars.Neighbor`.  ``errors`` maps images that failed to why.
    """
    if len(filenames) != len(neighbor_lists):
        raise ValueError(f"{len(filenames)} file names but {len(neighbor_lists)} neighbour lists")
    return {
        "filenames": [str(f) for f in filenames],
        "predictions": [[n.label for n in ns] for ns in neighbor_lists],
        "scores": [[distance(n.score) for n in ns] for ns in neighbor_lists],
        "ids": [[n.id for n in ns] for ns in neighbor_lists],
        "errors": dict(errors or {}),
    }


def embed_result(filenames: Sequence[str], vectors, errors: Mapping[str, str] | None = None) -> dict:
    """fastapi-vss's ``/embed`` payload: ``filenames`` and one float list per image, plus ``errors``."""
    return {
        "filenames": [str(f) for f in filenames],
        "embeddings": [[float(x) for x in v] for v in vectors],
        "errors": dict(errors or {}),
    }


def write_result(output_path: str | Path, payload: Mapping, now: datetime | None = None) -> Path:
    """Write ``payload`` where fastapi-vss writes its results; return the file's path.

    The folder is ``<output_path>/<YYYYmmdd_HH0000>`` and the file
    ``<YYYYmmdd_HHMMSS>.<nanoseconds>.json`` (indent 4), with fastapi-vss's four
    keys plus ``errors`` when there are any.  A file is never overwritten.
    """
    stamp = now or datetime.now()
    folder = Path(output_path) / stamp.strftime("%Y%m%d_%H0000")
    try:
        return _write_new(folder, stamp, payload)
    except OSError as e:
        raise VSSError(f"Cannot write the result file under {folder}: {e.strerror or e}") from e


def _write_new(folder: Path, stamp: datetime, payload: Mapping) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = {k: payload[k] for k in _WRITTEN_KEYS if k in payload}
    if payload.get("errors"):
        body["errors"] = payload["errors"]
    text = json.dumps(body, indent=4)
    nanos = time.time_ns() % 10**9
    for attempt in range(1000):
        path = folder / f"{stamp.strftime('%Y%m%d_%H%M%S')}.{(nanos + attempt) % 10**9:09d}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    raise FileExistsError(f"{folder}: no free result file name for {stamp.isoformat()}")


def job_status(snap) -> dict:
    """fastapi-vss's answer to a job poll: ``pending`` while it runs (whatever its progress),
    ``done`` with the result under ``result`` and, for aipipeline, ``results``, else ``failed``."""
    if snap.state == "done":
        return {"status": "done", "result": snap.result, "results": snap.result}
    if snap.active:
        return {"status": "pending"}
    return {"status": "failed", "message": snap.message or snap.state}
