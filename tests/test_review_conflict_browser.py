"""Two annotators in two browsers on the same Review page: the second one's key on an image the first one
already decided is refused, shown on that tile with the reason, and the first decision stays stored."""

from __future__ import annotations

import pytest

from tests.test_browser import _pool_states, _until, chromium_path, page, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

PROJECT = "alpha"


def _open(pg, url: str, annotator: str):
    from playwright.sync_api import expect

    pg.goto(f"{url}/review?project={PROJECT}&annotator={annotator}")
    ws = pg.locator(".vss-ws")
    expect(ws.locator(".tile")).to_have_count(6, timeout=120_000)
    expect(ws.locator(".ws-title")).to_contain_text("0 of 6 reviewed", timeout=30_000)
    ws.locator(".ws-title").click()  # keys to the workspace
    return ws


def test_a_decision_made_meanwhile_in_another_browser_is_not_overwritten(page, server, app_setup, tmp_path,
                                                                          monkeypatch):
    from playwright.sync_api import expect

    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.predict import collect_images, predict_paths

    url, _, data, _ = server
    monkeypatch.setenv("VSS_DATA_DIR", str(data))
    project = load_projects(app_setup.config).projects[PROJECT]
    embedder = Embedder(str(app_setup.model), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(app_setup.exemplars), embedder, d.exemplars)
    predict_paths(collect_images(app_setup.queries), embedder, d.exemplars, d.pool, job="conflict")
    dim = embedder.dim

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
