"""vss_core.embed.model_cache: a compiled copy of the model, so that a cold process starts without transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures_models import encode, natural_image
from vss_core.embed import model_cache
from vss_core.embed.embedder import Embedder, for_project

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys
from vss_core.embed.embedder import Embedder
model, cache, *paths = sys.argv[1:]
embedder = Embedder(model, device="cpu", batch_size=4, cache_dir=cache)
result = embedder.embed(paths)
print(json.dumps({"cached": embedder._model is None, "transformers": "transformers" in sys.modules,
                  "dim": embedder.dim, "vectors": result.vectors.tolist(), "ok": result.ok}))
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache_photos")
    paths = []
    for seed in range(5):
        paths.append(folder / f"p{seed}.jpg")
        paths[-1].write_bytes(encode(natural_image(seed, (320, 240)), quality=90))
    return [str(p) for p in paths]


def _child(model, cache, photos) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-c", CHILD, str(model), str(cache), *photos], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_next_process_starts_from_the_cache_without_transformers(tiny_vit_dir, tmp_path, photos):
    first = _child(tiny_vit_dir, tmp_path / "cache", photos)
    second = _child(tiny_vit_dir, tmp_path / "cache", photos)
    assert (first["cached"], first["transformers"]) == (False, True)
    assert (second["cached"], second["transformers"]) == (True, False)
    assert second["dim"] == first["dim"] and second["ok"] == first["ok"] == list(range(len(photos)))
    np.testing.assert_allclose(second["vectors"], first["vectors"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["tiny_vit_dir", "tiny_dinov2_dir"])
def test_cached_and_loaded_models_embed_alike(model, request, tmp_path, photos):
    model_dir = request.getfixturevalue(model)
    plain = Embedder(model_dir, device="cpu")
    built = Embedder(model_dir, device="cpu", cache_dir=tmp_path)
    cached = Embedder(model_dir, device="cpu", cache_dir=tmp_path)
    assert plain._model is not None and built._model is not None and cached._model is None
    assert cached.preprocessor.spec == plain.preprocessor.spec and cached.dim == plain.dim
    want = plain.embed(photos).vectors
    np.testing.assert_allclose(cached.embed(photos).vectors, want, rtol=1e-5, atol=1e-6)
    assert type(cached.processor).__name__ == type(plain.processor).__name__  # loaded when asked for


def test_a_changed_model_folder_misses_and_builds_again(tiny_vit_dir, tmp_path):
    model_dir = shutil.copytree(tiny_vit_dir, tmp_path / "model")
    Embedder(model_dir, device="cpu", cache_dir=tmp_path / "cache")
    assert Embedder(model_dir, device="cpu", cache_dir=tmp_path / "cache")._model is None
    before = model_cache.model_key(str(model_dir))
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "vss_note": "edited"}))
    assert model_cache.model_key(str(model_dir)) != before
    assert Embedder(model_dir, device="cpu", cache_dir=tmp_path / "cache")._model is not None
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [model_cache.model_key(str(model_dir))]  # replaced
    assert Embedder(model_dir, device="cpu", cache_dir=tmp_path / "cache")._model is None


def test_a_damaged_cache_is_built_again(tiny_vit_dir, tmp_path, photos):
    Embedder(tiny_vit_dir, device="cpu", cache_dir=tmp_path)
    (entry,) = tmp_path.iterdir()
    assert {p.name for p in entry.iterdir()} == {"model.pt", "info.json"}
    assert all(p.stat().st_mode & 0o077 == 0 for p in entry.iterdir())  # private to the owner
    (entry / "model.pt").write_bytes(b"not a model")
    rebuilt = Embedder(tiny_vit_dir, device="cpu", cache_dir=tmp_path)
    assert rebuilt._model is not None and len(rebuilt.embed(photos).ok) == len(photos)
    assert Embedder(tiny_vit_dir, device="cpu", cache_dir=tmp_path)._model is None


def test_only_the_fast_path_on_cpu_is_cached(tiny_vit_dir, tmp_path):
    Embedder(tiny_vit_dir, device="cpu", fast=False, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_projects_use_the_data_dirs_cache_unless_turned_off(tiny_vit_dir, tmp_path, monkeypatch):
    from vss_core.config.projects import load_projects

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "p.yml").write_text(f"vss:\n  project: p\n  model: {tiny_vit_dir}\n  device: cpu\n")
    project = load_projects(tmp_path / "config").projects["p"]
    monkeypatch.setenv("VSS_DATA_DIR", str(tmp_path / "data"))
    for_project(project)
    assert for_project(project)._model is None
    cache = tmp_path / "data" / model_cache.FOLDER
    assert len(list(cache.iterdir())) == 1 and cache.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("VSS_MODEL_CACHE", "0")
    assert model_cache.default_dir() is None and for_project(project)._model is not None
