"""The tile workspace's focus view (Enter on a tile) and paging (N / P) in headless Chromium.

On tests/apps/workspace_demo.py, whose focus data has a 512 px image and six fake neighbours; see
tests/test_workspace_browser.py for the grid.  The focus view's screenshot at 1280 x 800 goes to the
test's tmp dir (its path is printed).
"""

from __future__ import annotations

import re

import pytest

from tests.workspace_kit import chromium_path, demo, page  # noqa: F401 (fixtures)
from tests.workspace_kit import LEGEND, N_ITEMS, WS, assert_logged_once, cursor_at, item_id, open_demo, press, saved

pytestmark = pytest.mark.browser

FOCUS = f"{WS} .ws-focus"


def _first_neighbor_label(i: int) -> str:
    return LEGEND[(i + 1) % len(LEGEND)]  # as the demo's fake neighbours


def _open_focus(pg, i: int) -> None:
    """Move the cursor to tile i (from wherever it is) and open its focus view with Enter."""
    from playwright.sync_api import expect

    while cursor_at(pg) != i:
        press(pg, "ArrowRight" if cursor_at(pg) < i else "ArrowLeft")
    press(pg, "Enter")
    expect(pg.locator(FOCUS)).to_be_visible()
    expect(pg.locator(f"{FOCUS} .fv-nb")).to_have_count(6)  # the neighbours came from Python


def _picker_has_focus(pg) -> bool:
    return pg.locator(WS).evaluate("ws => ws.getRootNode().activeElement === ws.querySelector('.fv-input')")


OPEN_NOW_JS = """ws => {  // Enter on the cursor tile, and what the focus view shows before Python can answer
    ws.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true, cancelable: true, composed: true}));
    const f = ws.querySelector('.ws-focus'), tile = ws.querySelector('.tile.is-cursor img');
    return {hidden: f.hidden, note: f.querySelector('.fv-note').textContent,
            gridImage: f.querySelector('.fv-img').getAttribute('src') === tile.getAttribute('src')};
}"""


def _pan(img) -> tuple[float, float]:
    x, y = re.match(r"translate\(([-\d.]+)px, ([-\d.]+)px\)", img.evaluate("i => i.style.transform")).groups()
    return float(x), float(y)


def test_focus_view_opens_with_enter_shows_large_image_and_neighbours(page, demo, tmp_path):
    from playwright.sync_api import expect

    pg = page
    ws = open_demo(pg, demo, "focus")
    at_once = ws.evaluate(OPEN_NOW_JS)
    assert at_once == {"hidden": False, "note": "loading neighbours…", "gridImage": True}
    expect(pg.locator(f"{FOCUS} .fv-nb")).to_have_count(6)
    press(pg, "Escape")
    _open_focus(pg, 2)
    focus = pg.locator(FOCUS)
    expect(focus.locator(".fv-name")).to_have_text("sample_002.png")
    expect(focus.locator(".fv-sugg-label")).to_have_text(LEGEND[2])
    expect(focus.locator(".fv-note")).to_have_text("")
    expect(pg.get_by_text(f"focus data sent for {item_id(2)}")).to_be_visible()
    img = focus.locator(".fv-img")
    expect(img).to_have_js_property("naturalWidth", 512)  # Python's large image replaced the grid's
    shown = img.evaluate("""i => { const r = i.getBoundingClientRect(), s = Math.min(r.width / i.naturalWidth,
        r.height / i.naturalHeight); return Math.max(i.naturalWidth, i.naturalHeight) * s; }""")
    assert shown >= 384, f"the focus image is {shown:.0f} px on its long side"
    keys = focus.locator(".fv-keys li").all_inner_texts()
    assert [k.split(maxsplit=1) for k in keys] == [["1", LEGEND[3]], ["2", LEGEND[0]], ["3", LEGEND[4]],
                                                   ["4", LEGEND[1]]]
    first = focus.locator(".fv-nb").first
    assert first.locator(".fv-nb-label").inner_text() == LEGEND[3]
    assert first.locator(".fv-nb-score").inner_text() == "0.950"
    fits = focus.evaluate("""f => { const r = f.getBoundingClientRect(), p = f.querySelector('.fv-panel');
        return r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth && p.scrollHeight <= p.clientHeight; }""")
    assert fits, "the focus view needs scrolling at 1280 x 800"
    press(pg, "+", "c")
    assert "scale(1.25)" in img.evaluate("i => i.style.transform")
    assert "contrast(1.5)" in img.evaluate("i => i.style.filter")
    pg.screenshot(path=str(tmp_path / "focus_view_1280x800.png"))
    print(f"\nfocus view screenshot: {tmp_path / 'focus_view_1280x800.png'}")
    press(pg, "0")
    assert img.evaluate("i => i.style.transform") == "translate(0px, 0px) scale(1)"
    box = focus.locator(".fv-stage").bounding_box()
    pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    pg.mouse.wheel(0, -400)  # zoom in about the mouse
    expect(img).not_to_have_attribute("style", re.compile(r"scale\(1\)"))
    before = _pan(img)
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2 + 30)
    pg.mouse.up()
    after = _pan(img)  # dragged: panned by the mouse's move
    assert (round(after[0] - before[0]), round(after[1] - before[1])) == (60, 30)
    press(pg, "ArrowRight")  # the next tile in the focus view, without deciding
    expect(focus.locator(".fv-name")).to_have_text("sample_003.png")
    assert img.evaluate("i => i.style.transform") == "translate(0px, 0px) scale(1)"  # the view is reset
    press(pg, "ArrowLeft")
    expect(focus.locator(".fv-name")).to_have_text("sample_002.png")
    expect(focus.locator(".fv-nb")).to_have_count(6)
    press(pg, "1")  # the first neighbour label; the view closes, the cursor goes on
    expect(focus).to_be_hidden()
    tile = ws.locator(".tile").nth(2)
    assert tile.locator(".badge").inner_text() == f"✓ {_first_neighbor_label(2)}"
    assert cursor_at(pg) == 3
    store = saved(pg, demo, "focus")
    assert store["decisions"] == {item_id(2): {"status": "accepted", "label": LEGEND[3], "how": "single"}}
    expect(pg.get_by_text("focus data sent for none")).to_be_visible()  # the batch said the view is closed
    press(pg, "ArrowRight")  # the grid has the keys again
    assert cursor_at(pg) == 4


def test_focus_picker_is_empty_on_each_open_and_takes_text_only(page, demo, tmp_path):
    from playwright.sync_api import expect

    pg = page
    ws = open_demo(pg, demo, "picker")
    focus, picker = pg.locator(FOCUS), pg.locator(f"{FOCUS} .fv-input")
    _open_focus(pg, 0)
    press(pg, "e")  # E goes to the picker and is not typed into it
    assert _picker_has_focus(pg)
    assert picker.input_value() == ""
    pg.keyboard.type("ae1d")  # text only: nothing decided, the view stays open
    assert picker.input_value() == "ae1d"
    expect(focus.locator(".fv-options li")).to_have_text(["+ new label “ae1d”"])
    pg.screenshot(path=str(tmp_path / "picker_typed.png"))
    press(pg, "Escape")  # leaves the input, the view stays
    assert not _picker_has_focus(pg)
    expect(focus).to_be_visible()
    press(pg, "Escape")  # closes the view
    expect(focus).to_be_hidden()
    assert ws.locator(".tile.is-decided").count() == 0
    press(pg, "ArrowRight")
    assert cursor_at(pg) == 1
    _open_focus(pg, 1)
    assert picker.input_value() == ""  # nothing carried over from tile 0
    press(pg, "/")
    pg.keyboard.type("LA")  # starts with first, then contains, then the typed text as a new label
    expect(focus.locator(".fv-options li")).to_have_text(["larvacean", "radiolarian", "+ new label “LA”"])
    press(pg, "ArrowDown", "ArrowDown", "ArrowUp", "Enter")  # radiolarian
    expect(focus).to_be_hidden()
    _open_focus(pg, 2)
    assert picker.input_value() == ""
    press(pg, "e")
    pg.keyboard.type("squid")
    press(pg, "Enter")  # a new label
    _open_focus(pg, 3)
    press(pg, "d")  # dubious from the focus view
    store = saved(pg, demo, "picker")
    assert store["decisions"] == {
        item_id(1): {"status": "accepted", "label": "radiolarian", "how": "single"},
        item_id(2): {"status": "accepted", "label": "squid", "how": "single"},
        item_id(3): {"status": "dubious", "label": None, "how": "single"}}
    assert [ws.locator(".tile").nth(i).locator(".badge").inner_text() for i in (1, 2, 3)] == [
        "✓ radiolarian", "✓ squid", "? dubious"]
    assert_logged_once(store)


def test_page_keys_send_pending_decisions_first_and_turn_the_page(page, demo, tmp_path):
    from playwright.sync_api import expect

    pg = page
    ws = open_demo(pg, demo, "paging")
    hint = ws.locator(".ws-page-hint")
    assert hint.inner_text() == ""
    press(pg, "2", "n")  # a decision still waiting for its batch, then the next page at once
    expect(ws.locator(".tile").first).to_have_attribute("data-id", item_id(N_ITEMS))
    expect(ws.locator(".ws-title")).to_contain_text("Demo page 2 of 2")
    assert ws.locator(".tile.is-decided").count() == 0
    store = saved(pg, demo, "paging")
    assert store["decisions"] == {item_id(0): {"status": "accepted", "label": LEGEND[1], "how": "single"}}
    press(pg, "Space", "a")  # one out, the rest accepted: the page is done
    expect(hint).to_have_text("Page done: N for the next page")
    pg.screenshot(path=str(tmp_path / "page_done.png"))
    press(pg, "PageUp")
    expect(ws.locator(".tile").first).to_have_attribute("data-id", item_id(0))
    expect(ws.locator(".tile").first.locator(".badge")).to_have_text(f"✓ {LEGEND[1]}")
    store = saved(pg, demo, "paging")
    assert len(store["decisions"]) == N_ITEMS  # 1 on page 1, 59 on page 2
    assert item_id(N_ITEMS) not in store["decisions"]
    assert_logged_once(store)


HIDE_NOW_JS = """ws => {  // a decision, then the page goes away: it is sent at once, not after the pause
    ws.dispatchEvent(new KeyboardEvent('keydown', {key: '3', bubbles: true, cancelable: true, composed: true}));
    const queued = ws.querySelector('.ws-sync').textContent;
    window.dispatchEvent(new Event('pagehide'));
    return [queued, ws.querySelector('.ws-sync').textContent];
}"""


def test_pagehide_sends_the_pending_decisions_at_once(page, demo):
    pg = page
    ws = open_demo(pg, demo, "pagehide")
    assert ws.evaluate(HIDE_NOW_JS) == ["1 queued", "sending 1…"]
    store = saved(pg, demo, "pagehide")
    assert store["decisions"] == {item_id(0): {"status": "accepted", "label": LEGEND[2], "how": "single"}}


def test_focus_view_at_800_px_wide(page, demo, tmp_path):
    from playwright.sync_api import expect

    pg = page
    pg.set_viewport_size({"width": 800, "height": 800})
    open_demo(pg, demo, "narrow")
    _open_focus(pg, 0)
    focus = pg.locator(FOCUS)
    expect(focus.locator(".fv-img")).to_have_js_property("naturalWidth", 512)
    size = focus.evaluate("""f => { const i = f.querySelector('.fv-img'), r = i.getBoundingClientRect(),
        s = Math.min(r.width / i.naturalWidth, r.height / i.naturalHeight), box = f.getBoundingClientRect();
        const clipped = [...f.querySelectorAll('button, .fv-input, .fv-keys li')].filter(b => {
            const q = b.getBoundingClientRect(); return q.right > box.right || q.left < box.left; });
        return {image: 512 * s, right: box.right, clipped: clipped.length}; }""")
    pg.screenshot(path=str(tmp_path / "focus_view_800.png"))
    print(f"\nfocus view at 800 px: {tmp_path / 'focus_view_800.png'}")
    assert size["image"] >= 384 and size["right"] <= 800 and size["clipped"] == 0, size
