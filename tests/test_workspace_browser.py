"""The review tile workspace (ui.workspace) in headless Chromium, on tests/apps/workspace_demo.py: the grid.

The demo app stores the batches it gets (exactly once per client and seq) in the JSON file named by
WORKSPACE_OUT; each test works on its own store (``?run=<test>``).  Screenshots go to the test's tmp dir.
Key-to-screen latency is measured and printed, never asserted.  Fixtures: tests/workspace_kit.py; the
focus view and paging: tests/test_workspace_focus_browser.py.
"""

from __future__ import annotations

import random
import statistics

import pytest

from tests.workspace_kit import chromium_path, demo, page  # noqa: F401 (fixtures)
from tests.workspace_kit import (LATENCY_JS, LEGEND, N_ITEMS, REAL_KEYS_JS, VISIBLE_TILES_JS, assert_logged_once,
                                 cursor_at, grid_cols, item_id, open_demo, press, saved)

pytestmark = pytest.mark.browser


def test_48_large_tiles_fully_visible_without_scrolling(page, demo, tmp_path):
    pg = page
    ws = open_demo(pg, demo, "visible")
    visible = ws.evaluate(VISIBLE_TILES_JS)
    pg.screenshot(path=str(tmp_path / "workspace_1280x800.png"))
    assert visible >= 48, f"only {visible} tiles of 128 px or more are fully visible at 1280 x 800"
    assert pg.evaluate("() => scrollY") == 0
    assert ws.locator(".ws-counter").inner_text() == f"0 of {N_ITEMS} decided on this page"
    first = ws.locator(".tile").first
    assert first.locator(".sugg").inner_text() == LEGEND[0]
    assert first.locator(".score").inner_text() == "0.350"  # 3 decimals
    assert ws.locator(".tile.is-uncertain").count() > 0


def test_arrows_move_space_toggles_out_and_a_accepts_the_rest(page, demo, tmp_path):
    pg = page
    ws = open_demo(pg, demo, "accept")
    cols = grid_cols(pg)
    assert cursor_at(pg) == 0
    press(pg, "ArrowRight", "ArrowRight")
    assert cursor_at(pg) == 2
    press(pg, "ArrowDown")
    assert cursor_at(pg) == 2 + cols
    press(pg, "k", "l", "j", "h", "ArrowUp", "ArrowLeft")
    assert cursor_at(pg) == 1
    press(pg, "Space")  # tile 1 out
    press(pg, "l", "l", "Space")  # tile 3 out
    press(pg, "l", "Space", "Space")  # tile 4 out and in again
    ws.locator(".tile").nth(7).click()  # a click toggles too: tile 7 out
    outs = [int(i) for i in ws.locator(".tile.is-out").evaluate_all("ts => ts.map(t => t.dataset.idx)")]
    assert outs == [1, 3, 7]
    assert ws.locator(".tile.is-out .badge").first.inner_text() == "out"
    pg.screenshot(path=str(tmp_path / "three_out.png"))
    press(pg, "a")
    store = saved(pg, demo, "accept")
    pg.screenshot(path=str(tmp_path / "accepted_the_rest.png"))
    expected = {item_id(i): {"status": "accepted", "label": LEGEND[i % len(LEGEND)], "how": "page"}
                for i in range(N_ITEMS) if i not in outs}
    assert store["decisions"] == expected
    assert sorted(e["id"] for e in store["log"]) == sorted(expected)  # each once
    assert_logged_once(store)
    assert ws.locator(".ws-counter").inner_text() == f"{N_ITEMS - 3} of {N_ITEMS} decided on this page"
    assert ws.locator(".tile.is-accepted").count() == N_ITEMS - 3
    assert ws.locator(".tile").count() == N_ITEMS  # decided tiles stay in place


def test_number_keys_label_selection_dubious_and_undo(page, demo, tmp_path):
    pg = page
    ws = open_demo(pg, demo, "label")
    tile = ws.locator(".tile")
    press(pg, "3")  # tile 0 -> jelly; the cursor goes on to tile 1
    assert tile.nth(0).locator(".badge").inner_text() == "✓ jelly"
    assert "is-accepted" in tile.nth(0).get_attribute("class")
    assert cursor_at(pg) == 1
    tile.nth(5).click(modifiers=["Control"])
    tile.nth(6).click(modifiers=["Control"])
    tile.nth(10).click(modifiers=["Shift"])  # shift: the range from the anchor (6) to 10
    assert ws.locator(".tile.is-selected").count() == 6
    pg.screenshot(path=str(tmp_path / "selected.png"))
    press(pg, "Escape")
    assert ws.locator(".tile.is-selected").count() == 0
    tile.nth(5).click(modifiers=["Control"])
    tile.nth(6).click(modifiers=["Control"])
    press(pg, "2")  # both selected tiles -> diatom
    assert [tile.nth(i).locator(".badge").inner_text() for i in (5, 6)] == ["✓ diatom"] * 2
    press(pg, "ArrowRight", "d", "u")  # dubious, undone before it is sent
    assert ws.locator(".tile.is-dubious").count() == 0
    pg.screenshot(path=str(tmp_path / "labelled.png"))
    store = saved(pg, demo, "label")
    assert store["decisions"] == {
        item_id(0): {"status": "accepted", "label": "jelly", "how": "single"},
        item_id(5): {"status": "accepted", "label": "diatom", "how": "single"},
        item_id(6): {"status": "accepted", "label": "diatom", "how": "single"}}
    press(pg, "d")
    store = saved(pg, demo, "label")
    dubious = [k for k, v in store["decisions"].items() if v["status"] == "dubious"]
    assert len(dubious) == 1 and ws.locator(".tile.is-dubious").count() == 1
    press(pg, "u", "u")  # both sent already: undo requests for the dubious one, then for 5 and 6
    store = saved(pg, demo, "label")
    assert store["decisions"] == {item_id(0): {"status": "accepted", "label": "jelly", "how": "single"}}
    assert [e["id"] for e in store["log"] if e["how"] == "undo"] == [dubious[0], item_id(5), item_id(6)]
    assert ws.locator(".ws-counter").inner_text() == f"1 of {N_ITEMS} decided on this page"
    assert_logged_once(store)
    pg.screenshot(path=str(tmp_path / "after_undo.png"))


def _model(keys: list[str], cols: int) -> tuple[dict[str, str], list[str]]:
    """What the keys should do: the final label of each tile and the decisions in order."""
    cursor, final, order = 0, {}, []
    moves = {"h": -1, "l": 1, "j": cols, "k": -cols}
    for key in keys:
        if key in moves:
            if 0 <= cursor + moves[key] < N_ITEMS:
                cursor += moves[key]
        else:
            final[item_id(cursor)] = LEGEND[int(key) - 1]
            order.append(item_id(cursor))
            cursor = min(cursor + 1, N_ITEMS - 1)
    return final, order


def test_200_keys_50_ms_apart_none_lost_each_stored_once(page, demo, tmp_path):
    pg = page
    ws = open_demo(pg, demo, "burst")
    rng = random.Random(7)
    keys = rng.choices(["1", "2", "3", "4", "5", "l", "h", "j", "k"], weights=[10] * 5 + [20, 15, 8, 7], k=200)
    final, order = _model(keys, grid_cols(pg))
    for key in keys:
        pg.keyboard.press(key)
        pg.wait_for_timeout(50)
    store = saved(pg, demo, "burst")
    pg.screenshot(path=str(tmp_path / "after_200_keys.png"))
    assert {k: v["label"] for k, v in store["decisions"].items()} == final
    assert [e["id"] for e in store["log"]] == order  # every decision, once, in the order of the keys
    assert_logged_once(store)
    assert len(store["applied"]) > 1  # batches, not one rerun per key and not one batch at the end
    assert len(store["applied"]) < len(order)
    shown = ws.locator(".tile.is-accepted").evaluate_all(
        "ts => Object.fromEntries(ts.map(t => [t.dataset.id, t.querySelector('.badge').textContent]))")
    assert shown == {k: f"✓ {v}" for k, v in final.items()}
    print(f"\n200 keys: {len(order)} decisions in {len(store['applied'])} batches")


def test_conflicts_from_python_show_on_the_tiles(page, demo, tmp_path):
    pg = page
    ws = open_demo(pg, demo, "conflict", "&locked=item-003")
    press(pg, "l", "l", "l", "1", "1")
    store = saved(pg, demo, "conflict")
    assert set(store["decisions"]) == {item_id(4)}
    locked = ws.locator('.tile[data-id="item-003"]')
    from playwright.sync_api import expect

    expect(locked.locator(".conflict")).to_have_text("locked by another reviewer")
    assert "has-conflict" in locked.get_attribute("class")
    assert "is-decided" not in locked.get_attribute("class")  # back to what Python says
    pg.screenshot(path=str(tmp_path / "conflict.png"))


def _summary(values: list[float]) -> str:
    values = sorted(values)
    return (f"median {statistics.median(values):.2f} ms, p95 {values[int(0.95 * (len(values) - 1))]:.2f} ms, "
            f"max {values[-1]:.2f} ms")


def test_key_to_screen_latency_is_measured(page, demo):
    """Prints the latency; asserts only that every key changed the page."""
    pg = page
    ws = open_demo(pg, demo, "latency")
    moves = ws.evaluate(LATENCY_JS, ["ArrowRight", "ArrowLeft"] * 20)
    labels = ws.evaluate(LATENCY_JS, ["1", "2", "3", "4", "5"] * 6)
    ws.evaluate(REAL_KEYS_JS)
    for key in ["l", "h"] * 10 + ["1", "2"] * 5:
        pg.keyboard.press(key)
        pg.wait_for_timeout(30)
    pg.wait_for_function("() => window.__lat.length >= 30")
    real = pg.evaluate("() => window.__lat")
    saved(pg, demo, "latency")
    assert all(m["mutation"] is not None for m in moves + labels), "a key left the page unchanged"
    print("\nkey -> DOM change (dispatched in page): moves " + _summary([m["mutation"] for m in moves])
          + "; labels " + _summary([m["mutation"] for m in labels]))
    print("key -> next frame (dispatched in page): moves " + _summary([m["frame"] for m in moves])
          + "; labels " + _summary([m["frame"] for m in labels]))
    print("real key event -> DOM change " + _summary([r["change"] for r in real])
          + "; -> next frame " + _summary([r["frame"] for r in real]))
