"""The exemplar-set generation: a counter in Redis (``ProjectLayout.generation_key``) bumped by every change of
the set of exemplars, in the same transaction or write as the change (a load, a promotion or its removal, an
audit relabel or retire, a deleted label).  Work made from the exemplars records the value it was made at:
pool suggestions (field ``generation``) and mining score sets (their ``scoresmeta`` hash); it is stale once
the counter has moved on.
"""

from __future__ import annotations

from vss_core.redis.schema import ProjectLayout


def bump(target, index_name: str) -> None:
    """Queue (on a pipeline) or send (on a client) the bump of index ``index_name``'s generation."""
    target.incr(ProjectLayout.generation_key_of(index_name))


def current(client, index_name: str) -> int:
    """The generation of index ``index_name``'s exemplars now (0 before the first change)."""
    return int(client.get(ProjectLayout.generation_key_of(index_name)) or 0)


__all__ = ["bump", "current"]
