"""End to end in headless Chromium: `streamlit run app.py` driven by Playwright.

Uses Debian's /usr/bin/chromium (never a downloaded browser); skipped when it is
missing unless CI=true.  The server gets a test config (tiny model, embedded
Redis in a temp dir) and BATCH_SIZE=1, the real batch-size setting, so loading
a few hundred images takes long enough to watch the progress bar and reload.
Screenshots are saved under the test's tmp dir.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.browser_kit import chromium_or_skip, chromium_page, streamlit_server
from tests.fixtures_models import LABELS, label_image

pytestmark = pytest.mark.browser

SLOW_PER_LABEL = 400


@pytest.fixture(scope="module")
def chromium_path():
    return chromium_or_skip()


@pytest.fixture(scope="module")
def server(app_setup, tmp_path_factory):
    """A real Streamlit server on a free loopback port, with its own data dir."""
    slow = app_setup.roots / "slow"
    if not slow.exists():
        for k, label in enumerate(sorted(LABELS)):
            (slow / label).mkdir(parents=True)
            for i in range(SLOW_PER_LABEL):
                label_image(label, seed=20000 + 1000 * k + i).save(slow / label / f"{label}_{i}.jpg", quality=85)
    data = tmp_path_factory.mktemp("browser_data")
    env = {**os.environ, **app_setup.env, "VSS_DATA_DIR": str(data), "BATCH_SIZE": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        with streamlit_server("app.py", env, data / "streamlit.log") as (url, proc):
            yield url, slow, data, proc.pid
    finally:
        from vss_core.redis.server import embedded_server

        for name in ("alpha", "beta", "gamma", "review"):
            srv = embedded_server(data / name)
            if srv.running:
                srv.stop()


@pytest.fixture
def page(chromium_path, server):
    with chromium_page(chromium_path, 1400, 1000) as pg:
        yield pg


PAGES = {"review": "Review", "": "Search", "rare": "Rare events", "anomalies": "Anomalies",
         "map": "Embedding map", "exemplars": "Exemplars", "audit": "Exemplar audit"}
"""URL path (what users bookmark) -> the page's title and its menu label; a page URL comes first."""


def _shows_page_menu_and_sidebar(pg, title: str, project: str, annotator: str) -> None:
    from playwright.sync_api import expect

    expect(pg.get_by_role("heading", name=title, exact=True)).to_be_attached(timeout=60_000)
    opener = pg.get_by_test_id("stExpandSidebarButton")
    if title == PAGES["review"]:  # Review folds the sidebar, unless it was opened there
        pg.wait_for_timeout(500)
        if opener.is_visible():
            opener.click()
    sidebar = pg.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_role("combobox", name="Project")).to_be_visible()
    menu = sidebar.get_by_role("link")
    expect(menu).to_have_count(len(PAGES))
    for label in PAGES.values():
        expect(menu.filter(has_text=re.compile(rf"(^|[a-z_]){label}$"))).to_have_count(1)
    expect(sidebar.get_by_role("combobox", name="Project")).to_have_value(project)
    expect(sidebar.get_by_role("textbox", name="Annotator")).to_have_value(annotator)


def test_every_page_opens_from_its_bookmarked_url_with_the_menu_and_sidebar(page, server, tmp_path):
    """First test of the module, so its first request (a page URL, not "/") is the new server's first."""
    from playwright.sync_api import expect

    url = server[0]
    pg = page
    for path, title in PAGES.items():
        pg.goto(f"{url}/{path}?project=gamma&annotator=bookmark")
        _shows_page_menu_and_sidebar(pg, title, "gamma", "bookmark")
        expect(pg).to_have_url(re.compile(rf"^{re.escape(url)}/{path}\?"))
        pg.screenshot(path=str(tmp_path / f"page_{path or 'home'}.png"))
    # the menu moves between pages and the sidebar's choices go along, also through a reload
    pg.locator('[data-testid="stSidebar"]').get_by_role("textbox", name="Annotator").fill("walker")
    pg.keyboard.press("Enter")
    expect(pg).to_have_url(re.compile(r"annotator=walker"))
    menu = pg.locator('[data-testid="stSidebar"]').get_by_role("link")
    for path, title in PAGES.items():
        menu.filter(has_text=re.compile(rf"{title}$")).click()
        _shows_page_menu_and_sidebar(pg, title, "gamma", "walker")
        expect(pg).to_have_url(re.compile(rf"^{re.escape(url)}/{path}\?.*annotator=walker"))
    pg.reload()
    _shows_page_menu_and_sidebar(pg, PAGES["audit"], "gamma", "walker")
    keep = os.environ.get("VSS_SCREENSHOTS")
    if keep:
        shutil.copytree(tmp_path, keep, dirs_exist_ok=True)


def _progress_text(pg) -> str:
    return pg.locator('[data-testid="stProgress"]').first.inner_text()


def _done_count(pg) -> int:
    m = re.search(r"([\d,]+) / ([\d,?]+)", _progress_text(pg))
    return int(m.group(1).replace(",", "")) if m else -1


def _tall_screenshot(pg, path: Path, height: int = 2200) -> None:
    """Streamlit scrolls inside its main block, so show more of it with a taller viewport."""
    size = pg.viewport_size
    pg.set_viewport_size({"width": size["width"], "height": height})
    pg.wait_for_timeout(300)
    pg.screenshot(path=str(path))
    pg.set_viewport_size(size)


def test_load_search_and_reload_mid_job(page, server, tmp_path):
    from playwright.sync_api import expect

    url, slow, _, _ = server
    pg = page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pg.goto(url)
    sidebar = pg.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Project", exact=True)).to_be_visible(timeout=60_000)
    expect(sidebar.get_by_text("1 config file with errors", exact=False)).to_be_visible()
    # choose a project in the picker
    sidebar.locator('[data-testid="stSelectbox"]').first.click()
    pg.get_by_role("option", name="beta", exact=True).click()
    expect(sidebar.get_by_text("beta/redis.sock", exact=False)).to_be_visible()
    expect(sidebar.get_by_text("answers", exact=False)).to_be_visible(timeout=60_000)
    annotator = sidebar.get_by_role("textbox", name="Annotator")
    annotator.fill("e2e tester")
    annotator.press("Enter")
    expect(pg).to_have_url(re.compile(r"annotator=e2e"))

    # exemplars: start a load of 1,200 images, reload mid-job, and watch the bar move
    pg.get_by_role("link", name="Exemplars").click()  # the page waits for the first model load
    expect(pg.get_by_role("heading", name="Exemplars", exact=True)).to_be_visible(timeout=60_000)
    path_box = pg.get_by_role("textbox", name="Server folder")
    path_box.fill(str(slow))
    path_box.press("Enter")
    pg.get_by_role("button", name="Load exemplars").click()
    expect(pg.locator('[data-testid="stProgress"]')).to_be_visible()
    pg.wait_for_function("() => /[1-9][\\d,]* \\/ 1,200/.test(document.body.innerText)")
    first = _done_count(pg)
    pg.screenshot(path=str(shots / "1_load_running.png"), full_page=True)

    # reload mid-job: the new session finds the same running job in the shared registry
    pg.reload()
    expect(pg.get_by_text("— running", exact=False).first).to_be_visible(timeout=30_000)
    expect(pg.locator('[data-testid="stSidebar"]').get_by_text("beta/redis.sock", exact=False)).to_be_visible()
    second = _done_count(pg)
    pg.screenshot(path=str(shots / "2_after_reload.png"), full_page=True)
    assert second < 1200, "the job ended before the reload; make it longer"
    third = second
    deadline = time.monotonic() + 20
    while third <= second and time.monotonic() < deadline:
        pg.wait_for_timeout(200)
        third = _done_count(pg)
    assert 0 < first <= second < third, (first, second, third)
    expect(pg.get_by_text("— done", exact=False)).to_be_visible(timeout=120_000)
    expect(pg.locator('[data-testid="stProgress"]').first).to_contain_text("1,200 / 1,200")
    expect(pg.locator('[data-testid="stMetricValue"]').first).to_have_text("1,200")
    _tall_screenshot(pg, shots / "3_load_done.png")

    # search: upload query images and see their galleries with labels and scores
    pg.get_by_role("link", name="Search").click()
    expect(pg.get_by_role("heading", name="Search", exact=True)).to_be_visible()
    queries = sorted(p for p in (slow.parent / "queries").glob("*.jpg"))
    pg.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(q) for q in queries])
    expect(pg.get_by_text(queries[-1].name).first).to_be_visible()
    pg.get_by_role("button", name="Search").click()
    expect(pg.get_by_text("Suggested majority", exact=False).first).to_be_visible(timeout=60_000)
    for label in LABELS:
        expect(pg.get_by_text(re.compile(rf"^{label} · [01]\.\d{{3}}$")).first).to_be_visible()
    expect(pg.get_by_text("Suggested majority", exact=False)).to_have_count(len(queries))
    expect(pg.get_by_role("button", name="JSON")).to_have_count(1)
    expect(pg.get_by_role("button", name="CSV")).to_have_count(1)
    # every thumbnail (queries + 5 exemplars each) arrives as a decoded image
    pg.wait_for_function(
        f"() => [...document.querySelectorAll('[data-testid=stImage] img')]"
        f".filter(i => i.complete && i.naturalWidth > 0).length >= {len(queries) * 6}")
    _tall_screenshot(pg, shots / "4_search_results.png")
    print(f"screenshots in {shots}")
    keep = os.environ.get("VSS_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


def _metric(pg, label: str):
    return pg.locator('[data-testid="stMetric"]').filter(
        has=pg.get_by_text(label, exact=True)).locator('[data-testid="stMetricValue"]')


def _pool_states(project, dim: int) -> dict:
    from vss_core.labeling.decisions import open_decisions
    from vss_core.redis.pool import PoolFilter

    d = open_decisions(project, dim)
    return {i.id: (i.status, i.label, i.how, bool(i.exemplar)) for i in d.pool.by_name(PoolFilter())}


def _until(check, what: str, timeout: float = 30):
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_review_in_the_tile_workspace_then_bulk_accept_after_a_preview(page, server, app_setup, tmp_path,
                                                                       monkeypatch):
    from playwright.sync_api import expect

    from vss_core.config.projects import load_projects

    url, _, data, _ = server
    monkeypatch.setenv("VSS_DATA_DIR", str(data))
    project = load_projects(app_setup.config).projects["review"]
    pg = page
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pg.goto(f"{url}/exemplars?project=review&annotator=keys")
    path_box = pg.get_by_role("textbox", name="Server folder")
    path_box.fill(str(app_setup.exemplars))
    path_box.press("Enter")
    pg.get_by_role("button", name="Load exemplars").click()
    expect(pg.get_by_text("— done", exact=False)).to_be_visible(timeout=120_000)

    pg.get_by_role("link", name="Review").click()
    expect(pg.get_by_role("heading", name="Review", exact=True)).to_be_visible()
    box = pg.get_by_role("textbox", name="Server folder")
    box.fill(str(app_setup.queries))
    box.press("Enter")
    expect(pg.get_by_role("button", name="Predict labels")).to_be_enabled(timeout=60_000)
    pg.get_by_role("button", name="Predict labels").click()
    ws = pg.locator(".vss-ws")
    expect(ws.locator(".tile")).to_have_count(6, timeout=120_000)
    pg.set_viewport_size({"width": 1280, "height": 800})
    pg.evaluate("() => window.scrollTo(0, 0)")
    expect(ws.locator(".ws-title")).to_contain_text("0 of 6 reviewed", timeout=30_000)
    box = ws.locator(".tile").first.bounding_box()
    assert box["y"] < 200 and box["width"] >= 128  # the images being decided are at the top, large
    pg.screenshot(path=str(shots / "1_workspace.png"))

    ws.locator(".ws-title").click()  # keys to the workspace
    dim = 32
    pg.keyboard.press("d")  # the first tile dubious, the cursor moves on
    pg.keyboard.press("Space")  # the second tile out: A leaves it alone
    pg.keyboard.press("a")  # every tile still in: accepted with its suggestion
    expect(ws).to_have_attribute("data-sync", "idle", timeout=30_000)
    _until(lambda: sorted(s[0] for s in _pool_states(project, dim).values()) ==
           ["accepted"] * 4 + ["dubious", "predicted"], "the keys to be stored")
    states = _pool_states(project, dim)
    assert {s[2] for s in states.values() if s[0] == "accepted"} == {"page"}
    assert all(s[3] for s in states.values() if s[0] == "accepted")  # page decisions make exemplars
    pg.screenshot(path=str(shots / "2_after_keys.png"))
    pg.keyboard.press("u")  # undo the A: the four go back to undecided
    _until(lambda: sorted(s[0] for s in _pool_states(project, dim).values()) == ["dubious"] + ["predicted"] * 5,
           "the undo to be stored")
    expect(pg.get_by_test_id("stSidebarUserContent")).not_to_be_visible()  # folded: the tiles get the width
    pg.get_by_test_id("stExpandSidebarButton").click()  # its button waits in the bottom right corner
    expect(pg.get_by_test_id("stSidebarUserContent")).to_be_visible()
    pg.keyboard.press("d")  # nothing has the focus now: the key still goes to the workspace
    _until(lambda: sorted(s[0] for s in _pool_states(project, dim).values()) == ["dubious"] * 2 + ["predicted"] * 4,
           "a key after opening the sidebar to be stored")

    bulk_tab = pg.get_by_role("tab", name="Accept in bulk")  # the panels under the workspace: Predict was open
    expect(bulk_tab).to_be_visible(timeout=60_000)
    bulk_tab.click()
    threshold = pg.get_by_role("spinbutton", name="Best score at or above")
    threshold.fill("-1")
    threshold.press("Enter")
    pg.get_by_text("With uncertain").click()
    preview = pg.get_by_role("button", name="Preview 4 image(s)")
    expect(preview).to_be_visible(timeout=30_000)
    preview.click()
    accept = pg.get_by_role("button", name="Accept these 4")
    expect(accept).to_be_enabled(timeout=30_000)
    accept.scroll_into_view_if_needed()  # under the workspace, which fills the screen
    pg.screenshot(path=str(shots / "3_bulk_preview.png"))
    accept.click()
    expect(pg.get_by_text("bulk accept: 4 image(s) changed", exact=False)).to_be_visible(timeout=30_000)
    states = _pool_states(project, dim)
    assert sorted(s[0] for s in states.values()) == ["accepted"] * 4 + ["dubious"] * 2
    assert {(s[2], s[3]) for s in states.values() if s[0] == "accepted"} == {("bulk", False)}  # not promoted
    from tests.test_browser_mining import LAYOUT_CHECK, _settle

    for width, height in ((1280, 800), (800, 900)):
        pg.set_viewport_size({"width": width, "height": height})
        _settle(pg)
        _tall_screenshot(pg, shots / f"4_review_{width}.png")
        pg.get_by_role("tab", name="Export").scroll_into_view_if_needed()
        pg.screenshot(path=str(shots / f"5_panels_{width}.png"))  # under the workspace, which fills the screen
        assert pg.evaluate(LAYOUT_CHECK) == [], f"layout at {width} px"
    keep = os.environ.get("VSS_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


def test_mark_an_anomaly_and_make_a_new_class_then_undo(page, server, app_setup, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect

    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.predict import collect_images, predict_paths

    url, _, data, _ = server
    monkeypatch.setenv("VSS_DATA_DIR", str(data))
    folder = tmp_path / "pool"
    folder.mkdir()
    for k, label in enumerate(sorted(LABELS)):
        for i in range(8):
            label_image(label, seed=8000 + 100 * k + i).save(folder / f"{label}_{i}.jpg")
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(
            folder / f"zz_odd_{i}.png")
    project = load_projects(app_setup.config).projects["gamma"]
    embedder = Embedder(str(app_setup.model), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(app_setup.exemplars), embedder, d.exemplars)
    predict_paths(collect_images(folder), embedder, d.exemplars, d.pool, job="e2e")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pg = page

    pg.goto(f"{url}/anomalies?project=gamma&annotator=e2e")
    pg.get_by_role("button", name="Score anomaly within a set").click()
    expect(pg.get_by_text("— done", exact=False)).to_be_visible(timeout=60_000)
    expect(pg.get_by_text("image(s) above the threshold", exact=False)).to_be_visible()
    grid = pg.locator('[data-testid="stDataFrame"]').last
    mark = pg.get_by_role("button", name="Mark anomaly (1)")
    for attempt in range(3):  # a click on the canvas grid while it still lays out can miss (once in CI)
        pg.wait_for_timeout(500)
        box = grid.bounding_box()
        pg.mouse.click(box["x"] + 12, box["y"] + 36 + 32)  # the first row's selection box
        try:
            expect(mark).to_be_enabled(timeout=10_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    mark.click()
    expect(pg.get_by_text("1 image(s) marked as anomalies", exact=False)).to_be_visible(timeout=30_000)
    _tall_screenshot(pg, shots / "1_anomaly_marked.png")

    pg.get_by_role("link", name="Rare events").click()
    pg.get_by_role("button", name="Score novelty of the pool").click()
    expect(pg.get_by_text("Group 1", exact=False)).to_be_visible(timeout=60_000)
    box = pg.get_by_role("textbox", name="…or a new class").first
    box.fill("odd thing")
    box.press("Enter")
    create = pg.get_by_role("button", name="Create class").first
    expect(create).to_be_visible(timeout=30_000)
    create.click()
    pg.get_by_role("button", name=re.compile(r"^Apply to \d+$")).first.click()  # the group is listed first
    expect(pg.get_by_text("new class:", exact=False)).to_be_visible(timeout=30_000)
    assert "odd thing" in d.exemplars.label_counts()
    _tall_screenshot(pg, shots / "2_new_class.png")
    pg.get_by_role("button", name="Undo my last action").click()
    expect(pg.get_by_text("Undone:", exact=False)).to_be_visible(timeout=30_000)
    assert "odd thing" not in d.exemplars.label_counts()
    keep = os.environ.get("VSS_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


def test_four_sessions_search_at_once_without_errors_or_mixing(chromium_path, server, app_setup, tmp_path,
                                                               monkeypatch):
    from tests.browser_soak import query_sets, soak
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.redis.exemplars import open_store

    url, _, data, pid = server
    monkeypatch.setenv("VSS_DATA_DIR", str(data))
    project = load_projects(app_setup.config).projects["alpha"]
    embedder = Embedder(str(app_setup.model), device="cpu", batch_size=8)
    load_items(collect_folder(app_setup.exemplars), embedder, open_store(project, embedder.dim))
    sets = query_sets(tmp_path / "queries", sessions=4, per_session=32)
    page_url = f"{url}/?project=alpha"
    warm = soak(chromium_path, page_url, sets[:1], 1, pid)  # model, thumbnails and caches warm
    assert not warm["errors"], warm["errors"]
    stats = soak(chromium_path, page_url, sets, float(os.environ.get("VSS_SOAK_S", "60")), pid)
    print(stats)
    assert not stats["errors"], stats["errors"]
    assert not stats["mixed"], stats["mixed"]
    assert not any(stats["alive"]) and stats["own_seen"] == stats["per_session"], stats
    assert stats["rss_end_mb"] < stats["rss_start_mb"] + 300, stats  # bounded caches: no growth per search
