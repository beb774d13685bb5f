"""The peers VSS must stay compatible with, run for real: MBARI's ``mbari-aidata`` (installed from PyPI
with ``--no-deps``), which builds fastapi-vss databases, and fastapi-vss's own predictor (vendored
beside this file, see ``fastapi_vss/README.md``)."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

HERE = Path(__file__).parent / "fastapi_vss"


def _index_definition_shim() -> None:
    """redis-py renamed ``redis.commands.search.indexDefinition`` to ``index_definition``; both peers
    import the old name."""
    sys.modules.setdefault("redis.commands.search.indexDefinition",
                           importlib.import_module("redis.commands.search.index_definition"))


def aidata_wrapper(client, model_dir, reset: bool = True, batch_size: int = 8):
    """``mbari_aidata``'s ``ViTWrapper`` on ``client`` (``reset`` creates fastapi-vss's index)."""
    _index_definition_shim()
    from mbari_aidata.predictors.process_vits import ViTWrapper

    return ViTWrapper(client, device="cpu", model_name=str(model_dir), reset=reset, batch_size=batch_size)


def fastapi_vss_predictor(client, model_dir, batch_size: int = 8):
    """fastapi-vss's own ``ViTWrapper`` (its KNN query and its ``doc:label:id`` parsing)."""
    _index_definition_shim()
    log = types.ModuleType("app.logger")
    log.err = log.info = log.debug = lambda *a, **k: None
    sys.modules.setdefault("app", types.ModuleType("app"))
    sys.modules["app.logger"] = log
    sys.modules.setdefault("app.predictors", types.ModuleType("app.predictors"))
    for name in ("vector_similarity", "process_vits"):
        full = f"app.predictors.{name}"
        if full not in sys.modules:
            module = types.ModuleType(full)
            path = HERE / f"{name}.py"
            exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
            sys.modules[full] = module
    return sys.modules["app.predictors.process_vits"].ViTWrapper(
        client, device="cpu", model_name=str(model_dir), batch_size=batch_size)
