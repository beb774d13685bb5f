"""Faults with real processes around the labeling loop: the embedded Redis SIGKILLed in the middle of a
prediction job and of a mining job, and the process that ran a prediction job killed and the job
resumed from another one.  Resuming finishes with every image stored exactly once and no review
decision made before the kill is lost."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fixtures_models import LABELS, label_image
from vss_core.redis.pool import PoolFilter

REPO = Path(__file__).resolve().parent.parent
N_IMAGES = 1500


@pytest.fixture
def world(tmp_path, tiny_vit_dir, image_folder, monkeypatch):
    """A project on its own embedded server with exemplars, 20 predicted images, 3 decisions made."""
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import Change, open_decisions
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.predict import collect_images, predict_paths
    from vss_core.redis.server import embedded_server

    images = tmp_path / "images"
    for i in range(N_IMAGES):
        label = sorted(LABELS)[i % 3]
        (images / label).mkdir(parents=True, exist_ok=True)
        label_image(label, seed=90_000 + i).save(images / label / f"{label}_{i:04d}.jpg", quality=85)
    config = tmp_path / "config"
    config.mkdir()
    (config / "f.yaml").write_text(f"vss:\n  project: f\n  model: {tiny_vit_dir}\n  device: cpu\n"
                                   f"  data_roots: [{tmp_path}]\n")
    env = {**os.environ, "CONFIG_PATH": str(config), "VSS_DATA_DIR": str(tmp_path / "data"), "BATCH_SIZE": "1",
           "HF_HUB_OFFLINE": "1"}
    for name in ("CONFIG_PATH", "VSS_DATA_DIR"):
        monkeypatch.setenv(name, env[name])
    project = load_projects(config).get("f")
    embedder = Embedder(str(tiny_vit_dir), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(image_folder), embedder, d.exemplars)
    first = collect_images(images)[:20]
    predict_paths(first, embedder, d.exemplars, d.pool)
    items = d.pool.page(limit=3)[1]
    d.apply([Change(i.id, "accepted", "kept label", i.version) for i in items], "ana")
    yield project, embedder, d, images, env, [i.id for i in items]
    embedded_server(tmp_path / "data" / "f").stop()


def _redis_pid(project) -> int:
    return int((project.data_dir / "redis.pid").read_text().strip())


def _wait_pool(d, at_least: int, proc, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while d.pool.info().count < at_least:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "exited"
        assert time.monotonic() < end, "the job did not get far enough"
        time.sleep(0.05)


def _decisions_intact(d, ids) -> None:
    items = d.pool.get(ids)
    assert [(i.status, i.label, i.annotator) for i in items] == [("corrected", "kept label", "ana")] * 3
    assert d.exemplars.label_counts()["kept label"] == 3
    assert len(d.history(ids[0])) == 1


def test_redis_killed_mid_prediction_then_resumed(world):
    from vss_core.labeling.decisions import open_decisions

    project, embedder, d, images, env, decided = world
    proc = subprocess.Popen([sys.executable, "-m", "vss_core", "predict", "f", str(images)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_pool(d, 100, proc)
    os.kill(_redis_pid(project), signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    # it rides through: its next command restarts the embedded server from its AOF under the job
    assert proc.returncode == 0, out[-2000:]
    assert f"predicted {N_IMAGES - 20}, skipped 20 (already in the pool), failed 0" in out, out[-2000:]
    d2 = open_decisions(project, embedder.dim)
    assert d2.pool.info().count == N_IMAGES  # every image once: ids come from content
    assert len(d2.pool.ids(PoolFilter())) == N_IMAGES
    _decisions_intact(d2, decided)


def test_redis_killed_mid_mining_then_rerun(world):
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.predict import collect_images, predict_paths
    from vss_core.mining import runs as mining_jobs

    project, embedder, d, images, env, decided = world
    predict_paths(collect_images(images), embedder, d.exemplars, d.pool)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from vss_core.config.projects import load_projects
        from vss_core.labeling.decisions import open_decisions
        from vss_core.mining import runs as mining_jobs
        from vss_core.redis import search_index
        mining_jobs.CHUNK = 5
        class Progress:
            def set_total(self, total, *args, **kwargs): pass
            def advance(self, n=1, *args, **kwargs): print("chunk", flush=True)
        d = open_decisions(load_projects().get("f"), {embedder.dim})
        print("scored", mining_jobs.score_anomaly(d, "", 10, progress=Progress()), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    key = d.layout.scores_key(mining_jobs.ANOMALY)
    with selectors.DefaultSelector() as output:  # the first of its 300 chunks is scored
        output.register(proc.stdout, selectors.EVENT_READ)
        assert output.select(60) and proc.stdout.readline() == "chunk\n"
    os.kill(_redis_pid(project), signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    # it rides through: its next command restarts the embedded server from its AOF
    assert proc.returncode == 0 and out.splitlines()[-1] == f"scored {N_IMAGES}", out[-2000:]
    d2 = open_decisions(project, embedder.dim)
    assert mining_jobs.score_anomaly(d2, "", 10) == N_IMAGES
    assert d2.client.zcard(key) == N_IMAGES
    _decisions_intact(d2, decided)


def test_job_owner_killed_mid_prediction_resumes_from_another_process(world):
    from vss_core.jobs import board as jobboard
    from vss_core.jobs.registry import JobRegistry
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.predict import predict_job, threshold_of
    from vss_core.redis.server import connect

    project, embedder, d, images, env, decided = world
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from vss_core.config.projects import load_projects
        from vss_core.labeling.decisions import open_decisions
        from vss_core.embed.embedder import Embedder
        from vss_core.jobs.registry import JobRegistry
        from vss_core.labeling.predict import predict_job
        from vss_core.redis.server import connect
        project = load_projects().get("f")
        embedder = Embedder(project.model, device="cpu", batch_size=1)
        d = open_decisions(project, embedder.dim)
        registry = JobRegistry(boards=lambda name: connect(project))
        work = predict_job("folder", {str(images)!r}, project.data_roots, embedder, d.exemplars, d.pool,
                           top_n=5, threshold=0.8)
        registry.start("predict", work, project="f", source="folder", path={str(images)!r}, top_n=5)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    _wait_pool(d, 100, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    registry = JobRegistry(boards=lambda name: connect(project))
    end = time.monotonic() + jobboard.STALE_S + 15
    while (dead := registry.jobs("f", kind="predict")[0]).state != "interrupted":  # no heartbeat for STALE_S
        assert time.monotonic() < end, dead.state
        time.sleep(0.2)
    assert dead.meta["path"] == str(images)
    work = predict_job(dead.meta["source"], dead.meta["path"], project.data_roots, embedder, d.exemplars, d.pool,
                       top_n=int(dead.meta["top_n"]), threshold=threshold_of(project))
    from vss_core.errors import JobError

    while True:  # the dead owner's lock expires with its heartbeat
        try:
            job = registry.start("predict", work, project="f", **dict(dead.meta))
            break
        except JobError:
            assert time.monotonic() < end
            time.sleep(0.2)
    report = registry.wait(job, 300).result
    assert report.skipped >= 100 and report.predicted + report.skipped == N_IMAGES and not report.failed
    d2 = open_decisions(project, embedder.dim)
    assert d2.pool.info().count == N_IMAGES
    _decisions_intact(d2, decided)


def test_two_loads_of_one_folder_at_once_report_what_each_wrote(world, image_folder):
    _, _, d, _, env, _ = world
    d.exemplars.client.delete(*[e.key for label in d.exemplars.label_counts()
                                for e in d.exemplars.exemplars(label, limit=100)])
    runs = [subprocess.Popen([sys.executable, "-m", "vss_core", "load", "f", str(image_folder)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [run.communicate(timeout=120)[0] for run in runs]
    loaded = [int(out.split("loaded ")[1].split(",")[0]) for out in outs]
    assert sum(loaded) == 18 and sum(d.exemplars.label_counts().values()) == 18, outs


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_during_prediction_and_decisions_loses_nothing(small_disk, tiny_vit_dir, image_folder, tmp_path):
    from tests.fixtures_redis import make_project
    from vss_core.embed.embedder import Embedder
    from vss_core.errors import VSSError
    from vss_core.labeling.decisions import Change, open_decisions
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.predict import collect_images, predict_paths
    from vss_core.redis.server import embedded_server

    images = tmp_path / "queries"
    images.mkdir()
    for i in range(30):
        label_image(sorted(LABELS)[i % 3], seed=70_000 + i).save(images / f"q{i:02d}.jpg")
    project = make_project(small_disk / "p", model=str(tiny_vit_dir))
    embedder = Embedder(str(tiny_vit_dir), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    try:
        load_items(collect_folder(image_folder), embedder, d.exemplars)
        predict_paths(collect_images(images)[:10], embedder, d.exemplars, d.pool)
        first = d.pool.page(limit=1)[1][0]
        d.pool.sync()
        filler = small_disk / "filler"
        with open(filler, "wb") as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        with pytest.raises(VSSError) as failed:
            predict_paths(collect_images(images), embedder, d.exemplars, d.pool)
        assert "No space left" in str(failed.value), failed.value
        with pytest.raises(VSSError, match="nothing was changed"):
            d.apply([Change(first.id, "accepted", None, first.version)], "ana")
        assert d.pool.get([first.id])[0].status == "predicted" and d.history(first.id) == []
        filler.unlink()
        end = time.monotonic() + 20
        while True:  # Redis retries its AOF write once there is room again
            try:
                d.apply([Change(first.id, "accepted", None, first.version)], "ana")
                break
            except VSSError:
                assert time.monotonic() < end, "Redis did not accept writes after space was freed"
                time.sleep(0.5)
        assert predict_paths(collect_images(images), embedder, d.exemplars, d.pool).failed == []
        d.pool.sync()
        embedded_server(small_disk / "p").stop()
        d2 = open_decisions(project, embedder.dim)
        assert d2.pool.info().count == 30
        item = d2.pool.get([first.id])[0]
        assert (item.status, item.annotator) == ("accepted", "ana") and len(d2.history(first.id)) == 1
    finally:
        embedded_server(small_disk / "p").stop()
