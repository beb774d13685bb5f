"""The one owner of the exemplars of pool images: a pool image has at most one exemplar (a document of the
exemplar index whose ``pool_id`` is the image's id), and its pool document's ``exemplar`` field names it
("" when it has none).

Every path that writes, moves or removes the exemplar of a pool image goes through :class:`PoolExemplars`,
inside the caller's WATCH/MULTI transaction:

- pool decisions (:mod:`vss_core.labeling.decisions`, their undo and revert): :meth:`~PoolExemplars.settle` reads the
  image's exemplar (the one its pool document names, if that document of the index is really the image's),
  decides the key of the new one, and :meth:`~PoolExemplars.write` replaces the old one by the new one;
- the exemplar audit (:mod:`vss_core.labeling.exemplar_review`, and its undo; the Exemplars page's delete is its retire,
  and the store itself removes or renames nothing): :meth:`~PoolExemplars.plan_move` keeps
  the pool document in step when a pool image's exemplar is relabeled (its label follows) or retired (it
  becomes dubious), restores it on undo only when it has not changed since, and refuses a move that would
  bring back into the index an exemplar its pool image no longer names; :meth:`~PoolExemplars.move` writes it.

Each change of the set of exemplars bumps the generation (:mod:`vss_core.redis.generation`) in the same transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vss_core.errors import VSSError
from vss_core.redis import generation
from vss_core.redis.exemplars import Record, VectorStore
from vss_core.redis.index_layout import as_text
from vss_core.config.keys import SINGLE, promotion_policy
from vss_core.redis.schema import CORRECTED, DUBIOUS, PROMOTED_STATUSES, TAG, VECTOR, ProjectLayout
from vss_core.timeutil import now_iso

STATE_FIELDS = ("label", "status", "flag", "annotator", "decided_at", "version", "exemplar", "how", "source", "model")
PUBLIC_FIELDS = ("label", "status", "flag", "annotator", "decided_at", "version", "exemplar", "how")


@dataclass(frozen=True)
class Link:
    """The pool side of an exemplar move: image ``id`` goes from ``before`` to ``after``."""

    id: str
    before: dict
    after: dict


class PoolExemplars:
    """Exemplars of one project's pool images."""

    def __init__(self, pool, exemplars: VectorStore, layout: ProjectLayout, promote=True):
        self.pool = pool
        self.exemplars = exemplars
        self.layout = layout
        self.promote = promotion_policy(promote)

    def promotes(self, after: dict) -> bool:
        """Whether the state ``after`` makes an exemplar: an accepted label decided in a way the policy promotes;
        a state restored by undo or revert has the exemplar it had (``restores_exemplar``)."""
        if after["status"] not in PROMOTED_STATUSES:
            return False
        if "restores_exemplar" in after:
            return bool(after["restores_exemplar"])
        return (after.get("how") or SINGLE) in self.promote

    def read(self, pipe, id: str) -> dict | None:
        """The state of pool image ``id`` (None when it is not in the pool); the caller WATCHes its key."""
        values = pipe.hmget(self.pool.key_for(id), STATE_FIELDS)
        if values[STATE_FIELDS.index("status")] is None:
            return None
        state = dict(zip(STATE_FIELDS, map(as_text, values)))
        state["version"] = int(state["version"] or 0)
        return state

    def bump(self, pipe) -> None:
        generation.bump(pipe, self.layout.exemplars.name)

    # -- pool decisions ----------------------------------------------------------------------------------
    def settle(self, pipe, id: str, before: dict, after: dict) -> bytes | None:
        """Set ``before["exemplar"]`` to the image's exemplar now and ``after["exemplar"]`` to the one it will
        have (inside the WATCH, before MULTI); returns the pool vector to promote, or None."""
        before["exemplar"] = current = self._owned(pipe, id, before.get("exemplar") or "")
        wanted = ""
        if self.promotes(after):
            wanted = self.exemplars.key_for(after["label"], id)
        if wanted and wanted != current:
            pipe.watch(wanted)
            if pipe.exists(wanted) and as_text(pipe.hget(wanted, "pool_id")) != id:
                wanted = ""  # an exemplar loaded from files holds that key: not ours to replace
        after["exemplar"] = wanted
        return pipe.hget(self.pool.key_for(id), VECTOR) if wanted and wanted != current else None

    def _owned(self, pipe, id: str, key: str) -> str:
        if not key:
            return ""
        pipe.watch(key)
        return key if as_text(pipe.hget(key, "pool_id")) == id else ""

    def write(self, pipe, id: str, before: dict, after: dict, vector: bytes | None) -> bool:
        """Queue the new state of image ``id`` and the swap of its exemplar; True when the exemplars changed."""
        self.write_state(pipe, id, after)
        old, new = before["exemplar"], after["exemplar"]
        if old and old != new:
            pipe.delete(old)
        if new and new != old:
            record = Record(label=after["label"], id=id, vector=_frombytes(vector, id), source=before.get("source", ""),
                            added_by=after["annotator"], model=before.get("model", ""), pool_id=id)
            pipe.execute_command(*self.exemplars.hset_command(record, after["decided_at"] or now_iso()))
        return old != new

    def write_state(self, pipe, id: str, after: dict) -> None:
        pipe.hset(self.pool.key_for(id), mapping={
            TAG: after["label"], "label": after["label"], "status": after["status"], "flag": after.get("flag", ""),
            "annotator": after["annotator"], "decided_at": after["decided_at"],
            "decided_ts": after.get("decided_ts", 0), "version": after["version"], "exemplar": after["exemplar"],
            "how": after.get("how", "")})

    # -- the exemplar audit ------------------------------------------------------------------------------
    def plan_move(self, pipe, key: str, new_key: str, recorded: tuple[dict, dict] | None, annotator: str,
                  now: str) -> tuple[str | None, Link | None]:
        """(refusal, pool side) of moving exemplar ``key`` to ``new_key`` (a retired key takes it out of the
        index), inside the WATCH.  ``recorded``: the pool image's (before, after) states an earlier move
        recorded, when this move undoes it."""
        id = as_text(pipe.hget(key, "pool_id"))
        if not id:
            return None, None
        pipe.watch(self.pool.key_for(id))
        state = self.read(pipe, id)
        if state is None:
            return None, None
        retired = self.layout.retired_key("")
        into_index = not new_key.startswith(retired)
        if recorded is not None:
            return self._restore(id, state, recorded, new_key if into_index else "")
        if state["exemplar"] != key:
            if into_index and key.startswith(retired):
                return (f"{key}: its pool image {id} has changed since (now {state['status']}"
                        f"{', exemplar ' + state['exemplar'] if state['exemplar'] else ''})"), None
            return None, None  # not the exemplar its pool document names: the image keeps what it has
        after = {"label": state["label"], "status": DUBIOUS, "flag": state["flag"], "annotator": annotator,
                 "decided_at": now, "decided_ts": time.time(), "exemplar": "", "version": state["version"] + 1}
        if into_index:
            label = self.exemplars.label_of(new_key)
            after.update(label=label, exemplar=new_key,
                         status=state["status"] if label == state["label"] else CORRECTED)
        return None, Link(id, public(state), after)

    def _restore(self, id: str, state: dict, recorded: tuple[dict, dict], exemplar: str):
        before, after = recorded
        if state["version"] != int(after["version"]) and not same_state(state, after):
            who = state["annotator"] or "someone"
            return f"{id}: changed by {who} at {state['decided_at'] or 'an earlier time'} since", None
        if (before.get("exemplar") or "") != exemplar:
            return f"{id}: the recorded state names exemplar {before.get('exemplar')!r}, not {exemplar!r}", None
        restored = {k: before.get(k, "") for k in ("label", "status", "flag", "annotator", "decided_at")}
        return None, Link(id, public(state), restored | {"decided_ts": 0, "exemplar": exemplar,
                                                        "version": state["version"] + 1})

    def move(self, pipe, key: str, new_key: str, label_before: str, label: str, audit: str,
             link: Link | None) -> bool:
        """Queue the move of exemplar ``key`` to ``new_key`` (its label, its audit mark, its pool image's
        state); True when the set of exemplars changed."""
        if new_key != key:
            pipe.rename(key, new_key)
        if label != label_before:
            pipe.hset(new_key, mapping=self.exemplars.label_mapping(label))
        if audit:
            pipe.hset(new_key, "audit", audit)
        else:
            pipe.hdel(new_key, "audit")
        if link is not None:
            self.write_state(pipe, link.id, link.after)
        return new_key != key


def same_state(state: dict, recorded: dict) -> bool:
    """Whether a pool image is still as ``recorded`` left it (an undo in between that put it back counts as
    unchanged; the version does not)."""
    return all(str(state.get(k) or "") == str(recorded.get(k) or "") for k in PUBLIC_FIELDS if k != "version")


def public(state: dict) -> dict:
    """The recorded part of a pool image's state."""
    return {k: state.get(k, "") for k in PUBLIC_FIELDS}


def _frombytes(raw: bytes | None, id: str):
    import numpy as np

    if not raw:
        raise VSSError(f"pool image {id} has no vector; predict it again")
    return np.frombuffer(raw, dtype=np.float32)


__all__ = ["PoolExemplars", "Link", "STATE_FIELDS", "public", "same_state"]
