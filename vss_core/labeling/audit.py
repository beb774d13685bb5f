"""The record of every action on labels: the audit stream, each item's history, the action records and each
annotator's undo stack (keys from :class:`~vss_core.redis.schema.ProjectLayout`).

Pool decisions (:mod:`vss_core.labeling.decisions`) and the exemplar audit (:mod:`vss_core.labeling.exemplar_review`) both
record through :class:`AuditLog` and run their transactions through :meth:`AuditLog.transact`, which
recognises its own write when the reply to EXEC was lost (the action's record is written in the same
transaction, so a retry that finds it returns what was saved instead of refusing "changed by you").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import redis

from vss_core.errors import InputError, VSSError
from vss_core.redis.index_layout import as_text
from vss_core.redis.schema import ProjectLayout
from vss_core.timeutil import now_iso

UNDO_DEPTH = 200
AUDIT_MAXLEN = 1_000_000
MARKER_TTL_S = 7 * 24 * 3600  # the record of an action that changed nothing: only there to recognise a retry


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
    """One change of one item."""

    at: str
    action: str
    kind: str
    annotator: str
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def check_annotator(name: str) -> str:
    """The annotator's name, stripped; ``InputError`` when there is none."""
    name = (name or "").strip()
    if not name:
        raise InputError("enter your name (annotator) before changing labels")
    return name


def describe(state: dict) -> str:
    """One line for a recorded state: a pool image's status and label, or an exemplar's key."""
    if "status" in state:
        return f"{state.get('status', '')} {state.get('label', '')!r}"
    return f"exemplar {state.get('label', '')!r} ({state.get('key', '')})"


class AuditLog:
    """The audit stream, histories, action records and undo stacks of one project."""

    def __init__(self, client: redis.Redis, layout: ProjectLayout):
        self.client = client
        self.layout = layout

    def record(self, pipe, changes: list[tuple[str, dict, dict]], refused, action_id: str, annotator: str,
               kind: str, undoable: bool, target: str, histories: list[tuple[str, dict, dict]] = ()) -> ActionResult:
        """Queue the audit entries, per-item history and action record of ``changes`` (id, before, after) on
        ``pipe`` (in MULTI); ``target`` ("pool" or "exemplar") tells undo what the ids name.  ``histories``:
        more (id, before, after) history entries of the same action (the pool image an exemplar belongs to)."""
        at = now_iso()
        for id, before, after in changes:
            entry = {"at": at, "action": action_id, "kind": kind, "annotator": annotator,
                     "before": before, "after": after}
            pipe.xadd(self.layout.audit_key, {"id": id, "target": target, **{
                k: json.dumps(v) if isinstance(v, dict) else v for k, v in entry.items()}},
                maxlen=AUDIT_MAXLEN, approximate=True)
            pipe.rpush(self.layout.history_key(id), json.dumps(entry))
        for id, before, after in histories:
            pipe.rpush(self.layout.history_key(id), json.dumps(
                {"at": at, "action": action_id, "kind": kind, "annotator": annotator, "before": before,
                 "after": after}))
        key = self.layout.action_key(action_id)
        pipe.hset(key, mapping={
            "annotator": annotator, "kind": kind, "at": at, "target": target,
            "changes": json.dumps([{"id": id, "before": b, "after": a} for id, b, a in changes]),
            "refused": json.dumps([[c.id, c.reason] for c in refused])})
        if not changes:
            pipe.expire(key, MARKER_TTL_S)
        elif undoable:
            pipe.rpush(self.layout.undo_key(annotator), action_id)
            pipe.ltrim(self.layout.undo_key(annotator), -UNDO_DEPTH, -1)
        return _result(action_id, [id for id, _, _ in changes], refused)

    def transact(self, action_id: str, work: Callable, what: str = "the decision") -> ActionResult:
        """Run ``work(pipe) -> ActionResult`` as one optimistic transaction (``work`` WATCHes what it reads,
        then MULTI and queues its writes with :meth:`record` of ``action_id``); retried while watched keys
        change.  A retry that finds the action recorded (the EXEC went through, its reply was lost) returns
        what was saved."""
        attempts = 0

        def attempt(pipe):
            nonlocal attempts
            attempts += 1
            pipe.watch(self.layout.action_key(action_id))  # reads run at once from here on
            if attempts > 1:
                saved = self._saved(pipe, action_id)
                if saved is not None:
                    return saved
            return work(pipe)

        try:
            return self.client.transaction(attempt, value_from_callable=True)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            saved = self._probe(action_id)
            if saved is not None:
                return saved
            raise VSSError(f"saving {what} failed, nothing was changed: {exc}") from exc
        except redis.ResponseError as exc:
            raise VSSError(f"Redis refused {what}, nothing was changed: {exc}") from exc

    def _probe(self, action_id: str) -> ActionResult | None:
        try:
            return self._saved(self.client, action_id)
        except redis.RedisError as exc:
            raise VSSError(f"the Redis server stopped answering while saving; whether action {action_id} was "
                           f"saved is unknown: reload to see ({exc})") from exc

    def _saved(self, reader, action_id: str) -> ActionResult | None:
        changes, refused = reader.hmget(self.layout.action_key(action_id), ["changes", "refused"])
        if changes is None:
            return None
        return _result(action_id, [c["id"] for c in json.loads(changes)],
                       [Conflict(*c) for c in json.loads(refused or "[]")])

    def action(self, reader, action_id: str) -> tuple[str, list[dict]]:
        """(target, change entries) of a recorded action."""
        raw, target = reader.hmget(self.layout.action_key(action_id), ["changes", "target"])
        return as_text(target) or "pool", json.loads(raw or "[]")

    # -- reading ---------------------------------------------------------------------------------------
    def history(self, id: str) -> list[HistoryEntry]:
        """Every change of one item, oldest first."""
        return [HistoryEntry(**json.loads(item)) for item in self.client.lrange(self.layout.history_key(id), 0, -1)]

    def audit(self, count: int = 100) -> list[dict]:
        """The newest ``count`` audit entries, newest first (``before``/``after`` as JSON text; ``target``
        says whether ``id`` is a pool image or an exemplar key)."""
        entries = self.client.xrevrange(self.layout.audit_key, count=count)
        return [{as_text(k): as_text(v) for k, v in fields.items()} | {"entry": as_text(eid)}
                for eid, fields in entries]

    def can_undo(self, annotator: str) -> bool:
        return bool(annotator.strip()) and bool(self.client.llen(self.layout.undo_key(annotator.strip())))


def _result(action_id: str, applied: list[str], refused) -> ActionResult:
    return ActionResult(action_id if applied else None, tuple(applied), tuple(refused))


__all__ = ["AuditLog", "ActionResult", "Conflict", "HistoryEntry", "check_annotator", "describe",
           "UNDO_DEPTH", "AUDIT_MAXLEN"]
