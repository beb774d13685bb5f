"""Review decisions on pool images: kept at once, attributed, audited, undoable, promoted to exemplars.

Every change is one optimistic Redis transaction (WATCH on the images, then MULTI/EXEC) that
writes the new state into the pool document, adds or removes the promoted exemplar (the pool vector,
no second embedding, through :class:`~vss_core.labeling.exemplar_owner.PoolExemplars`, the one owner of a pool
image's exemplar), appends an entry with the state before and after to the audit stream and the
image's history, and records the action on the annotator's undo stack (:mod:`vss_core.labeling.audit`).
A change to an image that someone else changed since it was shown (its ``version`` moved on) is
refused, naming who and when.  Undo is one transaction too: the undo stack is watched with the images.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Sequence

from vss_core.config.keys import HOWS, SINGLE, promotion_policy
from vss_core.errors import InputError
from vss_core.labeling.audit import ActionResult, AuditLog, Conflict, HistoryEntry, check_annotator
from vss_core.labeling.exemplar_owner import PoolExemplars, public, same_state
from vss_core.labeling.exemplar_review import ExemplarReview
from vss_core.labeling.labels import validate_label
from vss_core.redis.exemplars import VectorStore
from vss_core.redis.index_layout import as_text
from vss_core.redis.pool import PoolStore
from vss_core.redis.project import ProjectStores
from vss_core.redis.schema import ACCEPTED, CORRECTED, DUBIOUS, FLAGS, PREDICTED, SKIPPED, STATUSES, ProjectLayout
from vss_core.timeutil import now_iso


@dataclass(frozen=True)
class Change:
    """Set image ``id`` to ``status``, ``label`` and ``flag`` (None keeps the current one).

    ``expected_version`` is the version the annotator saw; None means "only if still undecided".
    ``flag`` marks what mining found (``rare``, ``anomaly``, ``normal``, ``dismissed``; "" clears it).
    ``how`` says how it was decided (:data:`~vss_core.config.keys.HOWS`: one image, a page of tiles, a group
    listed in full, a bulk action after its preview); the project's promotion policy reads it."""

    id: str
    status: str | None
    label: str | None = None
    expected_version: int | None = None
    flag: str | None = None
    how: str = SINGLE

    def after(self, current: dict, annotator: str, now: str) -> dict:
        """The state this change leads to; accepting under another label is a correction."""
        label = self.label.strip() if self.label else current["label"]
        status = self.status or current["status"]
        if status == ACCEPTED and label != current["label"]:
            status = CORRECTED
        flag = current.get("flag", "") if self.flag is None else self.flag
        return {"label": label, "status": status, "flag": flag, "annotator": annotator, "decided_at": now,
                "decided_ts": time.time(), "how": self.how}


class Decisions:
    """Decisions on one project's pool; ``stores`` is the :class:`~vss_core.redis.project.ProjectStores`
    they act on (what mining and the views read)."""

    def __init__(self, pool: PoolStore, exemplars: VectorStore, layout: ProjectLayout, promote=True):
        self.pool = pool
        self.exemplars = exemplars
        self.layout = layout
        self.promote = promotion_policy(promote)  # the hows that make exemplars (True: the default policy)
        self.client = pool.client
        self.stores = ProjectStores(self.client, layout, exemplars, pool=pool)
        self.log = AuditLog(self.client, layout)
        self.owner = PoolExemplars(pool, exemplars, layout, promote)

    @classmethod
    def of(cls, stores: ProjectStores, promote) -> "Decisions":
        """Decisions over ``stores``; accepted pool images decided in one of the ways in ``promote``
        (the project's ``vss.promote`` policy) become exemplars."""
        decisions = cls(stores.pool, stores.exemplars, stores.layout, promote=promote)
        decisions.stores = stores
        return decisions

    # -- actions ---------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change], annotator: str, kind: str = "decide") -> ActionResult:
        """Apply ``changes`` as one undoable action by ``annotator``; a label that is not one
        (:func:`~vss_core.labeling.labels.validate_label`) refuses the whole action."""
        annotator = check_annotator(annotator)
        for change in changes:
            if change.status is not None and change.status not in STATUSES:
                raise InputError(f"unknown status {change.status!r} for image {change.id}")
            if change.how not in HOWS:
                raise InputError(f"unknown way of deciding {change.how!r} for image {change.id} (known: {', '.join(HOWS)})")
            if change.flag is not None and change.flag not in FLAGS:
                raise InputError(f"unknown flag {change.flag!r} for image {change.id} (known: {', '.join(FLAGS)})")
            if change.label is not None:
                validate_label(change.label, f"image {change.id}")
        return self._run({c.id: c for c in changes}, annotator, kind, undoable=True)

    def undo(self, annotator: str) -> ActionResult:
        """Undo ``annotator``'s last action (a bulk action as one); images changed since are refused.

        One transaction: the undo stack is watched with what the action changed, so two undos at once
        undo two actions."""
        annotator = check_annotator(annotator)
        action_id, stack = _new_id(), self.layout.undo_key(annotator)

        def work(pipe) -> ActionResult:
            pipe.watch(stack)
            last = as_text(pipe.lindex(stack, -1))
            if not last:
                raise InputError(f"{annotator} has nothing to undo")
            target, entries = self.log.action(pipe, last)
            if target == "exemplar":
                result = ExemplarReview(self).undo_on(pipe, entries, annotator, action_id)
            else:
                targets = {e["id"]: _Restore(e["id"], e["before"], e["after"]["version"], e["after"]) for e in entries}
                result = self.transition(pipe, targets, annotator, "undo", False, action_id)
            pipe.rpop(stack)
            return result

        return self.log.transact(action_id, work, "the undo")

    def revert(self, image_id: str, entry_index: int, annotator: str) -> ActionResult:
        """Set one image back to its state before history entry ``entry_index`` (an undoable action)."""
        annotator = check_annotator(annotator)
        history = self.history(image_id)
        if not 0 <= entry_index < len(history):
            raise InputError(f"image {image_id} has no history entry {entry_index}")
        current = self.pool.get([image_id])[0]
        version = current.version if current else None
        target = _Restore(image_id, history[entry_index].before, version)
        return self._run({image_id: target}, annotator, "revert", undoable=True)

    # -- reading ---------------------------------------------------------------------------
    def history(self, image_id: str) -> list[HistoryEntry]:
        """Every change of one image, oldest first."""
        return self.log.history(image_id)

    def audit(self, count: int = 100) -> list[dict]:
        """The newest ``count`` audit entries, newest first (see :meth:`AuditLog.audit`)."""
        return self.log.audit(count)

    def can_undo(self, annotator: str) -> bool:
        return self.log.can_undo(annotator)

    # -- the transaction -------------------------------------------------------------------
    def _run(self, targets: dict, annotator: str, kind: str, undoable: bool) -> ActionResult:
        action_id = _new_id()
        return self.log.transact(action_id, lambda pipe: self.transition(
            pipe, targets, annotator, kind, undoable, action_id))

    def transition(self, pipe, targets: dict, annotator: str, kind: str, undoable: bool,
                   action_id: str) -> ActionResult:
        """Inside a transaction: watch and read the images, plan, MULTI, queue the writes and the record."""
        if targets:
            pipe.watch(*[self.pool.key_for(id) for id in targets])
        states = {id: self.owner.read(pipe, id) for id in targets}
        plan, refused = self._plan(targets, states, annotator)
        vectors = {id: self.owner.settle(pipe, id, before, after) for id, before, after in plan}
        pipe.multi()
        changed = [self.owner.write(pipe, id, before, after, vectors[id]) for id, before, after in plan]
        if any(changed):
            self.owner.bump(pipe)
        changes = [(id, public(before), public(after)) for id, before, after in plan]
        return self.log.record(pipe, changes, refused, action_id, annotator, kind, undoable, target="pool")

    def _plan(self, targets: dict, states: dict, annotator: str):
        plan, refused = [], []
        now = now_iso()
        for id, target in targets.items():
            state = states[id]
            reason = _conflict(id, target, state)
            if reason:
                refused.append(Conflict(id, reason))
                continue
            after = target.after(state, annotator, now)
            after["version"] = state["version"] + 1
            plan.append((id, state, after))
        return plan, refused


@dataclass(frozen=True)
class _Restore:
    """Target state taken from an audit entry (undo, revert)."""

    id: str
    state: dict
    expected_version: int | None
    expected_state: dict | None = None  # undo: the state the action left (an undo since that put it back is no change)

    def after(self, current: dict, annotator: str, now: str) -> dict:
        return {"label": self.state["label"], "status": self.state["status"], "flag": self.state.get("flag", ""),
                "annotator": self.state.get("annotator", ""), "decided_at": self.state.get("decided_at", ""),
                "decided_ts": 0, "how": self.state.get("how", ""), "restores_exemplar": bool(self.state.get("exemplar"))}


def _conflict(id: str, target, state: dict | None) -> str | None:
    if state is None:
        return f"{id}: not in the pool (deleted?)"
    expected = target.expected_version
    if expected is None:
        if state["status"] != PREDICTED:
            return f"{id}: already {state['status']} by {state['annotator'] or 'someone'} at {state['decided_at']}"
        return None
    if state["version"] != expected and not (getattr(target, "expected_state", None)
                                             and same_state(state, target.expected_state)):
        who = state["annotator"] or "someone"
        return f"{id}: changed by {who} at {state['decided_at'] or 'an earlier time'} since you saw it"
    return None


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


__all__ = ["Change", "Conflict", "ActionResult", "HistoryEntry", "Decisions", "ACCEPTED", "CORRECTED",
           "DUBIOUS", "SKIPPED", "PREDICTED", "open_decisions", "decisions_over"]


def open_decisions(project, dim: int, model: str | None = None, client=None) -> Decisions:
    """Decisions on ``project``'s stores for ``dim``-d vectors of ``model``, opened by
    :func:`~vss_core.redis.project.open_project` (on ``client``, or a new connection)."""
    from vss_core.redis.project import open_project

    return Decisions.of(open_project(project, dim, model, client=client), project.promote)


def decisions_over(store: VectorStore, project) -> Decisions:
    """Decisions over ``project``'s open exemplar ``store`` that create no index (retiring exemplars and undoing
    read pool documents by key only): what the Exemplars page retires and undoes through."""
    from vss_core.redis.schema import layout_for

    layout = layout_for(project)
    return Decisions(PoolStore(store.client, layout.pool), store, layout, promote=project.promote)
