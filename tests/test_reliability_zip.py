"""Zip uploads: checked whole before anything is extracted, streamed, private, cleaned up."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import pytest

from vss_core.embed.embedder import Embedder
from vss_core.errors import InputError
from vss_core.files import archive
from vss_core.jobs.registry import DONE, FAILED, JobRegistry
from vss_core.labeling.loader import collect_zip, load_job


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


@pytest.fixture
def store(vector_store, embedder):
    vector_store.ensure_index(embedder.dim)
    return vector_store


def labeled_zip(path: Path, image_folder: Path, extra=()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for image in sorted(image_folder.rglob("*.*")):
            z.write(image, image.relative_to(image_folder).as_posix())
        for name, data in extra:
            z.writestr(name, data)
    return path


def patch_method(path: Path, method: int) -> None:
    """Set the compression method of every member, in the local and the central headers."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset:at + offset + 2] = struct.pack("<H", method)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def patch_encrypted(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 0x1
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def refused(tmp_path: Path, zip_path: Path, words: str) -> None:
    target = tmp_path / "out"
    with pytest.raises(InputError, match=words) as info:
        collect_zip(zip_path, target, name="upload.zip")
    assert str(tmp_path) not in str(info.value) and "upload.zip" in str(info.value)
    assert not target.exists()  # nothing extracted


def test_zip_slip_after_good_members_extracts_nothing(tmp_path, image_folder):
    path = labeled_zip(tmp_path / "evil.zip", image_folder, extra=[("circles/../../escape.jpg", b"x")])
    refused(tmp_path, path, "points outside the archive")
    assert not (tmp_path / "escape.jpg").exists()


@pytest.mark.parametrize("name", ["/etc/cron.d/x", "C:/x.jpg", "..\\\\..\\\\evil.jpg"])
def test_absolute_drive_and_backslash_member_names_are_refused(tmp_path, name):
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok/a.jpg", b"x")
        z.writestr(zipfile.ZipInfo(name), b"x")
    refused(tmp_path, path, "points outside the archive")


def test_empty_zip_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("only-a-folder/"), b"")
    refused(tmp_path, path, "contains no files")


def test_encrypted_zip_is_refused(tmp_path, image_folder):
    path = labeled_zip(tmp_path / "enc.zip", image_folder)
    patch_encrypted(path)
    refused(tmp_path, path, "encrypted")


def test_unknown_compression_method_is_refused(tmp_path):
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/b.jpg", b"data")
    patch_method(path, 99)
    refused(tmp_path, path, "unsupported compression method")


def test_zip_bomb_by_ratio_is_refused_before_extracting(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/zeros.jpg", b"\0" * (64 * 1024**2))
    assert path.stat().st_size < 1024**2
    refused(tmp_path, path, "times its packed size")


def test_member_count_and_total_size_caps(tmp_path, monkeypatch):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(20):
            z.writestr(f"a/{i}.jpg", b"x" * 1000)
    monkeypatch.setattr(archive, "MAX_MEMBERS", 10)
    refused(tmp_path, path, "more than the 10 a zip may hold")
    monkeypatch.setattr(archive, "MAX_MEMBERS", 100)
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 10_000)
    refused(tmp_path, path, "unpacks to")


def test_truncated_zip_is_refused_and_leaves_nothing(tmp_path, image_folder):
    path = labeled_zip(tmp_path / "cut.zip", image_folder)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(tmp_path, path, "not a readable zip")


def test_extracted_files_are_private(tmp_path, image_folder):
    path = labeled_zip(tmp_path / "ok.zip", image_folder)
    items = collect_zip(path, tmp_path / "out")
    assert len(items) == 18
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(item.path.stat().st_mode) == 0o600 for item in items)
    assert all(stat.S_IMODE(item.path.parent.stat().st_mode) == 0o700 for item in items)


def test_zip_load_job_loads_then_removes_the_extracted_files(tmp_path, store, embedder, image_folder):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    path = labeled_zip(uploads / "abc.zip", image_folder)
    registry = JobRegistry()
    snap = registry.wait(registry.start("load", load_job("zip", str(path), (), embedder, store, "ana")), 120)
    assert snap.state == DONE and snap.result.loaded == 18
    assert sorted(p.name for p in uploads.iterdir()) == ["abc.zip"]
    [hit] = store.exemplars("circles", limit=1)
    assert hit.source.startswith("abc.zip/circles/")


def test_bad_zip_load_job_fails_with_a_reason_and_leaves_nothing(tmp_path, store, embedder):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "x.zip").write_bytes(b"not a zip")
    registry = JobRegistry()
    snap = registry.wait(registry.start("load", load_job("zip", str(uploads / "x.zip"), (), embedder, store)), 60)
    assert snap.state == FAILED and "not a readable zip" in snap.message and str(tmp_path) not in snap.message
    assert sorted(p.name for p in uploads.iterdir()) == ["x.zip"]


def test_symlink_member_is_extracted_as_a_plain_file_not_a_link(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo("a/passwd.jpg")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    [item] = collect_zip(path, tmp_path / "out")
    assert not item.path.is_symlink() and item.path.read_bytes() == b"/etc/passwd"
