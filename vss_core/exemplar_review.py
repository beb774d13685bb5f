"""Exemplar self-audit actions: keep, relabel or retire exemplars, recorded in the same audit log and
undoable from the same undo stack as pool decisions (:class:`vss_core.decisions.Decisions`).

Retiring moves the exemplar's hash out of the index (``vss:<index>:retired:<key>``) instead of
deleting it, so undo puts it back as it was, vector included.  Works on fastapi-vss databases too.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Sequence

import redis

from .decisions import ActionResult, Conflict, Decisions, _annotator
from .errors import InputError, VSSError
from .index_layout import as_text
from .schema import TAG

KEEP, RELABEL, RETIRE = "keep", "relabel", "retire"


class ExemplarReview:
    """Audited actions on one project's exemplars."""

    def __init__(self, decisions: Decisions):
        self.d = decisions
        self.store = decisions.exemplars
        self.client = decisions.client

    def keep(self, keys: Sequence[str], annotator: str) -> ActionResult:
        """Mark exemplars as checked and right (they rank last in the next audit)."""
        now = _now()
        return self._act(keys, annotator, KEEP, lambda key, label, who: (key, label, f"kept by {who} {now}"))

    def relabel(self, keys: Sequence[str], new_label: str, annotator: str) -> ActionResult:
        """Move exemplars to ``new_label``; one whose new key exists already is refused."""
        if not new_label.strip():
            raise InputError("empty label")
        new_label = new_label.strip()
        return self._act(keys, annotator, RELABEL, lambda key, label, who: (
            self.store.key_for(new_label, self.store.split_key(key)[1]), new_label, ""))

    def retire(self, keys: Sequence[str], annotator: str) -> ActionResult:
        """Take exemplars out of the index (kept aside for undo)."""
        return self._act(keys, annotator, RETIRE, lambda key, label, who: (self.d.layout.retired_key(key), label, ""))

    def _act(self, keys: Sequence[str], annotator: str, kind: str, target) -> ActionResult:
        annotator = _annotator(annotator)
        moves = []
        for key in dict.fromkeys(keys):
            label = as_text(self.client.hget(key, "label") or self.client.hget(key, TAG)) or self.store.split_key(key)[0]
            new_key, new_label, mark = target(key, label, annotator)
            moves.append((key, new_key, {"key": key, "label": label, "audit": as_text(self.client.hget(key, "audit"))},
                          {"key": new_key, "label": new_label, "audit": mark}))
        return self._apply(moves, annotator, kind, undoable=True)

    def undo_entries(self, entries: list[dict], annotator: str) -> ActionResult:
        """Put exemplars back as the entries' ``before`` states say (called by ``Decisions.undo``)."""
        moves = [(e["after"]["key"], e["before"]["key"], e["after"], e["before"]) for e in entries]
        return self._apply(moves, annotator, "undo", undoable=False)

    def _apply(self, moves: list, annotator: str, kind: str, undoable: bool) -> ActionResult:
        action_id = uuid.uuid4().hex[:16]
        watched = [k for key, new_key, _, _ in moves for k in (key, new_key)]
        outcome: dict = {}

        def work(pipe) -> None:
            ok, refused = [], []
            for key, new_key, before, after in moves:
                reason = self._refusal(pipe, key, new_key)
                (refused.append(Conflict(before["key"], reason)) if reason else ok.append((key, new_key, before, after)))
            pipe.multi()
            for key, new_key, before, after in ok:
                if new_key != key:
                    pipe.rename(key, new_key)
                if kind == RELABEL or (kind == "undo" and before["label"] != after["label"]):
                    pipe.hset(new_key, mapping={TAG: after["label"], "label": after["label"]})
                if after["audit"]:
                    pipe.hset(new_key, "audit", after["audit"])
                else:
                    pipe.hdel(new_key, "audit")
            changes = [(before["key"], before, after) for _, _, before, after in ok]
            outcome["result"] = self.d.record(pipe, changes, refused, action_id, annotator, kind, undoable,
                                              target="exemplar")

        try:
            self.client.transaction(work, *watched)
        except redis.RedisError as exc:
            raise VSSError(f"changing exemplars failed, nothing was changed: {exc}") from exc
        return outcome["result"]

    def _refusal(self, pipe, key: str, new_key: str) -> str | None:
        if not pipe.exists(key):
            return f"{key}: no such exemplar (changed by someone else?)"
        if new_key != key and pipe.exists(new_key):
            return f"{key}: {new_key} exists already"
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
