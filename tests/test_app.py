"""The Streamlit app through streamlit.testing.v1.AppTest: sidebar, Search and Exemplars pages."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SEARCH = "pages/search.py"
EXEMPLARS = "pages/exemplars.py"


USED = ("alpha", "beta", "gamma")


def _stop_jobs() -> None:
    from ui.resources import job_registry

    registry = job_registry()
    for snap in registry.jobs(active=True):
        registry.cancel(snap.id)
        registry.wait(snap.id, 30)


@pytest.fixture(autouse=True)
def _env(app_env):
    """Each test starts from empty projects and an empty job list, whatever ran before it."""
    from ui import resources
    from vss_core.config.projects import load_projects
    from vss_core.redis.server import connect

    _stop_jobs()
    resources.job_registry.clear()
    projects = load_projects(app_env.config).projects
    for name in USED:
        client = connect(projects[name])
        client.flushall()
        client.close()
        resources.forget_target(projects[name])
    yield
    _stop_jobs()


def open_app(project: str = "alpha", annotator: str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["project"] = project
    if annotator:
        at.query_params["annotator"] = annotator
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest, where=None) -> str:
    root = where if where is not None else at
    parts = []
    for kind in ("title", "markdown", "caption", "error", "warning", "info", "success", "subheader"):
        parts += [str(e.value) for e in root.get(kind)]
    return "\n".join(parts)


def run_until(at: AppTest, predicate, timeout: float = 30.0) -> AppTest:
    end = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if predicate(at):
            return at
        if time.monotonic() > end:
            raise AssertionError("timed out; page shows:\n" + texts(at))
        time.sleep(0.1)


def load_exemplars(setup, project_name: str, folder: Path | None = None):
    """Load exemplars through the real loader and store (as the CLI would)."""
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling import loader
    from vss_core.redis.exemplars import open_store

    project = load_projects(setup.config).projects[project_name]
    embedder = Embedder(str(setup.model), device="cpu", batch_size=8)
    store = open_store(project, embedder.dim)
    items = loader.collect_folder(folder or setup.exemplars)
    loader.load_items(items, embedder, store, added_by="fixture")
    return store


# -- sidebar --------------------------------------------------------------------------------

def test_sidebar_projects_status_and_bad_config(app_env):
    at = open_app("alpha")
    assert at.sidebar.selectbox(key="project").options == ["alpha", "beta", "gamma", "nomodel", "offline", "review"]
    side = texts(at, at.sidebar)
    assert "broken.yaml" in side and "not valid YAML" in side
    assert "embedded (unix socket" in side and "answers" in side
    assert "Model" in side and str(app_env.model) in side and "Device** cpu" in side
    assert "Vectors" in side
    assert app_env.env["REDIS_PASSWD"] not in side


def test_project_switching_and_reload_keeps_choice(app_env):
    at = open_app("alpha", page=SEARCH)
    at.sidebar.selectbox(key="project").set_value("beta").run()
    assert not at.exception
    side = texts(at, at.sidebar)
    assert str(app_env.data / "beta" / "redis.sock") in side
    assert at.query_params["project"] == "beta"
    # a reload (new session, same URL) comes back to beta
    again = open_app(at.query_params["project"], page=SEARCH)
    assert again.sidebar.selectbox(key="project").value == "beta"
    assert again.title[0].value == "Search"


def test_every_page_shows_the_menu_and_sidebar_and_keeps_the_sidebar_s_choices(app_env):
    """Streamlit's pages/ app: each page file draws the menu and the sidebar; the project and the
    annotator chosen on one page are there on the next, also when the URL no longer carries them."""
    from ui.sidebar import NAVIGATION

    at = open_app("beta", annotator="ana")
    assert at.title[0].value == "Search"  # the home page, "/"
    labels = [label for _, label, _ in NAVIGATION]
    for path, label, _ in [*NAVIGATION[1:], NAVIGATION[0]]:
        at.query_params.clear()
        at.switch_page(path).run()
        assert not at.exception, (path, at.exception)
        assert at.title[0].value == label
        assert [link.proto.label for link in at.sidebar.get("page_link")] == labels
        assert at.sidebar.selectbox(key="project").value == "beta"
        assert at.sidebar.text_input(key="annotator").value == "ana"
        assert at.query_params["project"] == "beta"


def test_bad_model_shows_panel_and_others_stay_usable(app_env):
    at = open_app("nomodel", page=SEARCH)
    errors = " ".join(e.value for e in at.main.error)
    assert "not usable" in errors and "no_such_model" in errors
    assert not at.get("file_uploader")
    at.sidebar.selectbox(key="project").set_value("alpha").run()
    assert not at.exception and not at.main.error
    assert at.get("file_uploader")


def test_unreachable_redis_shows_panel_without_password(app_env):
    at = open_app("offline", page=EXEMPLARS)
    side = texts(at, at.sidebar)
    assert "does not answer" in side and "redis://127.0.0.1:" in side
    errors = " ".join(e.value for e in at.main.error)
    assert "not usable" in errors and "127.0.0.1" in errors
    assert app_env.env["REDIS_PASSWD"] not in side + errors
    at.sidebar.selectbox(key="project").set_value("gamma").run()
    assert not at.exception and not at.main.error and at.title[0].value == "Exemplars"


def test_forgetting_one_project_s_server_keeps_the_other_projects_connections(app_env):
    """A project whose Redis does not answer is reconnected alone; other sessions keep theirs."""
    from ui import resources
    from vss_core.config.projects import load_projects

    projects = load_projects(app_env.config).projects
    alpha, beta = projects["alpha"], projects["beta"]
    dim = resources.embedder_for(alpha).dim

    def cached(project):
        return (resources.client_for(project), resources.store_for(project, dim),
                resources.decisions_for(project, dim))

    alpha_before, beta_before = cached(alpha), cached(beta)
    resources.forget_target(alpha)
    alpha_after, beta_after = cached(alpha), cached(beta)
    assert [a is b for a, b in zip(beta_after, beta_before)] == [True, True, True]
    assert [a is b for a, b in zip(alpha_after, alpha_before)] == [False, False, False]


def _closed_on_the_server(watcher, client_id: int, timeout: float = 10.0) -> bool:
    """Whether the server stops listing connection ``client_id`` within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while watcher.client_list(client_id=[client_id]):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_a_project_whose_redis_went_away_reconnects_on_next_use_and_the_old_client_is_closed(app_env):
    """The cached client is checked on use (st.cache_resource validate): after the project's embedded
    server stopped, the next use restarts it with a new client and new stores; the other project's
    client is kept, and a dropped client's connections are closed (on_release)."""
    from ui import resources
    from vss_core.config.projects import load_projects
    from vss_core.redis.server import embedded_server

    projects = load_projects(app_env.config).projects
    alpha, beta = projects["alpha"], projects["beta"]
    dim = resources.embedder_for(alpha).dim
    old, old_store, beta_client = resources.client_for(alpha), resources.store_for(alpha, dim), \
        resources.client_for(beta)
    embedded_server(app_env.data / "alpha").stop()
    new = resources.client_for(alpha)
    assert new is not old and new.ping()
    store = resources.store_for(alpha, dim)
    assert store is not old_store and store.info().count == 0
    assert resources.client_for(beta) is beta_client

    connection_id = new.client_id()
    resources.forget_target(alpha)
    assert _closed_on_the_server(resources.client_for(alpha), connection_id)
    assert resources.client_for(beta) is beta_client


# -- search ---------------------------------------------------------------------------------

def test_search_uploads_show_gallery_votes_and_downloads(app_env):
    load_exemplars(app_env, "alpha")
    at = open_app("alpha", page=SEARCH)
    queries = sorted(app_env.queries.glob("*.jpg"))
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in queries]
    files += [("notes.txt", b"plain text", "text/plain"), ("fake.png", b"not really a png", "image/png")]
    at.file_uploader(key="search_uploads").set_value(files)
    at.slider(key="search_top_n").set_value(3)
    at.button[0].click().run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "notes.txt" in page and "not an image file" in page
    assert any("fake.png" in e.value for e in at.main.error)
    galleries = [img for img in at.get("image") if len(img.captions) == 3]
    assert len(galleries) == len(queries)
    for query, gallery in zip(queries, galleries):
        true_label = query.name.split("_")[1]
        labels = [c.split(" · ")[0] for c in gallery.captions]
        scores = [float(c.split(" · ")[1]) for c in gallery.captions]
        assert labels.count(true_label) >= 2, (query.name, gallery.captions)
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    votes = [m.value for m in at.markdown if m.value.startswith("Suggested")]
    assert len(votes) == len(queries) and all("majority" in v and "%" in v for v in votes)
    downloads = {b.label: b for b in at.get("download_button")}
    assert set(downloads) == {"JSON", "CSV"}


def test_search_gallery_of_32_queries_shows_every_gallery(app_env):
    """All 32 galleries of top-5 exemplars render (the time it takes is measured in bench/gallery.py)."""
    import io as _io

    from tests.fixtures_models import LABELS, label_image

    load_exemplars(app_env, "alpha")
    files = []
    for i in range(32):
        buf = _io.BytesIO()
        label_image(sorted(LABELS)[i % 3], seed=3000 + i, size=(1024, 768)).save(buf, "JPEG")
        files.append((f"big_{i}.jpg", buf.getvalue(), "image/jpeg"))
    at = open_app("alpha", page=SEARCH)
    at.file_uploader(key="search_uploads").set_value(files)
    at.button[0].click().run()
    assert not at.exception
    galleries = [img for img in at.get("image") if len(img.captions) == 5]
    assert len(galleries) == 32
    for i, gallery in enumerate(galleries):
        assert gallery.captions[0].split(" · ")[0] == sorted(LABELS)[i % 3]


def test_search_results_export_shapes(app_env):
    """The exports the download buttons offer, from the results the page shows."""
    from ui.resources import results_cache

    load_exemplars(app_env, "alpha")
    at = open_app("alpha", page=SEARCH)
    at.text_input(key="search_path").set_value("queries")
    at.button[0].click().run()
    results = results_cache().get(at.session_state["search_result_id"])[0]
    data = results.to_fastapi_json()
    assert set(data) >= {"filenames", "predictions", "scores", "ids"}
    assert len(data["filenames"]) == 6 and [len(p) for p in data["predictions"]] == [5] * 6
    json.dumps(data)
    assert results.to_csv().splitlines()[0].startswith("filename,rank,label,similarity")
    assert "readme.txt" in texts(at)  # a non-image in the folder is named and skipped


@pytest.mark.parametrize("path", ["{outside}", "{roots}/../outside", "escape", "{roots}/escape/circles",
                                  "/etc"])
def test_search_refuses_paths_outside_data_roots(app_env, path):
    at = open_app("alpha", page=SEARCH)
    at.text_input(key="search_path").set_value(path.format(outside=app_env.outside, roots=app_env.roots))
    at.button[0].click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.main.error)
    assert "outside the project's data roots" in errors
    assert not [img for img in at.get("image") if len(img.captions) > 1]


# -- exemplars ------------------------------------------------------------------------------

def _job_lines(at):
    return [m.value for m in at.markdown if "**Load**" in m.value]


def test_load_job_runs_to_completion_and_updates_index(app_env):
    at = open_app("beta", annotator="tester", page=EXEMPLARS)
    at.text_input(key="load_path_folder").set_value(str(app_env.exemplars))
    at.button(key="load_start").click().run()
    assert not at.exception and not at.main.error
    run_until(at, lambda a: any(line.endswith("— done") for line in _job_lines(a)))
    bar = at.get("progress")[0]
    assert bar.value == 100 and bar.text.startswith("18 / 18") and "/s" in bar.text
    assert "by tester" in _job_lines(at)[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Exemplars"] == "18" and metrics["Labels"] == "3" and metrics["Dimension"] == "32"
    assert len(at.get("vega_lite_chart")) == 1  # the count per label
    # running it again skips everything (ids from file content); the run that saw "done" may have drawn the
    # button while the job was still active (disabled), so draw the page once more first
    at.run()
    at.button(key="load_start").click().run()
    run_until(at, lambda a: any(line.endswith("— done") for line in _job_lines(a))
              and "skipped 18" in texts(a))


def test_running_job_seen_from_another_session_and_cancelled(app_env):
    """A job in the shared registry shows in a fresh session (reload/second tab) and can be cancelled."""
    from ui.resources import job_registry

    release = threading.Event()

    def slow(progress):
        progress.set_total(10)
        progress.advance(3, errors=[("bad.jpg", "not an image")])
        progress.message("working")
        while not progress.cancelled and not release.wait(0.02):
            pass
        return None

    job_id = job_registry().start("load", slow, project="gamma", source="folder",
                                  path=str(app_env.exemplars), added_by="someone",
                                  label="folder exemplars")
    try:
        at = open_app("gamma", annotator="tester", page=EXEMPLARS)
        assert "running" in _job_lines(at)[0]
        bar = at.get("progress")[0]
        assert bar.value == 30 and bar.text.startswith("3 / 10") and "ETA" in bar.text
        assert list(at.dataframe[0].value["file"]) == ["bad.jpg"]
        assert at.button(key="load_start").disabled
        at.button(key=f"cancel_{job_id}").click().run()
        run_until(at, lambda a: any(line.endswith("— cancelled") for line in _job_lines(a)))
        assert at.button(key=f"resume_{job_id}")
    finally:
        release.set()
        job_registry().wait(job_id, 10)


def test_load_refuses_outside_paths_and_needs_annotator(app_env):
    at = open_app("gamma", page=EXEMPLARS)
    assert at.button(key="load_start").disabled
    assert "annotator" in " ".join(w.value for w in at.warning)
    at.sidebar.text_input(key="annotator").set_value("tester").run()
    for path in (str(app_env.outside), "escape", f"{app_env.roots}/../outside"):
        at.text_input(key="load_path_folder").set_value(path)
        at.button(key="load_start").click().run()
        assert "outside the project's data roots" in " ".join(e.value for e in at.main.error)
    from ui.resources import job_registry

    assert not job_registry().jobs(project="gamma", active=True)


def test_zip_upload_and_delete_with_confirmation(app_env):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for label in ("circles", "squares"):
            for p in sorted((app_env.exemplars / label).glob("*.jpg"))[:3]:
                z.write(p, f"set/{label}/{p.name}")
        z.writestr("set/circles/broken.jpg", b"this is not a jpeg")
    at = open_app("gamma", annotator="tester", page=EXEMPLARS)
    at.radio(key="load_source").set_value("zip").run()
    at.file_uploader(key="load_zip").set_value(("set.zip", buf.getvalue(), "application/zip"))
    at.button(key="load_start").click().run()
    run_until(at, lambda a: any(line.endswith("— done") for line in _job_lines(a)))
    assert any(f.endswith("broken.jpg") for f in at.dataframe[0].value["file"])
    counts_before = {m.label: m.value for m in at.metric}
    assert (counts_before["Exemplars"], counts_before["Labels"]) == ("6", "2")
    label = at.selectbox(key="browse_label").value
    at.button(key="ask_delete_label").click().run()
    assert "undo it from the audit" in " ".join(w.value for w in at.warning)
    at.button(key="confirm_no").click().run()
    assert {m.label: m.value for m in at.metric} == counts_before
    at.button(key="ask_delete_label").click().run()
    at.button(key="confirm_yes").click().run()
    assert not at.exception
    after = {m.label: m.value for m in at.metric}
    assert (after["Exemplars"], after["Labels"]) == ("3", "1")
    assert label not in at.selectbox(key="browse_label").options
    # and a single exemplar, again behind a confirmation
    assert at.selectbox(key="browse_exemplar").value
    at.button(key="ask_delete_exemplar").click().run()
    at.button(key="confirm_yes").click().run()
    assert {m.label: m.value for m in at.metric}["Exemplars"] == "2"


def test_csv_load_refuses_rows_outside_roots_and_lists_errors(app_env, tmp_path):
    rows = ["path,label"]
    rows += [f"exemplars/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(app_env.exemplars.rglob("*.jpg"))[:4]]
    outside_image = next(app_env.outside.rglob("*.jpg"))
    rows += [f"{outside_image},circles", "exemplars/circles/gone.jpg,circles"]
    csv_file = app_env.roots / "labels.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    at = open_app("gamma", annotator="tester", page=EXEMPLARS)
    at.radio(key="load_source").set_value("csv").run()
    at.text_input(key="load_path_csv").set_value("labels.csv")
    at.button(key="load_start").click().run()
    assert not at.main.error
    run_until(at, lambda a: any(line.endswith("— done") for line in _job_lines(a)))
    assert at.get("progress")[0].text.startswith("6 / 6")
    errors = dict(zip(at.dataframe[0].value["file"], at.dataframe[0].value["reason"]))
    assert "outside the project's data roots" in errors[str(outside_image)]
    assert any(f.endswith("gone.jpg") for f in errors)


def test_upload_over_the_cap_gets_a_message(app_env):
    from streamlit import config as st_config

    old = st_config.get_option("server.maxUploadSize")
    st_config.set_option("server.maxUploadSize", 1)
    try:
        at = open_app("alpha", page=SEARCH)
        big = b"\xff\xd8" + b"0" * (2 * 1024 * 1024)
        small = next(app_env.queries.glob("*.jpg"))
        at.file_uploader(key="search_uploads").set_value(
            [("huge.jpg", big, "image/jpeg"), (small.name, small.read_bytes(), "image/jpeg")])
        at.button[0].click().run()
        warning = " ".join(w.value for w in at.warning)
        assert "huge.jpg" in warning and "over the upload cap of 1 MB" in warning
        assert [img for img in at.get("image") if small.name in img.captions]
    finally:
        st_config.set_option("server.maxUploadSize", old)


def test_resume_after_cancel_loads_the_rest(app_env):
    from ui.resources import job_registry

    at = open_app("gamma", annotator="tester", page=EXEMPLARS)
    job_id = job_registry().start("load", lambda p: p.cancel_event.wait(10), project="gamma",
                                  source="folder", path=str(app_env.exemplars), added_by="tester",
                                  label="folder exemplars")
    job_registry().cancel(job_id)
    job_registry().wait(job_id, 10)
    at.run()
    at.button(key=f"resume_{job_id}").click().run()
    run_until(at, lambda a: any(line.endswith("— done") for line in _job_lines(a)))
    assert at.get("progress")[0].text.startswith("18 / 18")


def test_thumbnails_cached_and_placeholder_for_missing_files(app_env, tmp_path):
    from ui.thumbs import ThumbCache, placeholder

    cache = ThumbCache(max_items=4)
    image = next(app_env.exemplars.rglob("*.jpg"))
    first = cache.for_path(image)
    assert first[:2] == b"\xff\xd8" and first is cache.for_path(image)
    assert cache.for_path(tmp_path / "gone.jpg") == placeholder("file missing")
    assert cache.for_bytes(b"not an image") == placeholder("unreadable")
    assert cache.for_path("") == placeholder("no source")
