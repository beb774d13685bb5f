"""The label sheet: one row per pool image, as CSV or fastapi-vss JSON, written under ``output_path``.

CSV cells a spreadsheet would run as a formula (text starting with ``= + - @``, a tab or CR: a
label, a file name, an annotator's name) are written with a leading ``'`` (:func:`labels.csv_cell`).
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

from vss_core.errors import VSSError
from vss_core.fastapi_vss.results import fastapi_result, write_result
from vss_core.files.paths import atomic_write
from vss_core.labeling.labels import csv_cell
from vss_core.redis.pool import PoolFilter, PoolItem, PoolStore
from vss_core.redis.search_index import Neighbor

COLUMNS = ("path", "label", "score", "status", "share", "margin", "suggestion", "uncertain", "flag", "annotator",
           "time", "model", "id", "how", "exemplar")
PAGE = 1000


def items(pool: PoolStore, where: PoolFilter = PoolFilter()) -> Iterator[PoolItem]:
    """Every pool image ``where`` matches, by file name (no limit: past a million too)."""
    return pool.by_name(where, page=PAGE)


def row(item: PoolItem) -> dict:
    """One label-sheet row (CSV-safe cells); ``score`` is the best cosine similarity of the label's neighbours."""
    cells = {"path": item.source, "label": item.label, "score": f"{item.best:.6f}", "status": item.status,
             "share": f"{item.share:.4f}", "margin": f"{item.margin:.4f}", "suggestion": item.suggestion,
             "uncertain": int(item.uncertain), "flag": item.flag, "annotator": item.annotator,
             "time": item.decided_at, "model": item.model, "id": item.id, "how": item.how,
             "exemplar": int(bool(item.exemplar))}
    return {name: csv_cell(value) for name, value in cells.items()}


def to_csv(pool: PoolStore, where: PoolFilter = PoolFilter()) -> str:
    """The label sheet as CSV text."""
    return csv_text(items(pool, where))


def csv_text(chosen: Iterable[PoolItem]) -> str:
    """The label sheet of the pool images ``chosen`` as CSV text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for item in chosen:
        writer.writerow(row(item))
    return out.getvalue()


def save_csv(path: str | Path, chosen: Iterable[PoolItem]) -> Path:
    """Write the label sheet of ``chosen`` to ``path``, whole or not at all; ``VSSError`` naming the file."""
    try:
        return atomic_write(path, csv_text(chosen), mode=0o644)
    except OSError as exc:
        raise VSSError(f"cannot write the label sheet {path}: {exc.strerror or exc}") from exc


def to_fastapi_json(pool: PoolStore, where: PoolFilter = PoolFilter()) -> dict:
    """fastapi-vss's result shape (per-image lists, cosine distances) of each image's stored neighbours."""
    chosen = list(items(pool, where))
    neighbor_lists = [[Neighbor("", label, id, float(score), source) for label, id, score, source in item.neighbors]
                      for item in chosen]
    return fastapi_result([item.source for item in chosen], neighbor_lists)


def write_csv(pool: PoolStore, output_path: str | Path, where: PoolFilter = PoolFilter(),
              now: datetime | None = None, name: str = "labels") -> Path:
    """Write the CSV sheet of ``where`` under ``<output_path>/<name>/`` and return its path."""
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    folder = Path(output_path) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VSSError(f"cannot write the label sheet under {folder}: {exc.strerror or exc}") from exc
    return save_csv(folder / f"{name}_{stamp}_{os.getpid()}.csv", items(pool, where))


def write_json(pool: PoolStore, output_path: str | Path, where: PoolFilter = PoolFilter()) -> Path:
    """Write the fastapi-vss JSON where fastapi-vss writes its results and return its path."""
    return write_result(output_path, to_fastapi_json(pool, where))
