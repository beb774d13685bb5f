"""The review tile workspace: every item of a page as a grid of large tiles, decided from the keyboard.

A Streamlit Components v2 component (no iframe; plain JS and CSS next to this file, no build step:
``base.js``, ``outbox.js``, ``picker.js``, ``focus.js``, ``actions.js``, ``workspace.js`` are joined into
one module, ``workspace.css`` and ``focus.css`` into one style sheet).  Keys are handled in the browser: the page
changes at once and the decisions come back to Python in batches, not one rerun per key.

Messages from the browser are trigger values; Python reads them with four functions, each returning
what arrived once (so call each one in every run, before ``tiles``, and act on it):

* ``take_batches(key)`` -> the new decision batches, or None (``tiles`` also returns them).
* ``focus_request(key)`` -> the id of the tile whose focus view was opened (Enter or F on a tile), or
  None.  Answer by passing ``focus=`` data for that id to ``tiles`` (see there); the focus view shows
  the grid's image with "loading neighbours..." until it comes.  Passing the same data again in later
  runs is harmless (it is kept per id in the browser).
* ``focus_closed(key)`` -> True when a message (each one says which focus view is open) said none is:
  stop sending its data.
* ``page_request(key)`` -> "next" (keys N, PageDown) or "prev" (P, PageUp), or None.  The browser sends
  it only after every pending decision has been sent and acknowledged, so apply the batches of the run
  first (``take_batches``), then turn the page.

Each batch is ``{"client": str, "seq": int, "decisions": [...], "undo": int}``; ``client`` is a random
id of one mounted component (a browser reload makes a new one) and ``seq`` grows by one with each message
of that client (batches, focus and page requests share it).  A decision is ``{"id", "version", "status",
"label", "how"}``: ``status`` "accepted" (``label`` = the label given: the suggestion, a legend label for
keys 1-9, or in the focus view a neighbour's label or one typed in the picker), "dubious" (``label``
None), or, for ``how == "undo"``, the state to go back to ("predicted" = undecided, or the earlier
decision); ``how`` is "page" (key A: every tile still in), "single" (keys 1-9, D, and every decision
made in the focus view) or "undo" (key U on an action already sent; ``undo`` counts those).  Apply a
batch's decisions in order.

The component sends one message at a time and the next one only when this wrapper has acknowledged it
(the acknowledgement goes back in the data of the same rerun); a message not acknowledged within a few
seconds is sent again with the same ``seq``.  So keys pressed while a batch is in flight are queued,
never lost, and a batch can arrive twice: ``tiles`` returns each ``(client, seq)`` once per session,
and callers that store decisions should still skip a ``(client, seq)`` they have applied.  Pending
decisions are also sent at once when the tab is hidden or the page goes away (``visibilitychange``,
``pagehide``), before a page request, and when the component is unmounted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import streamlit as st

NAME = "vss_workspace"
MAX_LEGEND = 9
UNDECIDED = "predicted"
_HERE = Path(__file__).resolve().parent
JS_FILES = ("base.js", "outbox.js", "picker.js", "focus.js", "actions.js", "workspace.js")  # one module, in this order
CSS_FILES = ("workspace.css", "focus.css")
EVENTS = ("batch", "page", "focus")
PAGES = ("next", "prev")


def _joined(names: Iterable[str]) -> str:
    return "\n".join((_HERE / name).read_text(encoding="utf-8") for name in names)


_component = st.components.v2.component(NAME, css=_joined(CSS_FILES), js=_joined(JS_FILES))

COMPACT_PAGE_CSS = """<style>
header[data-testid="stHeader"] { top: auto; bottom: 6px; left: auto; right: 12px; width: auto; height: auto; min-height: 0; background: transparent; }
header[data-testid="stHeader"] [data-testid="stToolbar"], header[data-testid="stHeader"] [data-testid="stToolbar"] div { width: auto; min-width: 0; flex: 0 0 auto; gap: 6px; justify-content: flex-end; }
[data-testid="stMainBlockContainer"], .block-container { padding: 4px 0.5rem 2rem !important; max-width: none !important; }
</style>"""


def compact_page() -> None:
    """Fold Streamlit's header away (its toolbar, with the button that opens the sidebar, moves to the
    bottom right corner) and the top padding, so a workspace at the top of the page gets the screen.

    At 1280 x 800 this is what leaves room for 48 tiles of 128 px (8 x 6) next to the side panel."""
    st.html(COMPACT_PAGE_CSS)


def _state_keys(key: str) -> tuple[str, str]:
    return f"_vss_ws_pending_{key}", f"_vss_ws_ack_{key}"


def _request_key(key: str, event: str) -> str:
    return f"_vss_ws_{event}_{key}"


def _on_message(key: str, event: str) -> None:
    """Runs before the script body: keep a new message for this run and acknowledge it in this run."""
    _keep(key, event, (st.session_state.get(key) or {}).get(event))


def _keep(key: str, event: str, value: Any) -> None:
    pending_key, ack_key = _state_keys(key)
    if not isinstance(value, dict):
        return
    client, seq = value.get("client"), value.get("seq")
    if not isinstance(client, str) or not isinstance(seq, int) or isinstance(seq, bool):
        return
    ack = st.session_state.get(ack_key)
    if ack and ack["client"] == client and seq <= ack["seq"]:
        return  # a message sent again: seen already
    st.session_state[ack_key] = {"client": client, "seq": seq}
    if "focused" in value and value["focused"] is None:
        st.session_state[_request_key(key, "closed")] = True
    if event == "batch":
        st.session_state.setdefault(pending_key, []).append(_clean_batch(value))
    elif event == "page" and value.get("to") in PAGES:
        st.session_state[_request_key(key, event)] = value["to"]
    elif event == "focus" and isinstance(value.get("id"), (str, int)) and not isinstance(value["id"], bool):
        st.session_state[_request_key(key, event)] = str(value["id"])


def _clean_batch(value: Mapping[str, Any]) -> dict:
    decisions = []
    for d in value.get("decisions") or []:
        if isinstance(d, dict) and d.get("id") is not None and isinstance(d.get("status"), str):
            label = d.get("label")
            decisions.append({"id": str(d["id"]), "version": d.get("version"), "status": d["status"],
                              "label": label if isinstance(label, str) else None,
                              "how": str(d.get("how") or "single")})
    undo = value.get("undo")
    return {"client": value["client"], "seq": value["seq"], "decisions": decisions,
            "undo": undo if isinstance(undo, int) else 0}


def take_batches(key: str) -> list[dict] | None:
    """The new batches of the workspace ``key`` (each once), or None; ``tiles`` calls it too.

    Call it before ``tiles`` to apply the decisions first and pass their conflicts in the same run."""
    return st.session_state.pop(_state_keys(key)[0], None) or None


def focus_request(key: str) -> str | None:
    """The id of the tile whose focus view the annotator opened, once; None when nothing new was asked.

    Answer with ``tiles(..., focus=...)`` for that id (in this run, or later)."""
    return st.session_state.pop(_request_key(key, "focus"), None)


def focus_closed(key: str) -> bool:
    """True, once, when a message said no focus view is open (it was closed, or never opened): stop
    passing ``focus=`` data to ``tiles`` until the next ``focus_request``."""
    return bool(st.session_state.pop(_request_key(key, "closed"), False))


def page_request(key: str) -> str | None:
    """"next" or "prev" when the annotator asked for another page (keys N / P), once; else None.

    Every decision made before the key was sent first: ``take_batches`` of the same run has them."""
    return st.session_state.pop(_request_key(key, "page"), None)


def _score(value: Any) -> float | None:
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def _item(item: Mapping[str, Any]) -> dict:
    version = item.get("version")
    return {"id": str(item["id"]),
            "version": version if isinstance(version, (int, str)) else None,
            "src": str(item.get("src") or ""),
            "suggestion": str(item.get("suggestion") or ""),
            "score": _score(item.get("score")),
            "status": str(item.get("status") or UNDECIDED),
            "label": None if item.get("label") is None else str(item["label"]),
            "uncertain": bool(item.get("uncertain"))}


def _focus(focus: Mapping[str, Any] | None) -> dict | None:
    if not focus or focus.get("id") is None:
        return None
    neighbors = [{"label": str(n.get("label") or ""), "score": _score(n.get("score")), "src": str(n.get("src") or "")}
                 for n in focus.get("neighbors") or [] if isinstance(n, Mapping)]
    return {**_item(focus), "name": str(focus.get("name") or focus["id"]), "neighbors": neighbors,
            "labels": [str(label) for label in focus.get("labels") or [] if label]}


def tiles(items: Iterable[Mapping[str, Any]], legend: Iterable[str], *, key: str, tile_px: int = 144,
          page_label: str = "", conflicts: Mapping[str, str] | None = None,
          focus: Mapping[str, Any] | None = None) -> list[dict] | None:
    """Show ``items`` as a tile workspace; return the new decision batches (see the module doc) or None.

    ``items``: dicts with ``id``, ``version``, ``src`` (data: URI or URL), ``suggestion``, ``score``,
    ``status`` ("predicted" = undecided), ``label``, ``uncertain``.  ``legend``: at most 9 labels, the
    i-th one on key i+1.  ``tile_px``: the largest tile side the automatic fit uses (+/- in the page
    change it).  ``conflicts``: ``{id: reason}`` shown on those tiles.  ``focus``: the focus view's data
    for one item (the answer to ``focus_request``): the item's keys as above with ``src`` a large image
    (>= 384 px), plus ``name``, ``neighbors`` (``[{"label", "score", "src"}]``, nearest first; their
    distinct labels go on keys 1-9) and ``labels`` (every known label, for the type-ahead picker).
    """
    legend = [str(label) for label in legend]
    if len(legend) > MAX_LEGEND:
        raise ValueError(f"a workspace legend has at most {MAX_LEGEND} labels, got {len(legend)}")
    batches = take_batches(key)
    data = {"items": [_item(it) for it in items], "legend": legend, "tile_px": int(tile_px),
            "page_label": str(page_label),
            "conflicts": {str(k): str(v) for k, v in (conflicts or {}).items()},
            "ack": st.session_state.get(_state_keys(key)[1]), "focus": _focus(focus)}
    callbacks = {f"on_{event}_change": (lambda event=event: _on_message(key, event)) for event in EVENTS}
    result = _component(key=key, data=data, **callbacks)
    for event in EVENTS:  # a message whose callback did not run (seen ones are skipped)
        _keep(key, event, result.get(event))
    return (batches or []) + (take_batches(key) or []) or None
