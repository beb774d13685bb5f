"""Project configuration: one YAML file per project, in fastapi-vss's format.

A file has fastapi-vss's keys (``redis.host``, ``redis.port``, ``vss.model``,
``vss.project``, ``vss.output_path``, ``config_url``) plus optional ones of ours
(``redis.index``, ``redis.prefix``, ``vss.index_algorithm``, ``vss.hnsw``,
``vss.device``, ``vss.data_roots``, ``vss.threshold``, and a ``jobs`` section:
``jobs.runner`` thread|rq, ``jobs.chunk_size``).  No ``redis`` section,
or ``redis.host: embedded``, means the embedded Redis server.

Environment: ``CONFIG_PATH`` (folder of YAML files, default ``config/``),
``VSS_DATA_DIR`` (default ``data/``), ``BATCH_SIZE`` (default 32) and
``REDIS_PASSWD`` (password of an external Redis, never shown).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_RUNNERS = ("thread", "rq")
JOBS_DEFAULTS = {"runner": "thread", "chunk_size": 1000}
EMBEDDED = "embedded"
ALGORITHMS = ("FLAT", "HNSW")
HNSW_DEFAULTS = {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 50}  # recall@10 >= 0.99 at 100k (bench/knn.py)
REMOTE_TIMEOUT_S = 30
_SAFE_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
_MAX_SOCKET_PATH = 100


def embedded_socket_path(data_dir: Path) -> Path:
    """The unix socket of the embedded server of ``data_dir`` (in /tmp when the path is too long)."""
    path = Path(data_dir) / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"vss-redis-{digest}.sock"


@dataclass(frozen=True)
class Settings:
    """Values taken from the environment."""

    config_path: Path
    data_dir: Path
    batch_size: int


def settings() -> Settings:
    """Read ``CONFIG_PATH``, ``VSS_DATA_DIR`` and ``BATCH_SIZE`` from the environment."""
    raw_batch = os.environ.get("BATCH_SIZE", "32")
    try:
        batch_size = int(raw_batch)
    except ValueError:
        batch_size = 0
    if batch_size <= 0:
        raise ConfigError(f"must be a positive integer, got {raw_batch!r}", key="BATCH_SIZE")
    return Settings(
        config_path=Path(os.environ.get("CONFIG_PATH") or REPO_ROOT / "config"),
        data_dir=Path(os.environ.get("VSS_DATA_DIR") or REPO_ROOT / "data"),
        batch_size=batch_size,
    )


@dataclass(frozen=True)
class RedisTarget:
    """Where a project's vectors live.  ``password`` never appears in ``repr``."""

    host: str = EMBEDDED
    port: int | None = None
    password: str | None = field(default=None, repr=False)
    index: str = "index"
    prefix: str = "doc:"
    socket_path: Path | None = None

    @property
    def embedded(self) -> bool:
        return self.host == EMBEDDED

    def describe(self) -> str:
        """A one-line description that is safe to show (no password)."""
        if self.embedded:
            return f"embedded (unix socket {self.socket_path})"
        return f"redis://{self.host}:{self.port}"


@dataclass(frozen=True)
class ProjectConfig:
    """One project: its model, its Redis target and where its files live."""

    name: str
    model: str
    source_file: Path
    redis: RedisTarget
    data_dir: Path
    batch_size: int = 32
    output_path: str = "output"
    index_algorithm: str = "FLAT"
    hnsw: dict = field(default_factory=lambda: dict(HNSW_DEFAULTS))
    device: str = "auto"
    data_roots: tuple[Path, ...] = ()
    threshold: float | None = None
    promote: bool = True
    jobs: dict = field(default_factory=lambda: dict(JOBS_DEFAULTS))
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ProjectSet:
    """The projects that loaded, and one error per file that did not."""

    projects: dict[str, ProjectConfig] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    def get(self, name: str) -> ProjectConfig:
        try:
            return self.projects[name]
        except KeyError:
            known = ", ".join(sorted(self.projects)) or "none"
            raise ConfigError(f"no project named '{name}' (known: {known})") from None


def load_projects(config_dir: str | Path | None = None) -> ProjectSet:
    """Load every ``*.yaml``/``*.yml`` file under ``config_dir`` (default ``CONFIG_PATH``).

    A bad file adds a :class:`ConfigError` to ``errors`` and the others still load.
    """
    env = settings()
    folder = Path(config_dir) if config_dir is not None else env.config_path
    result = ProjectSet()
    if not folder.is_dir():
        result.errors.append(ConfigError("config folder does not exist", file=str(folder)))
        return result
    files = sorted({*folder.rglob("*.yaml"), *folder.rglob("*.yml")})
    for path in files:
        try:
            project = load_project_file(path, env)
        except ConfigError as exc:
            result.errors.append(exc)
            continue
        if project.name in result.projects:
            first = result.projects[project.name].source_file
            result.errors.append(ConfigError(
                f"duplicate project name '{project.name}' (already defined in {first})",
                file=str(path), key="vss.project"))
            continue
        result.projects[project.name] = project
    return result


def load_project_file(path: str | Path, env: Settings | None = None) -> ProjectConfig:
    """Parse, merge (``config_url``) and validate one project file."""
    path = Path(path)
    env = env or settings()
    data = _read_yaml_file(path)
    url = data.get("config_url")
    if url is not None:
        if not isinstance(url, str):
            raise ConfigError("must be an http(s) URL string", file=str(path), key="config_url")
        data = deep_merge(data, fetch_remote_yaml(url, path))
    return _build_project(data, path, env)


def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, the rest is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def fetch_remote_yaml(url: str, source: Path) -> dict:
    """Fetch a YAML mapping over HTTP(S) with a 30 s timeout."""
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"'{url}' is not an http(s) URL", file=str(source), key="config_url")
    try:
        with urllib.request.urlopen(url, timeout=REMOTE_TIMEOUT_S) as response:
            text = response.read(1_000_000).decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot fetch {url}: {reason}", file=str(source), key="config_url") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{url} is not valid YAML: {_short(exc)}", file=str(source), key="config_url") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{url} did not return a YAML mapping", file=str(source), key="config_url")
    return data


def _read_yaml_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML: {_short(exc)}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping with 'vss' and optional 'redis' sections", file=str(path))
    return data


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


class _Reader:
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
            raise self.fail(key, f"must be {names}, got {type(value).__name__} {value!r}")
        return value


def _build_project(data: dict, path: Path, env: Settings) -> ProjectConfig:
    reader = _Reader(data, path)
    if reader.section("vss") is None:
        raise reader.fail("vss", "section is required (with vss.project and vss.model)")
    name = reader.get("vss.project", str, required=True).strip()
    if not _SAFE_PROJECT.match(name) or ".." in name:
        raise reader.fail("vss.project", f"'{name}' is not a usable name (letters, digits, . _ - and spaces)")
    model = _model(reader)
    data_dir = env.data_dir / name
    return ProjectConfig(
        name=name,
        model=model,
        source_file=path,
        redis=_redis_target(reader, data_dir),
        data_dir=data_dir,
        batch_size=env.batch_size,
        output_path=_output_path(reader, data_dir),
        index_algorithm=_algorithm(reader),
        hnsw=_hnsw(reader),
        device=_device(reader),
        data_roots=_data_roots(reader),
        threshold=_threshold(reader),
        promote=_promote(reader),
        jobs=_jobs(reader),
        raw=data,
    )


def _redis_target(reader: _Reader, data_dir: Path) -> RedisTarget:
    reader.section("redis")
    host = str(reader.get("redis.host", str, default=EMBEDDED)).strip() or EMBEDDED
    index = reader.get("redis.index", str, default="index")
    prefix = reader.get("redis.prefix", str, default="doc:")
    if host == EMBEDDED:
        return RedisTarget(index=index, prefix=prefix, socket_path=embedded_socket_path(data_dir))
    port = reader.get("redis.port", int, default=6379)
    if not 0 < port < 65536:
        raise reader.fail("redis.port", f"must be between 1 and 65535, got {port}")
    password = os.environ.get("REDIS_PASSWD") or None
    return RedisTarget(host=host, port=port, password=password, index=index, prefix=prefix)


def _model(reader: _Reader) -> str:
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


def _jobs(reader: _Reader) -> dict:
    runner = reader.get("jobs.runner", str, default=JOBS_DEFAULTS["runner"]).strip().lower()
    if runner not in JOB_RUNNERS:
        raise reader.fail("jobs.runner", f"must be one of {', '.join(JOB_RUNNERS)}, got {runner!r}")
    chunk = reader.get("jobs.chunk_size", int, default=JOBS_DEFAULTS["chunk_size"])
    if chunk < 1:
        raise reader.fail("jobs.chunk_size", f"must be a positive integer, got {chunk}")
    return {"runner": runner, "chunk_size": chunk}


def _promote(reader: _Reader) -> bool:
    value = (reader.section("vss") or {}).get("promote", True)
    if not isinstance(value, bool):
        raise reader.fail("vss.promote", f"must be true or false, got {value!r}")
    return value


def _algorithm(reader: _Reader) -> str:
    value = reader.get("vss.index_algorithm", str, default="FLAT").upper()
    if value not in ALGORITHMS:
        raise reader.fail("vss.index_algorithm", f"must be FLAT or HNSW, got {value!r}")
    return value


def _hnsw(reader: _Reader) -> dict:
    given = reader.get("vss.hnsw", dict, default={})
    params = dict(HNSW_DEFAULTS)
    for key, value in given.items():
        name = str(key).upper()
        if name not in HNSW_DEFAULTS:
            raise reader.fail(f"vss.hnsw.{key}", f"unknown HNSW parameter (known: {', '.join(HNSW_DEFAULTS)})")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise reader.fail(f"vss.hnsw.{key}", f"must be a positive integer, got {value!r}")
        params[name] = value
    return params


def _device(reader: _Reader) -> str:
    value = reader.get("vss.device", str, default="auto").strip().lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise reader.fail("vss.device", f"must be auto, cpu, cuda or cuda:N, got {value!r}")


def _data_roots(reader: _Reader) -> tuple[Path, ...]:
    value = reader.get("vss.data_roots", (list, str), default=[])
    items = [value] if isinstance(value, str) else value
    roots = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise reader.fail(f"vss.data_roots[{i}]", f"must be a folder path, got {item!r}")
        root = Path(item).expanduser()
        if not root.is_absolute():
            root = reader.path.parent / root
        roots.append(root.resolve())
    return tuple(roots)


def _output_path(reader: _Reader, data_dir: Path) -> str:
    """Where fastapi-vss-shaped results go: relative to the config file; default <data_dir>/output."""
    value = reader.get("vss.output_path", str, default=None)
    if value is None or not value.strip():
        return str(data_dir / "output")
    path = Path(value.strip()).expanduser()
    return str(path if path.is_absolute() else (reader.path.parent / path).resolve())


def _threshold(reader: _Reader) -> float | None:
    value = reader.get("vss.threshold", (int, float), default=None)
    return None if value is None else float(value)
