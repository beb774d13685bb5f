import os
from pathlib import Path

import pytest

from vss_core.errors import PathNotAllowed
from vss_core.paths import resolve_under_roots


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
