"""Exemplar self-audit actions: keep, relabel or retire exemplars, recorded in the same audit log
(:mod:`vss_core.labeling.audit`) and undoable from the same undo stack as pool decisions
(:class:`vss_core.labeling.decisions.Decisions`).

Retiring moves the exemplar's hash out of the index (``vss:<index>:retired:<key>``) instead of
deleting it, so undo puts it back as it was, vector included.  An exemplar promoted from a pool image
moves with its pool document through :class:`~vss_core.labeling.exemplar_owner.PoolExemplars`: a relabel changes
the image's label too, a retire makes it dubious, each in the same transaction and in the image's
history.  This is the only way exemplars leave the index or change label (the Exemplars page's "delete" retires),
so every such change is attributed, undoable and moves the exemplar-set generation on.  Works on fastapi-vss
databases too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Sequence

from vss_core.labeling.audit import ActionResult, Conflict, check_annotator
from vss_core.labeling.labels import validate_label
from vss_core.redis.index_layout import as_text
from vss_core.timeutil import now_iso

KEEP, RELABEL, RETIRE = "keep", "relabel", "retire"
RETIRE_CHUNK = 500  # exemplars per transaction (and per undoable action) when a whole label is retired


@dataclass(frozen=True)
class _Move:
    key: str
    new_key: str
    before: dict  # {"key", "label", "audit"}
    after: dict
    recorded: tuple[dict, dict] | None = None  # the pool image's states an undone move recorded
    pool_id: str = ""


class ExemplarReview:
    """Audited actions on one project's exemplars (``decisions``: its :class:`~vss_core.labeling.decisions.Decisions`)."""

    def __init__(self, decisions):
        self.d = decisions
        self.store = decisions.exemplars
        self.client = decisions.client
        self.log = decisions.log
        self.owner = decisions.owner

    def keep(self, keys: Sequence[str], annotator: str) -> ActionResult:
        """Mark exemplars as checked and right (they rank last in the next audit)."""
        now = now_iso()
        return self._act(keys, annotator, KEEP, lambda key, label, who, _: (key, label, f"kept by {who} {now}"))

    def relabel(self, keys: Sequence[str], new_label: str, annotator: str) -> ActionResult:
        """Move exemplars to ``new_label``; one whose new key exists already is refused."""
        new_label = validate_label(new_label, "relabel")
        return self._act(keys, annotator, RELABEL, lambda key, label, who, _: (
            self.store.key_for(new_label, self.store.split_key(key)[1]), new_label, ""))

    def retire(self, keys: Sequence[str], annotator: str) -> ActionResult:
        """Take exemplars out of the index (kept aside for undo)."""
        return self._act(keys, annotator, RETIRE, lambda key, label, who, action: (
            self.d.layout.retired_key(key, action), label, ""))

    def retire_label(self, label: str, annotator: str, chunk: int = RETIRE_CHUNK) -> list[ActionResult]:
        """Retire every exemplar of ``label`` (as :meth:`retire`: a promoted pool image becomes dubious),
        ``chunk`` per transaction, each an undoable action of its own; one result per chunk."""
        annotator = check_annotator(annotator)
        keys = self.store.keys_of(label)
        return [self.retire(keys[start:start + chunk], annotator) for start in range(0, len(keys), chunk)]

    def _act(self, keys: Sequence[str], annotator: str, kind: str, target) -> ActionResult:
        annotator = check_annotator(annotator)
        keys = list(dict.fromkeys(keys))
        action_id = uuid.uuid4().hex[:16]

        def work(pipe) -> ActionResult:
            if keys:
                pipe.watch(*keys)
            moves = []
            for key in keys:
                label = self.store.label_of(key)
                new_key, new_label, mark = target(key, label, annotator, action_id)
                audit = as_text(pipe.hget(key, "audit"))
                moves.append(_Move(key, new_key, {"key": key, "label": label, "audit": audit},
                                   {"key": new_key, "label": new_label, "audit": mark}))
            return self._run(pipe, moves, annotator, kind, True, action_id)

        return self.log.transact(action_id, work, "the exemplar change")

    def undo_on(self, pipe, entries: list[dict], annotator: str, action_id: str) -> ActionResult:
        """Inside ``Decisions.undo``'s transaction: put exemplars (and their pool images) back as the entries'
        ``before`` states say."""
        moves = [_Move(e["after"]["key"], e["before"]["key"], _plain(e["after"]), _plain(e["before"]),
                       (e["before"]["pool"], e["after"]["pool"]) if e["after"].get("pool") else None,
                       e["after"].get("pool_id", ""))
                 for e in entries]
        return self._run(pipe, moves, annotator, "undo", False, action_id)

    def _run(self, pipe, moves: list[_Move], annotator: str, kind: str, undoable: bool,
             action_id: str) -> ActionResult:
        watched = [k for m in moves for k in (m.key, m.new_key)]
        if watched:
            pipe.watch(*watched)
        now, ok, refused = now_iso(), [], []
        for m in moves:
            reason, link = self._refusal(pipe, m), None
            if not reason and m.new_key != m.key:
                reason, link = self.owner.plan_move(pipe, m.key, m.new_key, m.recorded, annotator, now)
            if reason:
                refused.append(Conflict(m.before["key"], reason))
            else:
                ok.append((m, link))
        pipe.multi()
        changed = [self.owner.move(pipe, m.key, m.new_key, m.before["label"], m.after["label"], m.after["audit"], link)
                   for m, link in ok]
        if any(changed):
            self.owner.bump(pipe)
        changes = [(m.before["key"], _with_pool(m.before, link, "before"), _with_pool(m.after, link, "after"))
                   for m, link in ok]
        histories = [(link.id, link.before, link.after) for _, link in ok if link is not None]
        return self.log.record(pipe, changes, refused, action_id, annotator, kind, undoable, "exemplar", histories)

    def _refusal(self, pipe, m: _Move) -> str | None:
        if not pipe.exists(m.key):
            state = self.owner.read(pipe, m.pool_id) if m.pool_id else None
            if state is not None and state["annotator"]:
                return (f"{m.key}: no such exemplar now; its pool image {m.pool_id} was changed by "
                        f"{state['annotator']} at {state['decided_at']} since")
            return f"{m.key}: no such exemplar (changed by someone else?)"
        if m.new_key != m.key and pipe.exists(m.new_key):
            return f"{m.key}: {m.new_key} exists already"
        return None


def _plain(state: dict) -> dict:
    return {k: state.get(k, "") for k in ("key", "label", "audit")}


def _with_pool(state: dict, link, side: str) -> dict:
    if link is None:
        return state
    return state | {"pool_id": link.id, "pool": getattr(link, side)}


__all__ = ["ExemplarReview", "KEEP", "RELABEL", "RETIRE", "RETIRE_CHUNK"]
