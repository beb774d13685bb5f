"""The allowed directions between the app's layers and vss_core's packages, read from the imports (ast).

app.py -> pages -> ui -> vss_core, api.py -> vss_core; inside vss_core each package may import only the
packages listed in ALLOWED (docs/architecture.md draws the same table).  No module reaches for another
module's or library's private names, except vss_core/compat.py, the one place that says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASE = {"errors", "timeutil", "chunks"}
ALLOWED = {  # package -> the vss_core packages it may import (besides itself)
    "errors": set(), "timeutil": set(), "chunks": set(), "compat": set(),
    "files": BASE,
    "config": BASE | {"files"},
    "fastapi_vss": BASE,
    "redis": BASE | {"config", "files"},
    "embed": BASE | {"config", "files"},
    "labeling": BASE | {"config", "files", "redis", "fastapi_vss"},
    "mining": BASE | {"config", "files", "redis"},
    "jobs": BASE | {"config", "files", "redis", "embed", "labeling", "mining", "compat"},
    "rest": BASE | {"config", "files", "redis", "embed", "labeling", "fastapi_vss", "jobs"},
    "cli": BASE | {"config", "files", "redis", "embed", "labeling", "mining", "fastapi_vss", "jobs"},
    "__init__": set(), "__main__": {"cli"},
    "rq_worker": {"jobs"},
}
APP_LAYERS = {"streamlit", "ui", "pages", "app", "api"}
LAYERS = {  # top-level code -> what of the app it must not import
    "vss_core": APP_LAYERS,
    "ui": {"pages", "app", "api"},
    "pages": {"app", "api"},
    "api.py": {"streamlit", "ui", "pages", "app"},
}
PRIVATE_OK = {"vss_core/compat.py"}


def imports(source: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``source``; names is empty for ``import x``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def private_uses(source: str) -> list[str]:
    """Private names imported from other modules, or read off an imported module (``mod._x``)."""
    found, modules = [], set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules |= {a.asname or a.name for a in node.names}
            found += [f"{node.module}.{a.name}" for a in node.names if _private(a.name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                found.append(ast.unparse(node))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def package_of(path: Path) -> str:
    return path.relative_to(REPO / "vss_core").with_suffix("").parts[0]


def package_violations(package: str, source: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    return [module for module, _ in imports(source)
            if module.startswith("vss_core.") and module.split(".")[1] not in allowed]


def layer_violations(layer: str, source: str) -> list[str]:
    return [module for module, _ in imports(source) if module.split(".")[0] in LAYERS[layer]]


def engine_files() -> list[Path]:
    return sorted((REPO / "vss_core").rglob("*.py"))


def app_files() -> list[tuple[str, Path]]:
    files = [("ui", p) for p in sorted((REPO / "ui").rglob("*.py"))]
    files += [("pages", p) for p in sorted((REPO / "pages").glob("*.py"))]
    return files + [("api.py", REPO / "api.py")]


def test_every_vss_core_module_belongs_to_a_package_with_rules():
    assert {package_of(p) for p in engine_files()} <= set(ALLOWED)


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_vss_core_imports_only_what_its_package_may(path):
    source = path.read_text()
    assert package_violations(package_of(path), source) == []
    assert layer_violations("vss_core", source) == []


@pytest.mark.parametrize("layer,path", app_files(), ids=lambda x: str(x.relative_to(REPO)) if isinstance(x, Path) else x)
def test_app_layers_import_only_downwards(layer, path):
    assert layer_violations(layer, path.read_text()) == []


@pytest.mark.parametrize("path", engine_files() + [p for _, p in app_files()] + [REPO / "app.py"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_names_of_other_modules_or_libraries(path):
    if str(path.relative_to(REPO)) in PRIVATE_OK:
        return
    assert private_uses(path.read_text()) == []


def test_each_package_says_in_one_line_what_it_owns_and_does_nothing_else():
    for init in sorted((REPO / "vss_core").glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        assert doc and "\n" not in doc.strip(), init
        assert len(tree.body) == 1, f"{init} should hold only its docstring"


def test_the_checks_catch_what_they_forbid():
    assert package_violations("redis", "from vss_core.labeling.search import vote") == ["vss_core.labeling.search"]
    assert package_violations("embed", "import vss_core.redis.server") == ["vss_core.redis.server"]
    assert package_violations("labeling", "from vss_core.redis.pool import PoolStore") == []
    assert layer_violations("vss_core", "import streamlit as st") == ["streamlit"]
    assert layer_violations("ui", "from pages import review") == ["pages"]
    assert layer_violations("api.py", "from ui.resources import client_for") == ["ui.resources"]
    assert private_uses("from redis.client import _private") == ["redis.client._private"]
    assert private_uses("import rq.worker\nrq.worker._x()") == ["rq.worker._x"]
    assert private_uses("import rq\nrq._x()") == ["rq._x"]
    assert private_uses("self._x = 1\nobj.__class__") == []
