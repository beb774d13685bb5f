"""Symlinks are checked when a file is opened, not only when its name is: a file inside the data roots
that is (or becomes) a symlink to a file outside them is never read, embedded, shown or written out,
on every path that reads a user-named file (search folder, load, predict, thumbnails, zip)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fixtures_models import label_image
from tests.test_hostile_markup import hostile  # noqa: F401  (fixture)
from vss_core.errors import FileRefused, VSSError
from vss_core.files.paths import OUTSIDE_ROOTS, CheckedPath, checked_path, open_checked, read_regular_file


def swap_for_link(path: Path, target: Path) -> None:
    """Atomically replace ``path`` by a symlink to ``target`` (what an attacker with write access does)."""
    link = path.with_name(path.name + ".lnk")
    link.symlink_to(target)
    os.replace(link, path)


@pytest.fixture
def world(tmp_path):
    """``root`` (the data root) with ``images/<label>/*.jpg``; ``outside`` with a secret image and text."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for label in ("circles", "squares"):
        (root / "images" / label).mkdir(parents=True)
        for i in range(3):
            label_image(label, seed=100 * len(label) + i).save(root / "images" / label / f"{label}_{i}.jpg")
    outside.mkdir()
    label_image("stripes", seed=999).save(outside / "secret.jpg")
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return SimpleNamespace(root=root, outside=outside, images=root / "images")


class SwappingEmbedder:
    """The real embedder; just before it reads, ``victim`` is swapped for a symlink to ``target``."""

    def __init__(self, embedder, victim: Path, target: Path):
        self._embedder, self.victim, self.target = embedder, victim, target
        self.model_name, self.dim = embedder.model_name, embedder.dim

    def iter_embed(self, sources):
        if not self.victim.is_symlink():
            swap_for_link(self.victim, self.target)
        yield from self._embedder.iter_embed(sources)


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    from vss_core.embed.embedder import Embedder

    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


# -- the one check: paths.open_checked / CheckedPath ---------------------------------------------------

def test_a_file_swapped_for_a_symlink_after_its_check_is_not_read(world):
    victim = world.images / "circles" / "circles_0.jpg"
    checked = checked_path(victim, [world.root])
    assert read_regular_file(checked, 10**7) == victim.read_bytes()
    swap_for_link(victim, world.outside / "passwd")
    with pytest.raises(FileRefused, match="outside the project's data roots"):
        read_regular_file(checked, 10**7)
    with pytest.raises(FileRefused, match="outside the project's data roots"):
        with open_checked(victim, [world.root], 10**7):
            pass
    assert b"root:x" in read_regular_file(victim, 10**7)  # a plain read follows it: only the check stops it


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_read(world):
    (world.outside / "circles").mkdir()
    (world.outside / "circles" / "circles_1.jpg").write_bytes(b"outside bytes")
    checked = checked_path(world.images / "circles" / "circles_1.jpg", [world.root])
    shutil.rmtree(world.images / "circles")
    (world.images / "circles").symlink_to(world.outside / "circles", target_is_directory=True)
    with pytest.raises(FileRefused, match="outside the project's data roots"):
        read_regular_file(checked, 10**7)


def test_symlinks_inside_the_roots_still_work_and_the_binding_survives_pickling(world):
    link = world.root / "alias.jpg"
    link.symlink_to(world.images / "squares" / "squares_0.jpg")
    with open_checked(link, [world.root], 10**7) as handle:
        assert handle.read() == (world.images / "squares" / "squares_0.jpg").read_bytes()
    checked = pickle.loads(pickle.dumps(checked_path(link, [world.root])))  # as a decode process gets it
    assert isinstance(checked, CheckedPath) and checked.roots == (world.root.resolve(),)
    swap_for_link(world.images / "squares" / "squares_0.jpg", world.outside / "secret.jpg")
    with pytest.raises(FileRefused, match="outside"):
        read_regular_file(checked, 10**7)


def test_decode_processes_check_again_when_they_open(world, tiny_vit_dir):
    from vss_core.embed.embedder import Embedder

    good = checked_path(world.images / "squares" / "squares_1.jpg", [world.root])
    victim = checked_path(world.images / "squares" / "squares_2.jpg", [world.root])
    swap_for_link(victim, world.outside / "secret.jpg")
    embedder = Embedder(str(tiny_vit_dir), device="cpu", batch_size=4, decode="processes")
    result = embedder.embed([good, victim])
    assert result.ok == [0]
    assert [(e.index, e.reason) for e in result.errors] == [(1, OUTSIDE_ROOTS)]


# -- search: the folder typed on the Search page ----------------------------------------------------------

def test_search_folder_input_skips_a_symlink_leading_out_of_the_roots(world):
    from ui import inputs

    folder = world.images / "circles"
    (folder / "innocent.jpg").symlink_to(world.outside / "secret.jpg")
    (folder / "passwd").symlink_to(world.outside / "passwd")
    queries = inputs.Sources()
    inputs.add_server_path(queries, str(folder), SimpleNamespace(data_roots=(world.root,)))
    assert sorted(queries.names) == ["circles_0.jpg", "circles_1.jpg", "circles_2.jpg"]
    assert all(isinstance(s, CheckedPath) for s in queries.sources)
    assert dict(queries.problems) == {"innocent.jpg": "skipped: it leads outside the project's data roots",
                                      "passwd": "skipped: it leads outside the project's data roots"}


def test_search_page_neither_reads_shows_nor_writes_a_file_outside_the_roots(app_env, tmp_path):
    from tests.test_app import SEARCH, open_app, texts

    folder = app_env.roots / f"hostile_{tmp_path.name}"
    folder.mkdir()
    try:
        label_image("circles", seed=4242).save(folder / "good.jpg")
        (folder / "leak.jpg").symlink_to(app_env.outside / "circles" / "circles_0.jpg")
        (folder / "passwd.jpg").symlink_to("/etc/passwd")
        at = open_app("alpha", page=SEARCH)
        at.text_input(key="search_path").set_value(str(folder))
        at.button[0].click().run()
        assert not at.exception, at.exception
        shown = texts(at)
        assert "leak.jpg" in shown and "passwd.jpg" in shown and "outside the project" in shown
        saved = Path(shown.split("fastapi-vss JSON saved to `")[1].split("`")[0])
        written = json.loads(saved.read_text())
        assert written["filenames"] == ["good.jpg"]
        assert "leak" not in saved.read_text() and "passwd" not in saved.read_text()
    finally:
        shutil.rmtree(folder)


# -- load and predict: a file swapped while the job runs --------------------------------------------------

def test_load_does_not_embed_a_file_swapped_for_a_symlink_while_it_runs(world, embedder, vector_store):
    from vss_core.labeling.loader import load_job

    vector_store.ensure_index(embedder.dim)
    victim = world.images / "squares" / "squares_1.jpg"
    hostile = SwappingEmbedder(embedder, victim, world.outside / "secret.jpg")
    report = load_job("folder", str(world.images), (world.root,), hostile, vector_store, "ana")(_Progress())
    assert report.loaded == 5
    assert report.failed == [(str(victim), OUTSIDE_ROOTS)]
    sources = {e.source for label in vector_store.label_counts() for e in vector_store.exemplars(label, 0, 100)}
    assert str(victim) not in sources and len(sources) == 5


def test_predict_does_not_embed_a_file_swapped_for_a_symlink_while_it_runs(world, embedder, redis_project,
                                                                           redis_client):
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.predict import predict_job

    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    load_items(collect_folder(world.images), embedder, d.exemplars)
    queries = world.root / "queries"
    queries.mkdir()
    for i in range(3):
        label_image("circles", seed=700 + i).save(queries / f"q{i}.jpg")
    victim = queries / "q1.jpg"
    hostile = SwappingEmbedder(embedder, victim, world.outside / "secret.jpg")
    work = predict_job("folder", str(queries), (world.root,), hostile, d.exemplars, d.pool, top_n=3, threshold=0.5)
    report = work(_Progress())
    assert report.predicted == 2 and report.failed == [(str(victim), OUTSIDE_ROOTS)]
    _, items = d.pool.page(limit=10)
    assert sorted(item.name for item in items) == ["q0.jpg", "q2.jpg"]


class _Progress:
    job_id, cancelled = "job1", False

    def message(self, text):
        pass

    def set_total(self, total):
        pass

    def advance(self, n, errors=()):
        pass


# -- thumbnails and zips -----------------------------------------------------------------------------------

def test_a_thumbnail_is_made_only_of_a_file_under_the_roots(world):
    from ui.thumbs import ThumbCache, placeholder

    cache = ThumbCache()
    link = world.images / "circles" / "leak.jpg"
    link.symlink_to(world.outside / "secret.jpg")
    assert cache.for_path(link, roots=[world.root]) == placeholder("outside data roots")
    assert cache.for_path(world.outside / "secret.jpg", roots=[world.root]) == placeholder("outside data roots")
    good = world.images / "circles" / "circles_2.jpg"
    first = cache.for_path(good, roots=[world.root])
    assert first.startswith(b"\xff\xd8") and first != placeholder("outside data roots")
    swap_for_link(good, world.outside / "secret.jpg")
    assert cache.for_path(good, roots=[world.root]) == placeholder("outside data roots")


def test_a_zip_upload_that_is_a_symlink_to_another_zip_is_not_extracted(world, tmp_path):
    from vss_core.files.archive import extract_zip
    from vss_core.labeling.loader import collected

    elsewhere = world.outside / "private.zip"
    with zipfile.ZipFile(elsewhere, "w") as z:
        z.writestr("secret/a.jpg", (world.outside / "secret.jpg").read_bytes())
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "upload.zip").symlink_to(elsewhere)
    with pytest.raises(VSSError, match="outside"):
        with collected("zip", str(uploads / "upload.zip"), (world.root,)):
            pass
    (uploads / "real.zip").write_bytes(elsewhere.read_bytes())
    checked = checked_path(uploads / "real.zip", [uploads])
    swap_for_link(uploads / "real.zip", elsewhere)
    with pytest.raises(VSSError, match="outside the project's data roots"):
        extract_zip(checked, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_in_the_app_thumbnails_are_checked_against_the_project_s_data_roots_and_uploads(hostile, app_env,
                                                                                         monkeypatch):
    from tests.test_app import open_app
    from ui import thumbs

    seen = []
    original = thumbs.current_roots
    monkeypatch.setattr(thumbs, "current_roots", lambda: seen.append(original()) or seen[-1])
    at = open_app("hostile", page="pages/exemplars.py")
    assert not at.exception and at.get("image")
    assert seen and set(seen) == {(hostile, app_env.data / "hostile" / "uploads")}


def test_an_rq_chunk_binds_its_paths_to_the_roots_the_app_checked(world, embedder, vector_store):
    """Queued RQ chunks carry plain strings: the worker binds each path again, so a file swapped for a
    symlink after the app planned the chunk is refused when the worker opens it."""
    from vss_core.jobs.rq_jobs import roots_of
    from vss_core.jobs.rq_worker import bound_path
    from vss_core.labeling.loader import collected, load_items

    vector_store.ensure_index(embedder.dim)
    with collected("folder", str(world.images), (world.root,)) as (items, refused):
        rows = [(str(i.path), i.label, i.id, roots_of(i.path)) for i in items]
    victim = world.images / "squares" / "squares_1.jpg"
    victim.unlink()
    victim.symlink_to(world.outside / "secret.jpg")
    from vss_core.labeling.loader import Item

    chunk = [Item(bound_path(p, roots), label, given) for p, label, given, *roots in rows]
    report = load_items(chunk, embedder, vector_store)
    assert report.loaded == 5 and [path for path, _ in report.failed] == [str(victim)]
    assert bound_path("/x/y.jpg", []) == Path("/x/y.jpg")  # a job queued before this change still runs
