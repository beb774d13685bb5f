"""Fixtures and helpers of the tile workspace's browser tests (tests/test_workspace_*browser.py).

The demo app (tests/apps/workspace_demo.py) runs under `streamlit run` on a free loopback port, once per
test module; each test gets its own Chromium page at 1280 x 800 (Debian's /usr/bin/chromium, never a
downloaded browser; skipped when it is missing unless CI=true) and its own store in the app (``?run=``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.browser_kit import chromium_or_skip, chromium_page, streamlit_server

REPO = Path(__file__).resolve().parent.parent
N_ITEMS = 60
LEGEND = ["copepod", "diatom", "jelly", "larvacean", "marine snow"]  # as in the demo app
WS = ".vss-ws"
VISIBLE_TILES_JS = """ws => {
        const root = ws.getRootNode(), grid = ws.querySelector('.ws-grid').getBoundingClientRect();
        return [...ws.querySelectorAll('.tile')].filter(t => {
            const r = t.getBoundingClientRect();
            const inside = r.width >= 128 && r.height >= 128 && r.top >= Math.max(0, grid.top) && r.left >= 0
                && r.bottom <= Math.min(innerHeight, grid.bottom) && r.right <= innerWidth;
            const corners = [[r.left + 3, r.top + 3], [r.right - 3, r.top + 3], [r.left + 3, r.bottom - 3],
                             [r.right - 3, r.bottom - 3]];
            return inside && corners.every(([x, y]) => root.elementFromPoint(x, y)?.closest('.tile') === t);
        }).length;
    }"""
"""``ws => n``: the tiles of 128 px or more fully on screen and inside the grid, nothing on top of them."""


@pytest.fixture(scope="module")
def chromium_path():
    return chromium_or_skip()


@pytest.fixture(scope="module")
def demo(chromium_path, tmp_path_factory):
    """`streamlit run tests/apps/workspace_demo.py` on a free loopback port; yields (url, store file)."""
    work = tmp_path_factory.mktemp("workspace_demo")
    out = work / "store.json"
    with streamlit_server("tests/apps/workspace_demo.py", {**os.environ, "WORKSPACE_OUT": str(out)},
                          work / "streamlit.log") as (url, _):
        yield url, out


@pytest.fixture
def page(chromium_path):
    with chromium_page(chromium_path, 1280, 800) as pg:
        yield pg


def open_demo(pg, demo, run: str, query: str = ""):
    from playwright.sync_api import expect

    pg.goto(f"{demo[0]}/?run={run}{query}")
    expect(pg.locator(f"{WS} .tile")).to_have_count(N_ITEMS, timeout=60_000)
    expect(pg.locator(f"{WS}.active")).to_have_count(1)  # it took the focus: keys go to it
    expect(pg.locator(f"{WS} .ws-keys-state")).to_have_text("● keys active")
    return pg.locator(WS)


def saved(pg, demo, run: str) -> dict:
    """Wait until every decision was sent and acknowledged; the demo's store for ``run``."""
    from playwright.sync_api import expect

    expect(pg.locator(WS)).to_have_attribute("data-sync", "idle", timeout=30_000)
    out = demo[1]
    return json.loads(out.read_text())[run] if out.exists() else {"decisions": {}, "log": [], "applied": []}


def cursor_at(pg) -> int:
    return int(pg.locator(f"{WS} .tile.is-cursor").get_attribute("data-idx"))


def grid_cols(pg) -> int:
    return len(pg.locator(f"{WS} .ws-grid").evaluate("g => getComputedStyle(g).gridTemplateColumns").split())


def item_id(i: int) -> str:
    return f"item-{i:03d}"


def press(pg, *keys: str) -> None:
    for key in keys:
        pg.keyboard.press(key)


def assert_logged_once(store: dict) -> None:
    tags = [(e["batch"], e["n"]) for e in store["log"]]
    assert len(tags) == len(set(tags)), "a decision was stored twice"
    assert len(store["applied"]) == len(set(store["applied"]))


# Key -> screen latency, read in the page (the tests print it, bench/review_workspace.py records it).
LATENCY_JS = """async (ws, keys) => {
    const grid = ws.querySelector('.ws-grid'), out = [];
    for (const key of keys) {
        let changed = null;
        const mo = new MutationObserver(() => { if (changed === null) changed = performance.now(); });
        mo.observe(grid, {attributes: true, subtree: true, childList: true, characterData: true});
        const t0 = performance.now();
        ws.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true, cancelable: true, composed: true}));
        const handled = performance.now();
        await new Promise(r => requestAnimationFrame(() => r()));
        const frame = performance.now();
        mo.disconnect();
        out.push({key, handler: handled - t0, mutation: changed === null ? null : changed - t0, frame: frame - t0});
    }
    return out;
}"""

REAL_KEYS_JS = """ws => {
    const grid = ws.querySelector('.ws-grid');
    window.__lat = [];
    ws.addEventListener('keydown', e => {
        const t = e.timeStamp;
        const mo = new MutationObserver(() => {
            mo.disconnect();
            const changed = performance.now();
            requestAnimationFrame(() => window.__lat.push({change: changed - t, frame: performance.now() - t}));
        });
        mo.observe(grid, {attributes: true, subtree: true, childList: true, characterData: true});
    }, {capture: true});
}"""
