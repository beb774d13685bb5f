"""Command line: ``python -m vss_core`` (or ``vss``).

    projects                               name, model, Redis target, vector count
    load PROJECT FOLDER | --csv FILE       load labeled exemplars (reruns skip what is loaded)
    knn PROJECT IMAGE... [--top-n N] [--json]
    predict PROJECT FOLDER|--csv FILE [--out SHEET.csv]   suggest labels into the review pool
    embed PROJECT IMAGE...                 JSON with filenames and embeddings
    stats PROJECT                          dimension, algorithm, count per label
    fetch-model MODEL_ID FOLDER            save a hub model + processor for offline use
    worker PROJECT [--device cuda:0]       take the project's job chunks (projects with jobs.runner: rq)

Bad input exits non-zero with a one-line error on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import sys
import threading
from typing import Sequence

from vss_core.config.projects import ProjectConfig, load_projects
from vss_core.errors import VSSError
from vss_core.files.paths import path_text


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    args = _parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main else None
    try:
        return args.run(args)
    except VSSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame):
    """SIGTERM (docker stop, systemd) ends a command like Ctrl-C: the embedded server is stopped at exit."""
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vss", description="Vector similarity search for imagery.")
    parser.add_argument("--config", metavar="DIR", help="folder of project YAML files (default: CONFIG_PATH or config/)")
    commands = parser.add_subparsers(dest="command", required=True)

    cmd = commands.add_parser("projects", help="list projects")
    cmd.set_defaults(run=cmd_projects)

    cmd = commands.add_parser("load", help="load labeled exemplars")
    _project_and_source(cmd, "folder with one sub-folder per label", "CSV with columns path,label[,id]")
    cmd.add_argument("--added-by", default=_user(), help="annotator recorded with each exemplar")
    cmd.set_defaults(run=cmd_load)

    cmd = commands.add_parser("knn", help="nearest exemplars of images")
    cmd.add_argument("project")
    cmd.add_argument("images", nargs="+")
    cmd.add_argument("--top-n", type=_top_n, default=5)
    cmd.add_argument("--json", action="store_true", help="print fastapi-vss's JSON result (per-image lists, cosine distances) "
                     "and write it under the project's output_path")
    cmd.set_defaults(run=cmd_knn)

    cmd = commands.add_parser("predict", help="suggest labels for unlabeled images (the review pool)")
    _project_and_source(cmd, "folder of images (recursive)", "CSV with one image path per row")
    cmd.add_argument("--top-n", type=_top_n, default=5)
    cmd.add_argument("--out", metavar="FILE.csv", help="write the label sheet of these images here")
    cmd.set_defaults(run=cmd_predict)

    cmd = commands.add_parser("embed", help="embeddings of images as JSON")
    cmd.add_argument("project")
    cmd.add_argument("images", nargs="+")
    cmd.set_defaults(run=cmd_embed)

    cmd = commands.add_parser("stats", help="index statistics")
    cmd.add_argument("project")
    cmd.set_defaults(run=cmd_stats)

    cmd = commands.add_parser("adopt", help="make a fastapi-vss database filterable by label (adds a 'label' field)")
    cmd.add_argument("project")
    cmd.set_defaults(run=cmd_adopt)

    cmd = commands.add_parser("worker", help="an RQ worker for a project's load/predict/mine chunks")
    cmd.add_argument("project")
    cmd.add_argument("--device", help="torch device of this worker (default: the project's vss.device)")
    cmd.add_argument("--heartbeat-s", type=float, default=10.0,
                     help="a chunk of a worker silent for 3x this is taken again by another worker")
    cmd.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    cmd.set_defaults(run=cmd_worker)

    cmd = commands.add_parser("fetch-model", help="save a hub model and its processor to a folder")
    cmd.add_argument("model_id")
    cmd.add_argument("folder")
    cmd.set_defaults(run=cmd_fetch_model)
    return parser


def _project_and_source(cmd: argparse.ArgumentParser, folder_help: str, csv_help: str) -> None:
    """A command's arguments ``PROJECT FOLDER | --csv FILE``."""
    cmd.add_argument("project")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("folder", nargs="?", help=folder_help)
    source.add_argument("--csv", metavar="FILE", help=csv_help)


def cmd_projects(args) -> int:
    from vss_core.redis.exemplars import connect_store

    result = load_projects(args.config)
    rows = [("PROJECT", "MODEL", "REDIS", "VECTORS")]
    for project in result.projects.values():
        try:
            count = str(connect_store(project).info().count)
        except VSSError as exc:
            count = f"unavailable: {exc}"
        rows.append((project.name, project.model, project.redis.describe(), count))
    _print_table(rows)
    return _errors(result.errors)


def cmd_load(args) -> int:
    from vss_core.labeling.loader import collect_csv, collect_folder, load_items

    project = _project(args)
    items = collect_csv(args.csv) if args.csv else collect_folder(args.folder)
    embedder, store = _open(project)
    with _ProgressBar(f"load {project.name}") as bar:
        report = load_items(items, embedder, store, added_by=args.added_by, progress=bar)
    return _outcome(report)


def cmd_knn(args) -> int:
    from vss_core.labeling.search import search

    project = _project(args)
    embedder, store = _open(project)
    results = search(embedder, store, args.images, top_n=args.top_n, names=[path_text(p) for p in args.images])
    if args.json:
        from vss_core.fastapi_vss.results import write_result

        payload = results.to_fastapi_json()
        payload["output_path"] = str(write_result(project.output_path, payload))
        print(json.dumps(payload, indent=2))
    else:
        for result in results.ok:
            print(f"{result.filename}: suggested {result.majority.label if result.majority else '-'}"
                  + (f" (weighted {result.weighted.label} {result.weighted.share:.0%})" if result.weighted else ""))
            for rank, n in enumerate(result.neighbors, start=1):
                print(f"  {rank:>2}. {n.label:<30} {n.score:.4f}  {n.id}")
    return _errors([f"{result.filename}: {result.error}" for result in results.errors])


def cmd_predict(args) -> int:
    from vss_core.embed.embedder import for_project
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.labelsheet import save_csv
    from vss_core.labeling.predict import collect_images, collect_paths_csv, precheck, predict_paths, threshold_of
    from vss_core.redis.exemplars import connect_store

    project = _project(args)
    paths = collect_paths_csv(args.csv) if args.csv else collect_images(args.folder)
    precheck(connect_store(project))  # before minutes of model loading
    embedder = for_project(project)
    decisions = open_decisions(project, embedder.dim)
    with _ProgressBar(f"predict {project.name}") as bar:
        report = predict_paths(paths, embedder, decisions.exemplars, decisions.pool, top_n=args.top_n,
                               threshold=threshold_of(project), progress=bar, job=_run_name())
    code = _outcome(report)
    if args.out:
        found = decisions.pool.get(list(dict.fromkeys(report.ids)))
        print(f"label sheet: {save_csv(args.out, [item for item in found if item is not None])}")
    return code


def _errors(errors) -> int:
    """Print each error as one ``error: ...`` line on stderr; the exit code: 1 when there is any."""
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def _outcome(report) -> int:
    """Print a load or predict report (summary, then each failed file); the exit code: 1 when any failed."""
    print(report.summary())
    for path, reason in report.failed:
        print(f"  failed: {path}: {reason}")
    return 1 if report.failed else 0


def _run_name() -> str:
    """The set a CLI prediction run's images belong to (anomalies are scored within a set)."""
    from datetime import datetime

    return "cli-" + datetime.now().strftime("%Y%m%d-%H%M%S")


def cmd_embed(args) -> int:
    from vss_core.embed.embedder import for_project
    from vss_core.fastapi_vss.results import embed_result

    project = _project(args)
    embedder = for_project(project)
    result = embedder.embed(args.images)
    print(json.dumps(embed_result([args.images[i] for i in result.ok], result.vectors,
                                  {args.images[e.index]: e.reason for e in result.errors})))
    return _errors(result.errors)


def cmd_stats(args) -> int:
    from vss_core.redis.exemplars import connect_store

    project = _project(args)
    store = connect_store(project)
    info = store.info()
    print(f"project:   {project.name}")
    print(f"redis:     {project.redis.describe()}")
    print(f"index:     {info.name}")
    print(f"dimension: {info.dim}")
    print(f"algorithm: {info.algorithm}")
    print(f"vectors:   {info.count}")
    print(f"layout:    {_layout_text(store)}")
    counts = store.label_counts()
    if counts:
        _print_table([("LABEL", "COUNT")] + [(label, str(n)) for label, n in
                                              sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))])
    return 0


def _layout_text(store) -> str:
    from vss_core.redis import migrations

    version = migrations.layout_version(store)
    if version is None:
        return ("fastapi-vss's, not adopted (labels from the keys; "
                f"`vss adopt {store.index_name}` indexes them)" if store.info().dim else "none yet")
    unlabeled = store.unlabeled_count()
    return f"{version}" + (f" ({unlabeled} documents without a label field: run `vss adopt`)" if unlabeled else "")


def cmd_adopt(args) -> int:
    from vss_core.redis import migrations
    from vss_core.redis.exemplars import connect_store

    project = _project(args)
    store = connect_store(project)
    with _ProgressBar("adopt") as bar:
        bar.set_total(store.info().count)
        seen = [0]

        def progress(done: int, total: int) -> None:
            bar.advance(done - seen[0])
            seen[0] = done

        report = migrations.adopt(store, project.model, progress=progress)
    print(f"index '{store.index_name}': labeled {report.labeled} of {report.total} documents"
          + (" (resumed)" if report.resumed else "") + "; fastapi-vss reads it as before")
    return 0


def cmd_fetch_model(args) -> int:
    from vss_core.embed.embedder import save_model

    path = save_model(args.model_id, args.folder)
    print(f"saved {args.model_id} to {path}; set `vss.model: {path}` in the project config")
    return 0


def cmd_worker(args) -> int:
    from vss_core.jobs.rq_worker import run_worker

    if args.heartbeat_s <= 0:
        raise VSSError(f"--heartbeat-s must be positive, got {args.heartbeat_s}")
    run_worker(_project(args), device=args.device, heartbeat_s=args.heartbeat_s, burst=args.burst)
    return 0


def _project(args) -> ProjectConfig:
    result = load_projects(args.config)
    if args.project not in result.projects:
        for error in result.errors:
            if error.file and _names_project(error, args.project):
                raise error
    return result.get(args.project)


def _names_project(error, name: str) -> bool:
    return f"'{name}'" in str(error) or name in str(error.file)


def _open(project: ProjectConfig):
    from vss_core.embed.embedder import for_project
    from vss_core.redis.project import open_project

    embedder = for_project(project)
    return embedder, open_project(project, embedder.dim).exemplars


def _top_n(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


class _ProgressBar:
    """A tqdm bar on stderr that the loader reports to."""

    def __init__(self, description: str):
        self.description = description
        self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def set_total(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=self.description, unit="img", file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5)

    def advance(self, n: int, errors=()) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if errors:
                self.bar.set_postfix(failed=len(errors), refresh=False)
