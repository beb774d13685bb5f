import shutil
import zipfile

import numpy as np
import pytest

from vss_core.embed.embedder import Embedder
from vss_core.errors import InputError
from vss_core.labeling.loader import Item, collect_csv, collect_folder, collect_zip, content_id, load_items
from vss_core.labeling.search import search


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


class Recorder:
    def __init__(self):
        self.total = None
        self.done = 0
        self.errors = []

    def set_total(self, total):
        self.total = total

    def advance(self, n, errors=()):
        self.done += n
        self.errors.extend(errors)


@pytest.fixture
def store(vector_store, embedder):
    vector_store.ensure_index(embedder.dim)
    return vector_store


@pytest.fixture
def folder_with_bad_files(tmp_path, image_folder):
    root = tmp_path / "exemplars"
    shutil.copytree(image_folder, root)
    (root / "circles" / "notes.txt").write_text("not an image")
    (root / "squares" / "empty.jpg").write_bytes(b"")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.jpg").write_bytes(b"x")
    return root


def test_folder_load_counts_labels_and_lists_failures(store, embedder, folder_with_bad_files):
    items = collect_folder(folder_with_bad_files)
    assert {i.label for i in items} == {"circles", "squares", "stripes"}
    progress = Recorder()
    report = load_items(items, embedder, store, added_by="ana", progress=progress)
    assert (report.loaded, report.skipped, len(report.failed)) == (18, 0, 2)
    failed = dict(report.failed)
    assert set(failed) == {str(folder_with_bad_files / "circles" / "notes.txt"),
                           str(folder_with_bad_files / "squares" / "empty.jpg")}
    assert progress.total == 20 and progress.done == 20 and len(progress.errors) == 2
    assert store.label_counts() == {"circles": 6, "squares": 6, "stripes": 6}
    exemplar = store.exemplars("circles", limit=1)[0]
    assert exemplar.added_by == "ana" and exemplar.source.startswith(str(folder_with_bad_files))


def test_rerun_skips_what_is_loaded_and_resume_adds_no_duplicates(store, embedder, image_folder):
    items = collect_folder(image_folder)
    first = load_items(items[:7], embedder, store)
    assert first.loaded == 7
    rerun = load_items(items, embedder, store)
    assert (rerun.loaded, rerun.skipped, rerun.failed) == (11, 7, [])
    assert store.info().count == 18
    again = load_items(items, embedder, store)
    assert (again.loaded, again.skipped) == (0, 18)


def test_cancel_stops_between_batches(store, embedder, image_folder):
    items = collect_folder(image_folder)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    report = load_items(items, embedder, store, cancel=cancel)
    assert report.cancelled and 0 < report.loaded < len(items)
    assert store.info().count == report.loaded


def test_loaded_exemplars_find_their_own_label(store, embedder, image_folder):
    load_items(collect_folder(image_folder), embedder, store)
    queries = sorted(image_folder.glob("*/*_0.jpg"))
    results = search(embedder, store, queries, top_n=3)
    for query, result in zip(queries, results.results):
        assert result.neighbors[0].score == pytest.approx(1.0, abs=1e-3)
        assert result.majority.label == query.parent.name


def test_csv_with_header_ids_and_relative_paths(tmp_path, store, embedder, image_folder):
    shutil.copytree(image_folder, tmp_path / "imgs")
    (tmp_path / "list.csv").write_text(
        "path,label,id\nimgs/circles/circles_0.jpg,round thing,42\n"
        f"{tmp_path}/imgs/squares/squares_1.jpg,label:with:colons,\n\n")
    items = collect_csv(tmp_path / "list.csv")
    assert items[0] == Item(tmp_path / "imgs/circles/circles_0.jpg", "round thing", "42")
    report = load_items(items, embedder, store)
    assert report.loaded == 2
    assert store.exists(["doc:round thing:42"]) == [True]
    square_id = content_id((tmp_path / "imgs/squares/squares_1.jpg").read_bytes())
    assert store.exists([f"doc:label:with:colons:{square_id}"]) == [True]
    assert store.label_counts() == {"round thing": 1, "label:with:colons": 1}


@pytest.mark.parametrize("text, words", [
    ("path,label\nonly-a-path\n", "line 2: expected path,label"),
    ("path,label\n", "no rows"),
])
def test_bad_csv_names_file_and_line(tmp_path, text, words):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(InputError, match=words) as info:
        collect_csv(tmp_path / "bad.csv")
    assert "bad.csv" in str(info.value)


def test_missing_file_in_csv_fails_alone(tmp_path, store, embedder, image_folder):
    (tmp_path / "l.csv").write_text(f"{image_folder}/circles/circles_0.jpg,circle\n{tmp_path}/gone.jpg,circle\n")
    report = load_items(collect_csv(tmp_path / "l.csv"), embedder, store)
    assert report.loaded == 1
    assert report.failed[0][0] == str(tmp_path / "gone.jpg") and "cannot read" in report.failed[0][1]


def test_zip_with_top_folder_is_collected(tmp_path, image_folder):
    archive = tmp_path / "ex.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in image_folder.rglob("*.*"):
            z.write(path, f"exemplars/{path.relative_to(image_folder)}")
    items = collect_zip(archive, tmp_path / "out")
    assert len(items) == 18 and {i.label for i in items} == {"circles", "squares", "stripes"}


def test_zip_that_escapes_or_is_not_a_zip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escape.jpg", b"x")
    with pytest.raises(InputError, match="outside the archive"):
        collect_zip(archive, tmp_path / "out")
    (tmp_path / "fake.zip").write_text("nope")
    with pytest.raises(InputError, match="not a readable zip"):
        collect_zip(tmp_path / "fake.zip", tmp_path / "out2")


def test_folder_without_label_subfolders_is_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="no files found in label sub-folders"):
        collect_folder(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        collect_folder(tmp_path / "missing")


def test_content_id_is_stable():
    assert content_id(b"abc") == content_id(b"abc") != content_id(b"abd")
    assert len(content_id(np.zeros(3).tobytes())) == 20


def test_load_job_in_registry_refuses_files_outside_roots(tmp_path, store, embedder, image_folder):
    from vss_core.jobs.registry import DONE, JobRegistry
    from vss_core.labeling.loader import load_job

    root = tmp_path / "root"
    shutil.copytree(image_folder, root / "exemplars")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(image_folder / "circles" / "circles_0.jpg", outside / "secret.jpg")
    (root / "exemplars" / "circles" / "link.jpg").symlink_to(outside / "secret.jpg")
    registry = JobRegistry()
    job = registry.start("load", load_job("folder", str(root / "exemplars"), (root,), embedder, store, "ana"),
                         project="p")
    snap = registry.wait(job, 60)
    assert snap.state == DONE and snap.done == snap.total == 19
    assert snap.result.loaded == 18 and len(snap.result.failed) == 1
    assert snap.errors[0][0].endswith("link.jpg") and "outside" in snap.errors[0][1]
    assert store.label_counts() == {"circles": 6, "squares": 6, "stripes": 6}
