"""Server-side paths a user may name: only under a project's data roots.

A path typed into the app (a folder of exemplars, a CSV, query images) is
resolved -- ``..`` collapsed and every symlink followed -- and then has to lie
under one of the configured ``vss.data_roots``.  Anything else is refused with
:class:`~vss_core.errors.PathNotAllowed`, whose message names the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from vss_core.errors import PathNotAllowed

__all__ = ["resolve_under_roots"]


def _clean(path: str | os.PathLike) -> str:
    text = os.fspath(path).strip()
    # People paste paths with quotes around them from a file manager or shell.
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def resolve_under_roots(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """Resolve ``path`` and return it when it lies under one of ``roots``.

    A relative ``path`` is taken relative to the roots (the first root under
    which it exists, else the first root), never to the server's working
    directory.  The resolved path must be a root or lie below one after every
    symlink is followed, so ``..`` and symlinks that lead out are refused.
    The path need not exist; callers check that.

    Raises :class:`PathNotAllowed` naming the path when it is empty, when no
    roots are configured, or when it lies outside every root.
    """
    text = _clean(path)
    if not text:
        raise PathNotAllowed("No server path given.")
    root_list = [Path(os.fspath(r)).expanduser() for r in roots if os.fspath(r).strip()]
    if not root_list:
        raise PathNotAllowed(
            f"Server path '{text}' refused: this project has no data roots; "
            "set vss.data_roots in its config file to the folders the app may read."
        )
    resolved_roots = [r.resolve() for r in root_list]

    candidate = Path(text).expanduser()
    if candidate.is_absolute():
        candidates = [candidate]
    else:
        joined = [r / candidate for r in resolved_roots]
        existing = [c for c in joined if c.exists()]
        candidates = existing or joined[:1]

    for cand in candidates:
        try:
            resolved = cand.resolve()
        except (OSError, RuntimeError) as e:  # symlink loop, permission on a parent
            raise PathNotAllowed(f"Server path '{text}' cannot be resolved: {e}") from None
        for root in resolved_roots:
            if resolved == root or resolved.is_relative_to(root):
                return resolved

    allowed = ", ".join(str(r) for r in resolved_roots)
    raise PathNotAllowed(
        f"Server path '{text}' is outside the project's data roots ({allowed}); "
        "only files under vss.data_roots can be read."
    )
