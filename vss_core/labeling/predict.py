"""Predict: embed unlabeled images once, suggest labels from the exemplars, stream them into the pool.

Ids come from file content, so a rerun (or a job resumed after a crash) skips images already in the
pool.  Results are written batch by batch: the review grid fills while the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from vss_core.chunks import each_chunk
from vss_core.errors import FileRefused, InputError, PathNotAllowed
from vss_core.files.paths import checked_path, name_text, path_text
from vss_core.labeling.loader import file_id, files_under, read_csv_rows
from vss_core.labeling.suggestions import suggestion_fields
from vss_core.redis.exemplars import VectorStore
from vss_core.redis.pool import PoolStore, Prediction

CHUNK = 256
DEFAULT_TOP_N = 5
DEFAULT_THRESHOLD = 0.8


@dataclass
class PredictReport:
    """What a predict run did: counts and the reason each failed file failed."""

    predicted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    ids: list[str] = field(default_factory=list)  # every readable image's id, in input order

    def summary(self) -> str:
        text = f"predicted {self.predicted}, skipped {self.skipped} (already in the pool), failed {len(self.failed)}"
        return text + (" - cancelled" if self.cancelled else "")


def threshold_of(project) -> float:
    """The project's acceptance threshold (``vss.threshold``, a cosine similarity), default 0.8."""
    return DEFAULT_THRESHOLD if project.threshold is None else float(project.threshold)


def collect_images(folder: str | Path) -> list[Path]:
    """Every file under ``folder``, recursively (hidden files and folders skipped), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{path_text(root)}: not a folder")
    try:
        files = files_under(root)
    except OSError as exc:
        raise InputError(f"{path_text(root)}: cannot list the folder: {exc.strerror or exc}") from None
    if not files:
        raise InputError(f"{path_text(root)}: no files found")
    return files


def collect_paths_csv(csv_file: str | Path) -> list[Path]:
    """The first column of a CSV (header ``path`` optional); relative paths are relative to the CSV."""
    csv_path = csv_file if isinstance(csv_file, Path) else Path(csv_file)
    rows = read_csv_rows(csv_path)
    if rows and rows[0] and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
    paths = []
    for line_no, row in enumerate(rows, start=1):
        if row and row[0].strip():
            if "\x00" in row[0]:
                raise InputError(f"{path_text(csv_path)} line {line_no}: contains a NUL byte")
            path = Path(row[0].strip()).expanduser()
            paths.append(path if path.is_absolute() else csv_path.parent / path)
    if not paths:
        raise InputError(f"{path_text(csv_path)}: no paths (expected one image path per row)")
    return paths


def precheck(exemplars: VectorStore) -> None:
    """One clear error before a job starts when there is nothing to compare with."""
    if exemplars.info().count == 0:
        raise InputError(f"the exemplar index '{exemplars.index_name}' is empty: load labeled exemplars "
                         f"(Exemplars page or `vss load`) before predicting")


def predict_paths(paths: Sequence[Path], embedder, exemplars: VectorStore, pool: PoolStore, *,
                  top_n: int = DEFAULT_TOP_N, threshold: float = DEFAULT_THRESHOLD, names: Sequence[str] | None = None,
                  progress=None, cancel: Callable[[], bool] | None = None, job: str = "") -> PredictReport:
    """Predict ``paths`` into ``pool``, skipping ids already there; reports to ``progress`` per batch."""
    precheck(exemplars)
    names = list(names) if names is not None else [name_text(p.name) for p in paths]
    report = PredictReport()
    if progress:
        progress.set_total(len(paths))

    def predict(_, chunk) -> None:
        _predict_chunk(chunk, embedder, exemplars, pool, top_n, threshold, progress, cancel, job, report)

    if not each_chunk(list(zip(paths, names)), CHUNK, predict, cancel):
        report.cancelled = True  # stopped before a chunk (_predict_chunk says so when it stops within one)
    if report.predicted:
        pool.sync()
    return report


def _predict_chunk(chunk, embedder, exemplars, pool, top_n, threshold, progress, cancel, job, report) -> None:
    keyed, unreadable = _identify(chunk)
    report.ids.extend(id for id, _, _ in keyed)
    missing = set(pool.missing([id for id, _, _ in keyed])) if keyed else set()
    todo, seen = [], set()
    for id, path, name in keyed:
        if id in missing and id not in seen:
            todo.append((id, path, name))
            seen.add(id)
    report.skipped += len(keyed) - len(todo)
    report.failed.extend(unreadable)
    _advance(progress, len(chunk) - len(todo), unreadable)
    for batch in (embedder.iter_embed([path for _, path, _ in todo]) if todo else ()):
        found_at = pool.generation()  # read before the search: a change meanwhile makes these stale, not fresh
        neighbor_lists = exemplars.knn(batch.vectors, top_n) if len(batch.ok) else []
        predictions = []
        for index, vector, neighbors in zip(batch.ok, batch.vectors, neighbor_lists):
            id, path, name = todo[index]
            predictions.append(Prediction(id, path_text(path), name, vector, suggestion_fields(neighbors, threshold),
                                          getattr(embedder, "model_name", ""), job, generation=found_at))
        pool.add(predictions, threshold)
        errors = [(path_text(todo[err.index][1]), err.reason) for err in batch.errors]
        report.predicted += len(predictions)
        report.failed.extend(errors)
        _advance(progress, len(predictions) + len(errors), errors)
        if cancel and cancel():
            report.cancelled = True
            return


def _identify(chunk) -> tuple[list[tuple[str, Path, str]], list[tuple[str, str]]]:
    keyed, unreadable = [], []
    for path, name in chunk:
        path = path if isinstance(path, Path) else Path(path)
        try:
            keyed.append((file_id(path), path, name))
        except FileRefused as exc:
            unreadable.append((path_text(path), f"cannot read file: {exc.reason}"))
    return keyed, unreadable


def predict_job(source: str, path: str | None, roots: Sequence[Path], embedder, exemplars: VectorStore,
                pool: PoolStore, *, top_n: int, threshold: float, uploads: Sequence[Path] = (),
                upload_names: Sequence[str] = ()):
    """The body of a background predict job: ``fn(progress) -> PredictReport`` for a JobRegistry.

    ``source`` is "folder" or "csv" (a server path under ``roots``) or "upload" (files already
    saved under the project's data dir, named by content).  Files outside ``roots`` are refused and listed as failures."""
    precheck(exemplars)

    def work(progress) -> PredictReport:
        progress.message("Collecting files…")
        paths, names, refused = sources(source, path, roots, uploads, upload_names)
        if refused:
            progress.advance(0, errors=refused)
        progress.message("Predicting…")
        report = predict_paths(paths, embedder, exemplars, pool, top_n=top_n, threshold=threshold, names=names,
                               progress=progress, cancel=lambda: progress.cancelled, job=progress.job_id)
        report.failed[:0] = refused
        progress.message(report.summary())
        return report

    return work


def sources(source, path, roots, uploads, upload_names):
    """(paths bound to their roots, display names, (file, reason) refused) of a predict source: "folder" or
    "csv" under ``roots``, or "upload" (saved under the data dir, each bound to its own folder)."""
    if source == "upload":  # saved by VSS under the project's data dir: each bound to its folder
        names = list(upload_names) or [p.name for p in uploads]
        kept = [_checked(p, (Path(p).parent,)) for p in uploads]
        return ([c for c, _ in kept if c is not None], [n for (c, _), n in zip(kept, names) if c is not None],
                [r for c, r in kept if c is None])
    if source not in ("folder", "csv"):
        raise InputError(f"unknown source {source!r} (folder, csv or upload)")
    base = checked_path(path, roots)
    candidates = collect_images(base) if source == "folder" else collect_paths_csv(base)
    kept = [_checked(candidate, roots) for candidate in candidates]
    allowed = [c for c, _ in kept if c is not None]
    names = [_display(p, base if source == "folder" else None) for p in allowed]
    return allowed, names, [r for c, r in kept if c is None]


def _checked(path, roots) -> tuple[Path | None, tuple[str, str] | None]:
    """(the path bound to ``roots``, None) or (None, (path, why it is refused))."""
    try:
        return checked_path(path, roots), None
    except PathNotAllowed as exc:
        return None, (path_text(path), str(exc))


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return name_text(str(path.relative_to(base.resolve())))
        except ValueError:
            pass
    return name_text(path.name)


def _advance(progress, n: int, errors) -> None:
    if progress and (n or errors):
        progress.advance(n, errors=errors)


__all__ = ["PredictReport", "collect_images", "collect_paths_csv", "precheck", "predict_paths",
           "predict_job", "threshold_of"]
