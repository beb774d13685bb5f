"""The real Review page in Chromium: 48 tiles of 128 px on one screen at 1280x800 (the page folds the sidebar);
two annotators in two browsers, where the second one's key on an image the first one already decided is
refused, shown on that tile with the reason, and the first decision stays stored."""

from __future__ import annotations

import pytest

from tests.fixtures_models import LABELS, label_image
from tests.test_browser import _pool_states, _until, chromium_path, page, server  # noqa: F401  (fixtures)
from tests.workspace_kit import VISIBLE_TILES_JS

pytestmark = pytest.mark.browser

PROJECT = "alpha"


def test_48_tiles_of_128_px_on_one_screen_at_1280x800(page, server, app_setup, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    url, _, data, _ = server
    monkeypatch.setenv("VSS_DATA_DIR", str(data))
    folder = app_setup.roots / f"many_{tmp_path.name}"  # under the data roots: thumbnails are shown
    folder.mkdir()
    for k, label in enumerate(sorted(LABELS)):
        for i in range(20):
            label_image(label, seed=30000 + 100 * k + i).save(folder / f"{label}_{i}.jpg")
    _fill(app_setup, "beta", folder)
    page.set_viewport_size({"width": 1280, "height": 800})
    ws = _open(page, url, "wide", n=20 * len(LABELS), project="beta")
    expect(page.get_by_test_id("stSidebarUserContent")).not_to_be_visible()  # folded on this page
    page.wait_for_timeout(500)  # the grid fits itself to the room it got
    page.screenshot(path=str(tmp_path / "review_1280x800.png"))
    visible = ws.evaluate(VISIBLE_TILES_JS)
    assert visible >= 48, f"only {visible} tiles of 128 px or more are fully visible at 1280 x 800"


def _fill(app_setup, project_name: str, folder) -> tuple:
    """Exemplars and a pool of the images in ``folder`` for ``project_name``; (project, vector dim)."""
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.predict import collect_images, predict_paths

    project = load_projects(app_setup.config).projects[project_name]
    embedder = Embedder(str(app_setup.model), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(app_setup.exemplars), embedder, d.exemplars)
    predict_paths(collect_images(folder), embedder, d.exemplars, d.pool, job="browser")
    return project, embedder.dim


def _open(pg, url: str, annotator: str, n: int = 6, project: str = PROJECT):
    from playwright.sync_api import expect

    pg.goto(f"{url}/review?project={project}&annotator={annotator}")
    ws = pg.locator(".vss-ws")
    expect(ws.locator(".tile")).to_have_count(min(n, 48), timeout=120_000)
    expect(ws.locator(".ws-title")).to_contain_text(f"0 of {n} reviewed", timeout=30_000)
    ws.locator(".ws-title").click()  # keys to the workspace
    return ws


def test_a_decision_made_meanwhile_in_another_browser_is_not_overwritten(page, server, app_setup, tmp_path,
                                                                          monkeypatch):
    from playwright.sync_api import expect

    url, _, data, _ = server
    monkeypatch.setenv("VSS_DATA_DIR", str(data))
    project, dim = _fill(app_setup, PROJECT, app_setup.queries)

    ann = _open(page, url, "ann")
    other = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        bob_pg = other.new_page()
        bob_pg.set_default_timeout(30_000)
        bob = _open(bob_pg, url, "bob")

        page.keyboard.press("a")  # ann accepts the whole page
        expect(ann).to_have_attribute("data-sync", "idle", timeout=30_000)
        _until(lambda: sorted(s[0] for s in _pool_states(project, dim).values()) == ["accepted"] * 6,
               "ann's page to be stored")
        before = _pool_states(project, dim)

        bob_pg.keyboard.press("d")  # bob's page still shows them undecided: the first one dubious
        conflict = bob.locator(".tile.has-conflict")
        expect(conflict).to_have_count(1, timeout=30_000)
        expect(conflict.locator(".conflict")).not_to_have_text("")
        reason = conflict.locator(".conflict").inner_text()
        assert reason.startswith("changed by ann at ") and reason.endswith("since you saw it"), reason
        bob_pg.screenshot(path=str(tmp_path / "conflict.png"))
        assert _pool_states(project, dim) == before  # ann's decision stands: nothing overwritten
        assert all(s[0] == "accepted" for s in before.values())
    finally:
        other.close()
