import os
import stat
import threading
from pathlib import Path

import pytest

from vss_core.errors import PathNotAllowed
from vss_core.files.paths import atomic_write, resolve_under_roots

BOUND_S = 60  # a bound on every wait: a regression fails instead of hanging the suite


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "imgs" / "a").mkdir(parents=True)
    (root / "imgs" / "a" / "x.png").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    return root, outside


def test_inside_absolute_and_relative(tree):
    root, _ = tree
    assert resolve_under_roots(root / "imgs" / "a", [root]) == (root / "imgs" / "a").resolve()
    assert resolve_under_roots(str(root / "imgs" / "a" / "x.png"), [str(root)]).name == "x.png"
    # relative paths are taken under the roots, not the server's cwd
    assert resolve_under_roots("imgs/a", [root]) == (root / "imgs" / "a").resolve()
    # the root itself is allowed; quotes and blanks around a pasted path are dropped
    assert resolve_under_roots(f'  "{root}" ', [root]) == root.resolve()


def test_relative_path_found_under_second_root(tree, tmp_path):
    root, outside = tree
    got = resolve_under_roots("secret.txt", [root, outside])
    assert got == (outside / "secret.txt").resolve()


def test_outside_is_refused_and_named(tree):
    root, outside = tree
    with pytest.raises(PathNotAllowed) as e:
        resolve_under_roots(outside / "secret.txt", [root])
    assert "secret.txt" in str(e.value)
    assert "data roots" in str(e.value)


def test_dotdot_escape_refused(tree):
    root, _ = tree
    with pytest.raises(PathNotAllowed):
        resolve_under_roots(root / "imgs" / ".." / ".." / "outside" / "secret.txt", [root])
    with pytest.raises(PathNotAllowed):
        resolve_under_roots("../outside", [root])
    # .. that stays inside is fine
    assert resolve_under_roots(root / "imgs" / "a" / "..", [root]) == (root / "imgs").resolve()


def test_prefix_sibling_is_not_inside(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data2").mkdir()
    with pytest.raises(PathNotAllowed):
        resolve_under_roots(tmp_path / "data2", [tmp_path / "data"])


def test_symlink_leading_out_refused(tree):
    root, outside = tree
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "imgs" / "file_link").symlink_to(outside / "secret.txt")
    with pytest.raises(PathNotAllowed):
        resolve_under_roots(root / "link", [root])
    with pytest.raises(PathNotAllowed):
        resolve_under_roots(root / "link" / "secret.txt", [root])
    with pytest.raises(PathNotAllowed):
        resolve_under_roots(root / "imgs" / "file_link", [root])


def test_symlink_staying_inside_and_symlinked_root(tree, tmp_path):
    root, _ = tree
    (root / "inner").symlink_to(root / "imgs", target_is_directory=True)
    assert resolve_under_roots(root / "inner" / "a", [root]) == (root / "imgs" / "a").resolve()
    # a root that is itself a symlink: paths through either spelling are inside
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert resolve_under_roots(root / "imgs", [alias]) == (root / "imgs").resolve()
    assert resolve_under_roots(alias / "imgs", [alias]) == (root / "imgs").resolve()


def test_no_roots_refuses_everything(tree):
    root, _ = tree
    for roots in ([], (), ["  "]):
        with pytest.raises(PathNotAllowed) as e:
            resolve_under_roots(root, roots)
        assert "vss.data_roots" in str(e.value)
        assert str(root) in str(e.value)


def test_empty_path_refused(tree):
    root, _ = tree
    with pytest.raises(PathNotAllowed):
        resolve_under_roots("   ", [root])


def test_nonexistent_inside_is_returned(tree):
    root, _ = tree
    got = resolve_under_roots(root / "nope" / "x.jpg", [root])
    assert got == root.resolve() / "nope" / "x.jpg"
    assert not got.exists()


def test_home_expansion(monkeypatch, tree):
    root, _ = tree
    monkeypatch.setenv("HOME", str(root))
    assert resolve_under_roots("~/imgs", ["~"]) == (root / "imgs").resolve()


def renames_together(monkeypatch, writers: int = 2) -> None:
    """Make each writer wait at its rename until all ``writers`` have written their file: they race."""
    all_written, real_replace = threading.Barrier(writers, timeout=BOUND_S), os.replace

    def replace_together(src, dst):
        all_written.wait()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_together)


def in_threads(fn, args_list) -> list[BaseException]:
    """Run ``fn(*args)`` for each args at once, each in its thread; the exceptions they raised."""
    errors: list[BaseException] = []

    def run(*args):
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args, daemon=True) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_S)
    assert not any(thread.is_alive() for thread in threads), "a writer hangs"
    return errors


def test_two_writers_racing_for_one_file_each_leave_it_whole(tmp_path, monkeypatch):
    target = tmp_path / "shared.bin"
    target.write_bytes(b"old")
    payloads = [bytes([n]) * 2_000_000 for n in (1, 2)]
    renames_together(monkeypatch)
    assert in_threads(atomic_write, [(target, data) for data in payloads]) == []
    assert target.read_bytes() in payloads  # one writer's bytes, whole: never a mix, never cut short
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]  # no temporary file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "kept.txt"
    atomic_write(target, "first")

    def fails_halfway(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fails_halfway)
    assert target.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
    atomic_write(target, lambda path: path.write_bytes(b"third"))  # a library's save(path)
    assert target.read_bytes() == b"third"
