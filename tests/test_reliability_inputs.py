"""Hostile and unlucky inputs: odd file names, files that are not files, huge files, bad CSVs.

Every case must end (no hang), fail alone with a reason, and keep the good files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from vss_core.embed.embedder import Embedder
from vss_core.errors import ImageError, InputError
from vss_core.files import images
from vss_core.files.paths import path_text, read_regular_file, text_path
from vss_core.labeling.loader import collect_csv, collect_folder, load_items
from vss_core.labeling.search import search

from .pngs import write_png

BOUND_S = 120  # a bound on the wait, so that a regression fails instead of hanging the suite


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


@pytest.fixture
def store(vector_store, embedder):
    vector_store.ensure_index(embedder.dim)
    return vector_store


def bounded(fn, *args):
    """Run ``fn(*args)`` in a thread; fail (not hang) when it does not finish."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND_S)
    assert not thread.is_alive(), f"{fn.__name__} did not finish: it hangs"
    if "error" in out:
        raise out["error"]
    return out["value"]


def bytes_path(folder: Path, raw: bytes) -> Path:
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + raw))


def test_non_utf8_file_and_label_names_load_and_round_trip_to_exports(tmp_path, store, embedder, image_folder):
    root = tmp_path / "ex"
    shutil.copytree(image_folder, root)
    odd_file = bytes_path(root / "circles", b"caf\xe9.jpg")
    shutil.copy(root / "circles" / "circles_0.jpg", odd_file)
    odd_label = bytes_path(root, b"lab\xff")
    odd_label.mkdir()
    shutil.copy(root / "squares" / "squares_0.jpg", odd_label / "x.jpg")
    (root / "squares" / "squares_0.jpg").unlink()

    report = load_items(collect_folder(root), embedder, store)
    assert report.failed == [] and report.loaded == 19 - 1  # caf\xe9 has the content of circles_0
    assert store.label_counts()["lab\\xff"] == 1

    results = search(embedder, store, [str(odd_label / "x.jpg")], top_n=1)
    source = results.ok[0].neighbors[0].source
    assert os.fsencode(text_path(source)) == os.fsencode(odd_label / "x.jpg")
    assert source in results.to_csv()
    assert text_path(path_text(odd_file)) == odd_file


def test_non_utf8_name_in_a_failure_message_is_printable(tmp_path, store, embedder):
    folder = tmp_path / "ex" / "broken"
    folder.mkdir(parents=True)
    bytes_path(folder, b"bad\xfe.jpg").write_bytes(b"not an image")
    report = load_items(collect_folder(tmp_path / "ex"), embedder, store)
    [(name, reason)] = report.failed
    name.encode("utf-8")  # a CLI or page can print it
    assert text_path(name).exists() and "not an image" in reason


def test_fifo_device_folder_and_missing_rows_of_a_csv_fail_alone(tmp_path, store, embedder, image_folder):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    rows = [f"{image_folder}/circles/circles_0.jpg,circle", f"{tmp_path}/pipe.jpg,circle", "/dev/zero,circle",
            f"{tmp_path}/folder.jpg,circle", f"{tmp_path}/gone.jpg,circle"]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    report = bounded(load_items, collect_csv(tmp_path / "l.csv"), embedder, store)
    assert report.loaded == 1
    reasons = dict(report.failed)
    assert "FIFO" in reasons[f"{tmp_path}/pipe.jpg"]
    assert "character device" in reasons["/dev/zero"]
    assert "folder" in reasons[f"{tmp_path}/folder.jpg"]
    assert "not found" in reasons[f"{tmp_path}/gone.jpg"]


def test_fifo_or_device_given_for_decoding_or_as_the_csv_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for source in (tmp_path / "pipe", "/dev/zero"):
        with pytest.raises(ImageError, match="not a regular file"):
            bounded(images.decode, source)
    with pytest.raises(InputError, match="FIFO"):
        bounded(collect_csv, tmp_path / "pipe")


def test_file_over_the_cap_is_refused_before_reading(tmp_path):
    sparse = tmp_path / "huge.png"
    with open(sparse, "wb") as f:
        f.truncate(images.MAX_FILE_BYTES + 1)
    with pytest.raises(ImageError, match="over the cap"):
        images.decode(sparse)
    with pytest.raises(InputError, match="over the cap"):
        read_regular_file(sparse, 10)


def test_symlink_loop_and_dangling_link_in_a_folder_are_not_followed(tmp_path, store, embedder, image_folder):
    root = tmp_path / "ex"
    shutil.copytree(image_folder, root)
    (root / "circles" / "loop").symlink_to("loop")
    (root / "circles" / "up").symlink_to("..")
    (root / "circles" / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    report = bounded(load_items, bounded(collect_folder, root), embedder, store)
    assert report.loaded == 18 and report.failed == []


def test_folder_that_disappears_during_a_load_fails_per_file(tmp_path, store, embedder, image_folder):
    root = tmp_path / "ex"
    shutil.copytree(image_folder, root)
    items = collect_folder(root)
    shutil.rmtree(root / "stripes")
    report = load_items(items, embedder, store)
    assert report.loaded == 12 and len(report.failed) == 6
    assert all("not found" in reason for _, reason in report.failed)


@pytest.mark.parametrize("content, words", [
    ("p.jpg,a\x00b\n", "line 1: contains a NUL byte"),
    ("p.jpg," + "x" * 200_000 + "\n", "line 1: field larger than field limit"),
    (b"p.jpg,caf\xe9\n", "not UTF-8"),
    ("p.jpg,   \n", "line 1: expected path,label"),
])
def test_hostile_csv_is_refused_with_the_line(tmp_path, content, words):
    csv_file = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        csv_file.write_bytes(content)
    else:
        csv_file.write_text(content)
    with pytest.raises(InputError, match=words) as info:
        collect_csv(csv_file)
    assert "bad.csv" in str(info.value)


def test_whitespace_only_label_folder_fails_its_files_alone(tmp_path, store, embedder, image_folder):
    root = tmp_path / "ex"
    shutil.copytree(image_folder, root)
    (root / "   ").mkdir()
    shutil.copy(root / "circles" / "circles_1.jpg", root / "   " / "c.jpg")
    (root / "circles" / "circles_1.jpg").unlink()
    report = load_items(collect_folder(root), embedder, store)
    assert report.loaded == 17 and len(report.failed) == 1 and "empty label" in report.failed[0][1]


MEASURE = textwrap.dedent("""
    import resource, sys
    from vss_core.files.images import decode
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        image = decode(sys.argv[1])
        print("decoded", image.size, image.mode)
    except Exception as exc:
        print("refused", exc)
    print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
""")


def _decode_in_subprocess(path: Path) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                          timeout=BOUND_S, cwd=Path(__file__).resolve().parent.parent)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stderr
    return lines[0], int(lines[1].split()[1]) * 1024


def test_sixteen_bit_11000_square_png_decodes_within_bounded_memory(tmp_path):
    path = write_png(tmp_path / "big16.png", 11000, 11000, bit_depth=16, color_type=0)
    assert path.stat().st_size < 1_000_000
    outcome, peak = _decode_in_subprocess(path)
    assert outcome == "decoded (11000, 11000) RGB"
    assert peak <= images.MAX_DECODE_BYTES  # it took 3.3 GB before decoding memory was bounded


def test_image_that_needs_too_much_memory_is_refused_before_allocating(tmp_path):
    path = write_png(tmp_path / "big16rgba.png", 11000, 11000, bit_depth=16, color_type=6)
    outcome, peak = _decode_in_subprocess(path)
    assert outcome.startswith("refused") and "MiB to decode" in outcome
    assert peak < 256 * 1024**2  # its pixels alone are 968 MB


def test_csv_over_its_size_cap_is_refused_before_reading(tmp_path):
    from vss_core.labeling.loader import MAX_CSV_BYTES

    with open(tmp_path / "huge.csv", "wb") as f:
        f.truncate(MAX_CSV_BYTES + 1)
    with pytest.raises(InputError, match="over the cap"):
        bounded(collect_csv, tmp_path / "huge.csv")


def test_server_path_that_is_a_fifo_is_refused_with_a_reason(tmp_path):
    from types import SimpleNamespace

    from ui.inputs import Sources, add_server_path
    from vss_core.errors import VSSError

    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "other.jpg")
    project = SimpleNamespace(data_roots=(tmp_path,))
    with pytest.raises(VSSError, match="neither a regular file nor a folder"):
        bounded(add_server_path, Sources(), "pipe.jpg", project)
    (tmp_path / "ok.jpg").write_bytes(b"x")
    out = Sources()
    bounded(add_server_path, out, str(tmp_path), project)
    assert out.names == ["ok.jpg"]  # FIFOs in a folder are not offered as images


def test_concurrent_decodes_wait_for_their_share_of_the_memory_budget():
    budget = images._Budget(100)
    first_in, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def hold(n, entered, until=None):
        with budget.reserve(n):
            entered.set()
            if until:
                until.wait(BOUND_S)

    threading.Thread(target=hold, args=(70, first_in, release), daemon=True).start()
    assert first_in.wait(BOUND_S)
    second = threading.Thread(target=hold, args=(60, second_in), daemon=True)
    second.start()
    assert not second_in.wait(0.3) and budget.used == 70  # waits: 70 + 60 is over the budget
    release.set()
    assert second_in.wait(BOUND_S)
    second.join(BOUND_S)
    assert budget.used == 0
    with budget.reserve(1000):  # one decode larger than the whole budget still runs alone
        assert budget.used == 100


@pytest.mark.parametrize("typed, words", [("a\x00b.jpg", "NUL byte"), ("x" * 300, "too long"),
                                          ("/" + "a/" * 3000, "too long")])
def test_hostile_typed_server_paths_are_refused_with_a_reason(tmp_path, typed, words):
    from vss_core.errors import PathNotAllowed
    from vss_core.files.paths import resolve_under_roots

    with pytest.raises(PathNotAllowed, match=words):
        resolve_under_roots(typed, [tmp_path])


def test_query_folder_with_a_non_utf8_name_gives_printable_names(tmp_path, image_folder):
    from types import SimpleNamespace

    from ui.inputs import Sources, add_server_path

    shutil.copy(image_folder / "circles" / "circles_0.jpg", bytes_path(tmp_path, b"q\xe9.jpg"))
    out = Sources()
    add_server_path(out, str(tmp_path), SimpleNamespace(data_roots=(tmp_path,)))
    assert out.names == ["q\\xe9.jpg"] and os.path.exists(out.sources[0])


def test_two_sessions_saving_the_same_upload_at_once_both_get_the_whole_file(tmp_path, monkeypatch):
    from tests.test_paths import in_threads, renames_together
    from ui.inputs import save_upload

    data = (Path(__file__).parent / "pngs.py").read_bytes() * 200
    renames_together(monkeypatch)  # both sessions have written before either renames
    saved: list[Path] = []
    assert in_threads(lambda: saved.append(save_upload(data, "Photo.JPG", tmp_path / "uploads")), [(), ()]) == []
    assert len(saved) == 2 and saved[0] == saved[1] and saved[0].read_bytes() == data
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [saved[0].name]
