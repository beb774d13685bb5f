"""A compiled copy of a model's CLS embedding, so that a cold process starts without transformers.

Loading a Hugging Face model imports transformers' modeling stack: about 2.7 s of a 3.75 s start on
a 2-core VM, before any image is seen (docs/benchmarks.md, section 11).  The first CPU load of a
model whose fast preprocessing has a fixed input size traces its CLS forward with TorchScript,
checks the trace against the model on another batch size, and saves it with the preprocessing
spec and the dimension; later processes load that with torch alone.

The key covers the model folder (its path and each file's name, size and mtime), torch's and
transformers' versions and this format: any change misses and builds again.  A cache that cannot
be read is built again; one that cannot be written is skipped; a new entry replaces the model's older
ones, so each model has one copy on disk.  ``VSS_MODEL_CACHE=0`` turns it off.

TorchScript, although torch 2.13 deprecates it for ``torch.export``: a cold ``torch.export.load``
took 2.8 s here against 1.15 s for ``torch.jit.load`` (it imports torch's export machinery), which
would spend most of what the cache saves.  If a later torch drops it, tracing fails, nothing is
cached and every load takes the ordinary path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from vss_core.embed.preprocess import FastSpec
from vss_core.files.paths import atomic_write

FORMAT = 1
FOLDER = ".model-cache"
_MODEL, _INFO = "model.pt", "info.json"


@dataclass(frozen=True)
class Cached:
    """A loaded compiled model: ``forward(pixels) -> CLS tokens``, its dimension and preprocessing."""

    forward: object
    dim: int
    spec: FastSpec


def default_dir() -> Path | None:
    """``<VSS_DATA_DIR>/.model-cache``, or ``None`` when ``VSS_MODEL_CACHE=0``."""
    from vss_core.config.projects import settings

    if os.environ.get("VSS_MODEL_CACHE", "1").strip() == "0":
        return None
    return settings().data_dir / FOLDER


def cls_forward(model):
    """``model`` as a module whose forward takes pixel values and returns the CLS tokens."""
    return _cls_class()(model).eval()


def load(cache_dir: str | Path | None, model_name: str) -> Cached | None:
    """The compiled copy of ``model_name`` in ``cache_dir``, or ``None`` (none yet, stale or unreadable)."""
    folder = _entry(cache_dir, model_name)
    if folder is None or not (folder / _INFO).is_file():
        return None
    try:
        import torch

        info = json.loads((folder / _INFO).read_text(encoding="utf-8"))
        spec = FastSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["spec"].items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 points at torch.export: see above
            forward = torch.jit.load(str(folder / _MODEL), map_location="cpu").eval()
        return Cached(forward, int(info["dim"]), spec)
    except Exception:  # noqa: BLE001  any damage: the caller loads the model and saves a new copy
        return None


def save(cache_dir: str | Path | None, model_name: str, forward, spec: FastSpec, dim: int) -> bool:
    """Trace ``forward`` (from :func:`cls_forward`) and keep it; ``False`` when it cannot be cached here."""
    folder = _entry(cache_dir, model_name)
    size = spec.crop or spec.fixed_size
    if folder is None or size is None:
        return False
    try:
        traced = _trace(forward, size)
        if traced is None:
            return False
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        atomic_write(folder / _MODEL, lambda tmp: traced.save(str(tmp)))
        info = json.dumps({"format": FORMAT, "model": model_name, "dim": int(dim), "spec": asdict(spec)})
        atomic_write(folder / _INFO, info)
        _drop_older(folder, model_name)
        return True
    except Exception:  # noqa: BLE001  a full disk or a read-only data dir: the cache is only a speed-up
        return False


def model_key(model_name: str) -> str | None:
    """What the cache entry of ``model_name`` is named by, or ``None`` when its files cannot be found."""
    folder = _model_folder(model_name)
    if folder is None:
        return None
    try:
        files = sorted((p.name, st.st_size, st.st_mtime_ns) for p in folder.iterdir()
                       if p.is_file() and (st := p.stat()))
    except OSError:
        return None
    stamp = [str(folder.resolve()), files, _version("torch"), _version("transformers"), FORMAT]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32]


def _entry(cache_dir, model_name: str) -> Path | None:
    key = model_key(model_name) if cache_dir else None
    return Path(cache_dir) / key if key else None


def _drop_older(kept: Path, model_name: str) -> None:
    """Remove the other entries of ``model_name`` (older files or versions): one copy per model on disk."""
    for entry in kept.parent.iterdir():
        try:
            same = json.loads((entry / _INFO).read_text(encoding="utf-8")).get("model") == model_name
        except (OSError, ValueError, AttributeError):
            continue
        if same and entry != kept:
            shutil.rmtree(entry, ignore_errors=True)


def _model_folder(model_name: str) -> Path | None:
    path = Path(model_name).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_name, "config.json")
    except Exception:  # noqa: BLE001  not a hub id, or no hub library: nothing to key on
        return None
    return Path(found).parent if isinstance(found, str) else None


def _trace(forward, size: tuple[int, int]):
    import torch

    with torch.no_grad(), warnings.catch_warnings(), _quiet_transformers():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
        example, check = torch.rand(2, 3, *size) * 2 - 1, torch.rand(3, 3, *size) * 2 - 1
        traced = torch.jit.trace(forward, example, check_trace=False)
        same = torch.allclose(traced(check), forward(check), rtol=1e-4, atol=1e-5)
    return traced if same else None


@contextlib.contextmanager
def _quiet_transformers():
    """The tracer reads every attribute of the model, and transformers logs about some (loss_type)."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


@functools.lru_cache(maxsize=None)
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


@functools.lru_cache(maxsize=1)
def _cls_class():
    import torch

    class ClsForward(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).last_hidden_state[:, 0, :]

    return ClsForward
