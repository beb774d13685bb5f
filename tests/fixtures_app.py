"""Fixtures for the app tests (AppTest and browser): a config folder, data roots, images.

``app_setup`` (session) writes a CONFIG_PATH folder of project YAML files using the
tiny ViT from ``tests.fixtures_models``:

- ``alpha``, ``beta``, ``gamma``: usable projects (embedded Redis under VSS_DATA_DIR),
  data roots = ``roots/``;
- ``nomodel``: valid YAML whose model folder does not exist (fails when opened);
- ``offline``: an external Redis on a closed loopback port (unreachable);
- ``broken.yaml``: not valid YAML (listed as a config error).

``roots/`` holds ``exemplars/<label>/*`` (18 images), ``queries/`` (6 images),
``many/<label>/*`` (more images, for slow loads), and ``escape`` - a symlink to a
folder outside the roots.  ``app_env`` sets the environment for in-process AppTest.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fixtures_models import LABELS, label_image

USABLE = ("alpha", "beta", "gamma", "review")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc) -> None:
    """Stop a server process the tests started: SIGTERM, then SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _write_images(folder: Path, n_per_label: int, seed0: int) -> None:
    for k, label in enumerate(sorted(LABELS)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_label):
            label_image(label, seed=seed0 + 100 * k + i).save(folder / label / f"{label}_{i}.jpg", quality=88)


@pytest.fixture(scope="session")
def app_setup(tmp_path_factory, tiny_vit_dir, image_folder):
    base = tmp_path_factory.mktemp("app")
    roots = base / "roots"
    shutil.copytree(image_folder, roots / "exemplars")
    queries = roots / "queries"
    queries.mkdir()
    for k, label in enumerate(sorted(LABELS)):
        for i in range(2):
            label_image(label, seed=5000 + 10 * k + i).save(queries / f"query_{label}_{i}.jpg", quality=90)
    (queries / "readme.txt").write_text("not an image")
    _write_images(roots / "many", 40, seed0=7000)
    outside = base / "outside"
    _write_images(outside, 1, seed0=9000)
    (roots / "escape").symlink_to(outside, target_is_directory=True)
    config = base / "config"
    config.mkdir()
    for name in USABLE:
        (config / f"{name}.yaml").write_text(
            f"vss:\n  project: {name}\n  model: {tiny_vit_dir}\n  device: cpu\n"
            f"  data_roots:\n    - {roots}\n")
    (config / "nomodel.yaml").write_text(
        f"vss:\n  project: nomodel\n  model: {base / 'no_such_model'}\n  data_roots: [{roots}]\n")
    (config / "offline.yaml").write_text(
        f"redis:\n  host: 127.0.0.1\n  port: {free_port()}\n"
        f"vss:\n  project: offline\n  model: {tiny_vit_dir}\n  device: cpu\n  data_roots: [{roots}]\n")
    (config / "broken.yaml").write_text("vss:\n  project: [unclosed\n")
    data = base / "data"
    data.mkdir()
    env = {"CONFIG_PATH": str(config), "VSS_DATA_DIR": str(data), "BATCH_SIZE": "8",
           "REDIS_PASSWD": "s3cret-test-password"}
    setup = SimpleNamespace(base=base, roots=roots, exemplars=roots / "exemplars", queries=queries,
                            many=roots / "many", outside=outside, config=config, data=data, env=env,
                            model=Path(tiny_vit_dir))
    yield setup
    from vss_core.redis.server import embedded_server

    for name in USABLE:
        server = embedded_server(data / name)
        if server.running:
            server.stop()


@pytest.fixture
def app_env(app_setup, monkeypatch):
    """Environment for in-process AppTest runs of app.py."""
    for key, value in app_setup.env.items():
        monkeypatch.setenv(key, value)
    return app_setup
