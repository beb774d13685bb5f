"""Typed reading of one project file's keys: each ``vss.*`` / ``jobs.*`` value parsed once, with a
:class:`~vss_core.errors.ConfigError` naming the file and the key (used by :mod:`vss_core.config.projects`)."""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

from vss_core.errors import ConfigError

JOB_RUNNERS = ("thread", "rq")
JOBS_DEFAULTS = {"runner": "thread", "chunk_size": 1000}
ALGORITHMS = ("FLAT", "HNSW")
HNSW_DEFAULTS = {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 50}  # recall@10 >= 0.99 at 100k (bench/knn.py)
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 80, 80


def shown(value: Any) -> str:
    """A bounded repr: a YAML alias bomb must not expand into the message."""
    return _REPR.repr(value)


class Reader:
    """Typed access to one file's keys, with errors naming the file and the key."""

    def __init__(self, data: dict, path: Path):
        self.data = data
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=str(self.path), key=key)

    def section(self, name: str) -> dict | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, dict):
            raise self.fail(name, f"must be a mapping, got {type(value).__name__}")
        return value

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False) -> Any:
        section, _, name = key.partition(".")
        value = (self.section(section) or {}).get(name)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {names}, got {type(value).__name__} {shown(value)}")
        return value


def model(reader: Reader) -> str:
    """A hub id as given; a local folder (absolute, ./, ../, ~ or existing beside the file) made absolute."""
    model = reader.get("vss.model", str, required=True).strip()
    if not model:
        raise reader.fail("vss.model", "must not be empty")
    path = Path(model).expanduser()
    if path.is_absolute():
        return str(path)
    beside = reader.path.parent / path
    if model.startswith((".", "~")) or beside.exists():
        return str(beside.resolve())
    return model


def jobs(reader: Reader) -> dict:
    runner = reader.get("jobs.runner", str, default=JOBS_DEFAULTS["runner"]).strip().lower()
    if runner not in JOB_RUNNERS:
        raise reader.fail("jobs.runner", f"must be one of {', '.join(JOB_RUNNERS)}, got {runner!r}")
    chunk = reader.get("jobs.chunk_size", int, default=JOBS_DEFAULTS["chunk_size"])
    if chunk < 1:
        raise reader.fail("jobs.chunk_size", f"must be a positive integer, got {chunk}")
    return {"runner": runner, "chunk_size": chunk}


SINGLE, PAGE, GROUP, BULK = "single", "page", "group", "bulk"
HOWS = (SINGLE, PAGE, GROUP, BULK)
"""How a review decision was made: one image looked at, a page of tiles on screen, a group listed in full,
or a bulk action over a filter (after its preview)."""
DEFAULT_PROMOTE = frozenset({SINGLE, PAGE, GROUP})


def promote(reader: Reader) -> frozenset[str]:
    """``vss.promote``: which decisions make exemplars of the images they accept.  ``true`` (the default) is
    single, page and group decisions; ``false`` none; or a list of ``single``, ``page``, ``group``, ``bulk``."""
    value = (reader.section("vss") or {}).get("promote", True)
    if isinstance(value, bool):
        return DEFAULT_PROMOTE if value else frozenset()
    if isinstance(value, list) and all(isinstance(v, str) and v.strip().lower() in HOWS for v in value):
        return frozenset(v.strip().lower() for v in value)
    raise reader.fail("vss.promote", f"must be true, false or a list of {', '.join(HOWS)}, got {shown(value)}")


def promotion_policy(value) -> frozenset[str]:
    """A promotion policy from ``True``/``False`` (as older callers pass it) or a set of hows."""
    if isinstance(value, bool):
        return DEFAULT_PROMOTE if value else frozenset()
    return frozenset(value)


def describe_policy(policy) -> str:
    """The policy in words, for the pages and the CLI."""
    hows = [h for h in HOWS if h in promotion_policy(policy)]
    if not hows:
        return "no decision makes an exemplar (vss.promote: false)"
    rest = [h for h in HOWS if h not in hows]
    text = f"{', '.join(hows)} decisions make exemplars"
    return text + (f"; {', '.join(rest)} decisions stay in the pool only" if rest else "") + " (vss.promote)"


def algorithm(reader: Reader) -> str:
    value = reader.get("vss.index_algorithm", str, default="FLAT").upper()
    if value not in ALGORITHMS:
        raise reader.fail("vss.index_algorithm", f"must be FLAT or HNSW, got {shown(value)}")
    return value


def hnsw(reader: Reader) -> dict:
    given = reader.get("vss.hnsw", dict, default={})
    params = dict(HNSW_DEFAULTS)
    for key, value in given.items():
        name = str(key).upper()
        if name not in HNSW_DEFAULTS:
            raise reader.fail(f"vss.hnsw.{key}", f"unknown HNSW parameter (known: {', '.join(HNSW_DEFAULTS)})")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise reader.fail(f"vss.hnsw.{key}", f"must be a positive integer, got {shown(value)}")
        params[name] = value
    return params


def device(reader: Reader) -> str:
    value = reader.get("vss.device", str, default="auto").strip().lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise reader.fail("vss.device", f"must be auto, cpu, cuda or cuda:N, got {shown(value)}")


def data_roots(reader: Reader) -> tuple[Path, ...]:
    value = reader.get("vss.data_roots", (list, str), default=[])
    items = [value] if isinstance(value, str) else value
    roots = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise reader.fail(f"vss.data_roots[{i}]", f"must be a folder path, got {shown(item)}")
        root = Path(item).expanduser()
        if not root.is_absolute():
            root = reader.path.parent / root
        roots.append(root.resolve())
    return tuple(roots)


def output_path(reader: Reader, data_dir: Path) -> str:
    """Where fastapi-vss-shaped results go: relative to the config file; default <data_dir>/output."""
    value = reader.get("vss.output_path", str, default=None)
    if value is None or not value.strip():
        return str(data_dir / "output")
    path = Path(value.strip()).expanduser()
    return str(path if path.is_absolute() else (reader.path.parent / path).resolve())


def threshold(reader: Reader) -> float | None:
    value = reader.get("vss.threshold", (int, float), default=None)
    return None if value is None else float(value)
