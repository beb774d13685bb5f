"""An action over a set of images (a group, a selection, a box on the map) lists every image it will touch,
page by page, before it applies, and then applies to exactly those: nothing is decided that was not on
screen.  The images are frozen (id and version) when the action is asked for; one changed since is refused
by the engine as a conflict, never decided unseen.  Also: a wrapping grid of thumbnails whose captions
never run into each other."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import streamlit as st

from ui import mining_view, state
from ui.plain import md
from ui.review import thumb_uri
from vss_core.config.keys import GROUP, SINGLE
from vss_core.labeling.decisions import Change

PER_PAGE = 24


@dataclass(frozen=True)
class Pending:
    """An action waiting for its preview: ``title`` says what it does, ``kind`` is recorded with the
    decisions (e.g. "group new class"), ``members`` are the (id, version) pairs listed."""

    title: str
    kind: str
    members: tuple[tuple[str, int], ...]
    status: str | None = None
    label: str | None = None
    flag: str | None = None
    seen: frozenset[int] = field(default=frozenset())

    def changes(self) -> list[Change]:
        return [Change(id, self.status, label=self.label, expected_version=version, flag=self.flag, how=GROUP)
                for id, version in self.members]


def pending(items, title: str, kind: str, **change) -> Pending:
    """The action ``kind`` over ``items`` (pool items, as shown), not yet applied."""
    return Pending(title, kind, tuple((i.id, i.version) for i in items), **change)


def decide(d, items, key: str, kind: str, title: str, source: str = "selection", **change) -> None:
    """A button's callback: one image (a row the annotator picked) is decided now, as ``kind``; several
    open their preview under ``key``, to be recorded as "``source`` ``kind``" once applied."""
    if len(items) == 1:
        i = items[0]
        fields = {"status": None, **change}
        mining_view.act(d, [Change(i.id, expected_version=i.version, how=SINGLE, **fields)], kind)
    elif items:
        ask(key, pending(items, title, f"{source} {kind}", **change))


def ask(key: str, action: Pending) -> None:
    """Open the preview of ``action`` under ``key`` (a button's on_click)."""
    st.session_state[_state(key)] = action
    st.session_state.pop(f"{key}_preview_page", None)


def cancel(key: str) -> None:
    st.session_state.pop(_state(key), None)


def preview(d, key: str) -> None:
    """The open action under ``key``, if any: every image it touches, PER_PAGE at a time, then Apply (only
    once every page has been shown) or Cancel."""
    action = st.session_state.get(_state(key))
    if action is None:
        return
    n = len(action.members)
    pages = max(1, -(-n // PER_PAGE))
    with st.container(border=True, key=f"{key}_preview"):
        st.markdown(f"**{md(action.title)}**")
        page = st.pagination(pages, key=f"{key}_preview_page", max_visible_pages=5) if pages > 1 else 1
        page = min(max(int(page), 1), pages)
        action = _seen(key, action, page)
        st.caption(f"{n:,} image(s): page {page} of {pages}")
        ids = [id for id, _ in action.members[(page - 1) * PER_PAGE:page * PER_PAGE]]
        grid(pool_cells(ids, d.pool.get(ids)), name=f"{key}_preview")
        left = pages - len(action.seen)
        if left:
            st.caption(f"Page through the {left} page(s) not yet shown: the action applies only to images "
                       "you have seen.")
        with st.container(horizontal=True):
            st.button(f"Apply to {n:,}", key=f"{key}_apply", type="primary", icon=":material/done_all:",
                      disabled=bool(left) or not state.annotator(), on_click=_apply, args=(d, key))
            st.button("Cancel", key=f"{key}_cancel", on_click=cancel, args=(key,))


def grid(cells, size: int = 96, name: str = "", first: bool = False) -> None:
    """Thumbnails in a grid that wraps to the width; ``cells`` are (id, image source or None, caption
    lines).  Each caption line is a line of its own, cut short with an ellipsis (the full text on hover),
    so captions never run into each other at any width; a long file name keeps its start and end
    (``field_c…_0009.jpg``).  ``name`` marks the grid (``data-for``); ``first`` outlines the first cell."""
    out = []
    for n, (id, source, lines) in enumerate(cells):
        img = f'<img src="{thumb_uri(source)}" alt="">' if source else '<div class="vss-gone"></div>'
        text = "".join(f'<div class="vss-cap" title="{html.escape(str(t))}">{html.escape(_short(str(t)))}</div>'
                       for t in lines if t)
        main = ' class="vss-main"' if first and not n else ""
        out.append(f'<figure data-id="{html.escape(str(id))}"{main}>{img}{text}</figure>')
    body = f'<div class="vss-grid" data-for="{html.escape(name)}">{"".join(out)}</div>'
    st.html(_STYLE.replace("SIZE", str(size)) + body)


def _short(text: str, keep: int = 18) -> str:
    """``text`` cut in the middle when longer than ``keep`` characters (file names differ at the end)."""
    return text if len(text) <= keep else text[:keep // 2 - 1] + "…" + text[-(keep - keep // 2):]


def pool_cells(ids, items) -> list:
    """Grid cells of pool images: file name, then label (or suggestion); "gone" for one deleted since."""
    return [(id, item.source, (item.name, item.label or item.suggestion)) if item is not None
            else (id, None, (id, "gone")) for id, item in zip(ids, items)]


def _apply(d, key: str) -> None:
    action = st.session_state.pop(_state(key), None)
    if action is not None:
        mining_view.act(d, action.changes(), action.kind)


def _seen(key: str, action: Pending, page: int) -> Pending:
    if page - 1 not in action.seen:
        action = Pending(**{**action.__dict__, "seen": action.seen | {page - 1}})
        st.session_state[_state(key)] = action
    return action


def _state(key: str) -> str:
    return f"{key}_pending"


_STYLE = """<style>
.vss-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(SIZEpx,1fr));gap:10px 8px;margin:4px 0}
.vss-grid figure{margin:0;min-width:0}
.vss-grid img,.vss-grid .vss-gone{width:100%;aspect-ratio:1;object-fit:contain;background:#f0f2f6;border-radius:4px;
display:block}
.vss-grid figure.vss-main img{outline:3px solid #0b6e99;outline-offset:-3px}
.vss-grid .vss-cap{font-size:12px;line-height:1.35;color:#555;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
</style>"""

__all__ = ["PER_PAGE", "Pending", "pending", "decide", "ask", "cancel", "preview", "grid", "pool_cells"]
