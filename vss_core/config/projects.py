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
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vss_core.config import keys
from vss_core.config import remote as remote_config
from vss_core.config.keys import DEFAULT_PROMOTE, HNSW_DEFAULTS, JOBS_DEFAULTS, Reader, shown
from vss_core.errors import ConfigError, FileRefused
from vss_core.files.paths import read_regular_file

REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = "embedded"
MAX_CONFIG_BYTES = 1_000_000
_SAFE_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
_MAX_SOCKET_PATH = 100
DEFAULT_BATCH_SIZE = 32


def embedded_socket_path(data_dir: Path) -> Path:
    """The unix socket of the embedded server of ``data_dir``.

    ``data_dir/redis.sock``; when that path is too long for a unix socket, a file named by a
    hash of ``data_dir`` in :func:`private_runtime_dir` (a folder only this user can enter).
    """
    path = Path(data_dir) / "redis.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(os.fsencode(data_dir)).hexdigest()[:16]
    return private_runtime_dir() / f"redis-{digest}.sock"


def private_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/vss`` or ``<tmp>/vss-<uid>``: where long data dirs keep their sockets.

    The embedded server checks that it is a real folder owned by this user and closed to others.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / "vss"
    return Path(tempfile.gettempdir()) / f"vss-{os.getuid()}"


@dataclass(frozen=True)
class Settings:
    """Values taken from the environment."""

    config_path: Path
    data_dir: Path
    batch_size: int


def settings() -> Settings:
    """Read ``CONFIG_PATH``, ``VSS_DATA_DIR`` and ``BATCH_SIZE`` from the environment."""
    return Settings(
        config_path=Path(os.environ.get("CONFIG_PATH") or REPO_ROOT / "config"),
        data_dir=Path(os.environ.get("VSS_DATA_DIR") or REPO_ROOT / "data"),
        batch_size=batch_size(),
    )


def batch_size(value: int | str | None = None) -> int:
    """``value``, or else the ``BATCH_SIZE`` environment variable (default 32), as a positive int;
    ``ConfigError`` naming ``BATCH_SIZE`` when it is not one."""
    raw = os.environ.get("BATCH_SIZE", str(DEFAULT_BATCH_SIZE)) if value is None else value
    try:
        size = int(raw)
    except (TypeError, ValueError):
        size = 0
    if size <= 0:
        raise ConfigError(f"must be a positive integer, got {shown(raw)}", key="BATCH_SIZE")
    return size


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
    batch_size: int = DEFAULT_BATCH_SIZE
    output_path: str = "output"
    index_algorithm: str = "FLAT"
    hnsw: dict = field(default_factory=lambda: dict(HNSW_DEFAULTS))
    device: str = "auto"
    data_roots: tuple[Path, ...] = ()
    threshold: float | None = None
    promote: frozenset = DEFAULT_PROMOTE  # which decisions make exemplars (config.keys.promote)
    notice: str | None = None
    """Set when the project runs on a kept copy of its unreachable ``config_url`` (says so)."""
    jobs: dict = field(default_factory=lambda: dict(JOBS_DEFAULTS))


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
    try:
        os.scandir(folder).close()  # rglob below passes over a folder it may not read without a word
    except OSError as exc:
        result.errors.append(ConfigError(f"cannot read the config folder: {exc.strerror}", file=str(folder)))
        return result
    files = sorted({*folder.rglob("*.yaml"), *folder.rglob("*.yml")})
    parsed = {}
    for path in files:
        try:
            parsed[path] = _read_yaml_file(path)
        except ConfigError as exc:
            result.errors.append(exc)
    remotes = _fetch_remotes(parsed, env)
    for path, data in parsed.items():
        try:
            project = _merged_project(path, data, remotes.get(path), env)
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
    return _merged_project(path, data, _fetch_remotes({path: data}, env).get(path), env)


def _fetch_remotes(parsed: dict[Path, dict], env: Settings) -> dict[Path, remote_config.Remote]:
    """Every well-formed ``config_url`` of ``parsed`` fetched at once (see :mod:`vss_core.config.remote`)."""
    urls = {path: data["config_url"] for path, data in parsed.items()
            if isinstance(data.get("config_url"), str) and _is_http(data["config_url"])}
    return remote_config.fetch_all(urls, env.data_dir)


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _merged_project(path: Path, data: dict, remote, env: Settings) -> ProjectConfig:
    url = data.get("config_url")
    notice = None
    if url is not None:
        if not isinstance(url, str):
            raise ConfigError("must be an http(s) URL string", file=str(path), key="config_url")
        if not _is_http(url):
            raise ConfigError(f"'{url}' is not an http(s) URL", file=str(path), key="config_url")
        if remote.error:
            raise ConfigError(remote.error, file=str(path), key="config_url")
        data = deep_merge(data, remote.data)
        notice = remote.notice and f"config_url {remote.notice}"
    return _build_project(data, path, env, notice)


def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, the rest is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileRefused as exc:
        raise ConfigError(f"cannot read: {exc.reason}", file=str(path)) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML: {_short(exc)}", file=str(path)) from None
    except RecursionError:
        raise ConfigError("not usable YAML: nested too deeply", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping with 'vss' and optional 'redis' sections", file=str(path))
    return data


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _build_project(data: dict, path: Path, env: Settings, notice: str | None = None) -> ProjectConfig:
    reader = Reader(data, path)
    if reader.section("vss") is None:
        raise reader.fail("vss", "section is required (with vss.project and vss.model)")
    name = reader.get("vss.project", str, required=True).strip()
    if not _SAFE_PROJECT.match(name) or ".." in name:
        raise reader.fail("vss.project", f"'{name}' is not a usable name (letters, digits, . _ - and spaces)")
    model = keys.model(reader)
    data_dir = env.data_dir / name
    return ProjectConfig(
        name=name,
        model=model,
        source_file=path,
        redis=_redis_target(reader, data_dir),
        data_dir=data_dir,
        batch_size=env.batch_size,
        output_path=keys.output_path(reader, data_dir),
        index_algorithm=keys.algorithm(reader),
        hnsw=keys.hnsw(reader),
        device=keys.device(reader),
        data_roots=keys.data_roots(reader),
        threshold=keys.threshold(reader),
        promote=keys.promote(reader),
        notice=notice,
        jobs=keys.jobs(reader),
    )


def _redis_target(reader: Reader, data_dir: Path) -> RedisTarget:
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
