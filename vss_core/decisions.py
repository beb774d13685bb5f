"""Review decisions on pool images: kept at once, attributed, audited, undoable, promoted to exemplars.

Every change is one optimistic Redis transaction (WATCH on the images, then MULTI/EXEC) that
writes the new state into the pool document, adds or removes the promoted exemplar (the pool vector,
no second embedding), appends an entry with the state before and after to the audit stream and the
image's history, and records the action on the annotator's undo stack.  A change to an image that
someone else changed since it was shown (its ``version`` moved on) is refused, naming who and when.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import redis

from .errors import InputError, VSSError
from .index_layout import as_text
from .pool import PoolStore
from .schema import (ACCEPTED, CORRECTED, DUBIOUS, FLAGS, PREDICTED, PROMOTED_STATUSES, SKIPPED, STATUSES, TAG,
                     VECTOR, ProjectLayout)
from .store import Record, VectorStore

STATE_FIELDS = ("label", "status", "flag", "annotator", "decided_at", "version", "exemplar", "source", "model")
UNDO_DEPTH = 200
AUDIT_MAXLEN = 1_000_000


@dataclass(frozen=True)
class Change:
    """Set image ``id`` to ``status``, ``label`` and ``flag`` (None keeps the current one).

    ``expected_version`` is the version the annotator saw; None means "only if still undecided".
    ``flag`` marks what mining found (``rare``, ``anomaly``, ``normal``, ``dismissed``; "" clears it)."""

    id: str
    status: str | None
    label: str | None = None
    expected_version: int | None = None
    flag: str | None = None

    def after(self, current: dict, annotator: str, now: str) -> dict:
        """The state this change leads to; accepting under another label is a correction."""
        label = self.label.strip() if self.label else current["label"]
        status = self.status or current["status"]
        if status == ACCEPTED and label != current["label"]:
            status = CORRECTED
        flag = current.get("flag", "") if self.flag is None else self.flag
        return {"label": label, "status": status, "flag": flag, "annotator": annotator, "decided_at": now,
                "decided_ts": time.time(), "exemplar": None}


@dataclass(frozen=True)
class Conflict:
    """A change refused: the image moved on (``by`` at ``at``) or is gone."""

    id: str
    reason: str


@dataclass(frozen=True)
class ActionResult:
    """What one action did: its id (None when nothing was applied), the images changed and refused."""

    action_id: str | None
    applied: tuple[str, ...] = ()
    refused: tuple[Conflict, ...] = ()

    def summary(self) -> str:
        text = f"{len(self.applied)} image(s) changed"
        if self.refused:
            text += f", {len(self.refused)} refused: " + "; ".join(c.reason for c in self.refused[:3])
        return text


@dataclass(frozen=True)
class HistoryEntry:
    """One change of one image."""

    at: str
    action: str
    kind: str
    annotator: str
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


class Decisions:
    """Decisions on one project's pool."""

    def __init__(self, pool: PoolStore, exemplars: VectorStore, layout: ProjectLayout, promote: bool = True):
        self.pool = pool
        self.exemplars = exemplars
        self.layout = layout
        self.promote = promote
        self.client = pool.client

    # -- actions ---------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change], annotator: str, kind: str = "decide") -> ActionResult:
        """Apply ``changes`` as one undoable action by ``annotator``."""
        annotator = _annotator(annotator)
        for change in changes:
            if change.status is not None and change.status not in STATUSES:
                raise InputError(f"unknown status {change.status!r} for image {change.id}")
            if change.flag is not None and change.flag not in FLAGS:
                raise InputError(f"unknown flag {change.flag!r} for image {change.id} (known: {', '.join(FLAGS)})")
            if change.label is not None and not change.label.strip():
                raise InputError(f"empty label for image {change.id}")
        return self._transition({c.id: c for c in changes}, annotator, kind, undoable=True)

    def undo(self, annotator: str) -> ActionResult:
        """Undo ``annotator``'s last action (a bulk action as one); images changed since are refused."""
        annotator = _annotator(annotator)
        action_id = as_text(self.client.lindex(self.layout.undo_key(annotator), -1))
        if not action_id:
            raise InputError(f"{annotator} has nothing to undo")
        raw, target = self.client.hmget(self.layout.action_key(action_id), ["changes", "target"])
        entries = json.loads(raw or "[]")
        if as_text(target) == "exemplar":
            from .exemplar_review import ExemplarReview

            result = ExemplarReview(self).undo_entries(entries, annotator)
        else:
            targets = {e["id"]: _Restore(e["id"], e["before"], e["after"]["version"]) for e in entries}
            result = self._transition(targets, annotator, "undo", undoable=False)
        self.client.rpop(self.layout.undo_key(annotator))
        return result

    def revert(self, image_id: str, entry_index: int, annotator: str) -> ActionResult:
        """Set one image back to its state before history entry ``entry_index`` (an undoable action)."""
        annotator = _annotator(annotator)
        history = self.history(image_id)
        if not 0 <= entry_index < len(history):
            raise InputError(f"image {image_id} has no history entry {entry_index}")
        current = self.pool.get([image_id])[0]
        version = current.version if current else None
        target = _Restore(image_id, history[entry_index].before, version)
        return self._transition({image_id: target}, annotator, "revert", undoable=True)

    # -- reading ---------------------------------------------------------------------------
    def history(self, image_id: str) -> list[HistoryEntry]:
        """Every change of one image, oldest first."""
        raw = self.client.lrange(self.layout.history_key(image_id), 0, -1)
        return [HistoryEntry(**json.loads(item)) for item in raw]

    def audit(self, count: int = 100) -> list[dict]:
        """The newest ``count`` audit entries, newest first."""
        entries = self.client.xrevrange(self.layout.audit_key, count=count)
        return [{as_text(k): as_text(v) for k, v in fields.items()} | {"entry": as_text(eid)}
                for eid, fields in entries]

    def can_undo(self, annotator: str) -> bool:
        return bool(annotator.strip()) and bool(self.client.llen(self.layout.undo_key(annotator.strip())))

    # -- the transaction -------------------------------------------------------------------
    def _transition(self, targets: dict, annotator: str, kind: str, undoable: bool) -> ActionResult:
        action_id = uuid.uuid4().hex[:16]
        keys = [self.pool.key_for(id) for id in targets]
        outcome: dict = {}

        def work(pipe) -> None:
            states = {id: self._read(pipe, key) for id, key in zip(targets, keys)}
            plan, refused = self._plan(targets, states, annotator)
            promote = self._promotions(pipe, plan)
            pipe.multi()
            outcome["result"] = self._write(pipe, plan, promote, refused, action_id, annotator, kind, undoable)

        try:
            self.client.transaction(work, *keys)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise VSSError(f"saving the decision failed, nothing was changed: {exc}") from exc
        except redis.ResponseError as exc:
            raise VSSError(f"Redis refused the decision, nothing was changed: {exc}") from exc
        return outcome["result"]

    def _read(self, pipe, key: str) -> dict | None:
        values = pipe.hmget(key, STATE_FIELDS)
        if values[STATE_FIELDS.index("status")] is None:
            return None
        state = dict(zip(STATE_FIELDS, map(as_text, values)))
        state["version"] = int(state["version"] or 0)
        return state

    def _plan(self, targets: dict, states: dict, annotator: str):
        plan, refused = [], []
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for id, target in targets.items():
            state = states[id]
            reason = _conflict(id, target, state)
            if reason:
                refused.append(Conflict(id, reason))
                continue
            after = target.after(state, annotator, now)
            after["version"] = state["version"] + 1
            if after["exemplar"] is None:
                after["exemplar"] = self._exemplar_key(id, after)
            plan.append((id, state, after))
        return plan, refused

    def _exemplar_key(self, id: str, after: dict) -> str:
        if after["status"] in PROMOTED_STATUSES and self.promote:
            return self.exemplars.key_for(after["label"], id)
        return ""

    def _promotions(self, pipe, plan: list) -> dict:
        """Vectors of the images that get a new exemplar key; a key someone else owns is left alone."""
        vectors = {}
        for id, before, after in plan:
            new = after["exemplar"]
            if new and new != before.get("exemplar"):
                if pipe.exists(new) and as_text(pipe.hget(new, "pool_id")) != id:
                    after["exemplar"] = ""  # an exemplar loaded from files: not ours to replace
                    continue
                vectors[id] = pipe.hget(self.pool.key_for(id), VECTOR)
        return vectors

    def _write(self, pipe, plan, vectors, refused, action_id, annotator, kind, undoable) -> ActionResult:
        for id, before, after in plan:
            self._write_state(pipe, id, before, after, vectors.get(id))
        changes = [(id, _public(before), _public(after)) for id, before, after in plan]
        return self.record(pipe, changes, refused, action_id, annotator, kind, undoable, target="pool")

    def record(self, pipe, changes: list[tuple[str, dict, dict]], refused, action_id: str, annotator: str,
               kind: str, undoable: bool, target: str) -> ActionResult:
        """Queue the audit entries, per-item history and action record of ``changes`` (id, before, after)
        on ``pipe`` (in MULTI); ``target`` ("pool" or "exemplar") tells undo what the ids name."""
        if not changes:
            return ActionResult(None, (), tuple(refused))
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for id, before, after in changes:
            entry = {"at": at, "action": action_id, "kind": kind, "annotator": annotator,
                     "before": before, "after": after}
            pipe.xadd(self.layout.audit_key, {"id": id, "target": target, **{
                k: json.dumps(v) if isinstance(v, dict) else v for k, v in entry.items()}},
                maxlen=AUDIT_MAXLEN, approximate=True)
            pipe.rpush(self.layout.history_key(id), json.dumps(entry))
        pipe.hset(self.layout.action_key(action_id), mapping={
            "annotator": annotator, "kind": kind, "at": at, "target": target,
            "changes": json.dumps([{"id": id, "before": b, "after": a} for id, b, a in changes])})
        if undoable:
            pipe.rpush(self.layout.undo_key(annotator), action_id)
            pipe.ltrim(self.layout.undo_key(annotator), -UNDO_DEPTH, -1)
        return ActionResult(action_id, tuple(id for id, _, _ in changes), tuple(refused))

    def _write_state(self, pipe, id: str, before: dict, after: dict, vector: bytes | None) -> None:
        key = self.pool.key_for(id)
        pipe.hset(key, mapping={TAG: after["label"], "label": after["label"], "status": after["status"],
                                "flag": after.get("flag", ""),
                                "annotator": after["annotator"], "decided_at": after["decided_at"],
                                "decided_ts": after.get("decided_ts", 0), "version": after["version"],
                                "exemplar": after["exemplar"]})
        old, new = before.get("exemplar") or "", after["exemplar"]
        if old and old != new:
            pipe.delete(old)
        if new and new != old:
            record = Record(label=after["label"], id=id, vector=_frombytes(vector), source=before.get("source", ""),
                            added_by=after["annotator"], model=before.get("model", ""), pool_id=id)
            pipe.execute_command(*self.exemplars.hset_command(record, after["decided_at"] or _now()))


@dataclass(frozen=True)
class _Restore:
    """Target state taken from an audit entry (undo, revert)."""

    id: str
    state: dict
    expected_version: int | None

    def after(self, current: dict, annotator: str, now: str) -> dict:
        return {"label": self.state["label"], "status": self.state["status"], "flag": self.state.get("flag", ""),
                "annotator": self.state.get("annotator", ""), "decided_at": self.state.get("decided_at", ""),
                "decided_ts": 0, "exemplar": self.state.get("exemplar", "")}


def _conflict(id: str, target, state: dict | None) -> str | None:
    if state is None:
        return f"{id}: not in the pool (deleted?)"
    expected = target.expected_version
    if expected is None:
        if state["status"] != PREDICTED:
            return f"{id}: already {state['status']} by {state['annotator'] or 'someone'} at {state['decided_at']}"
        return None
    if state["version"] != expected:
        who = state["annotator"] or "someone"
        return f"{id}: changed by {who} at {state['decided_at'] or 'an earlier time'} since you saw it"
    return None


def _public(state: dict) -> dict:
    return {k: state.get(k, "") for k in ("label", "status", "flag", "annotator", "decided_at", "version",
                                          "exemplar")}


def _annotator(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InputError("enter your name (annotator) before changing labels")
    return name


def _frombytes(raw: bytes):
    import numpy as np

    if not raw:
        raise VSSError("the pool image has no vector; predict it again")
    return np.frombuffer(raw, dtype=np.float32)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = ["Change", "Conflict", "ActionResult", "HistoryEntry", "Decisions", "ACCEPTED", "CORRECTED",
           "DUBIOUS", "SKIPPED", "PREDICTED"]


def open_decisions(project, dim: int, model: str | None = None) -> Decisions:
    """The exemplar store, pool and decisions of ``project`` for ``dim``-d vectors of ``model``."""
    from .pool import open_pool
    from .schema import layout_for
    from .store import open_store

    exemplars = open_store(project, dim, model)
    return Decisions(open_pool(project, dim, model), exemplars, layout_for(project), promote=project.promote)
