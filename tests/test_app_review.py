"""The Review page through AppTest: predict as a job, decide in the tile workspace (its batches, as the browser
sends them), bulk accept after a preview, undo, stale suggestions, conflicts between annotators, and the label
sheet.  Each test starts from an empty project.  The keys themselves are driven in Chromium
(tests/test_workspace_browser.py, tests/test_browser.py)."""

from __future__ import annotations

import csv
import io

import pytest

from tests.test_app import load_exemplars, open_app, run_until, texts

REVIEW = "pages/review.py"
PROJECT = "review"


@pytest.fixture(autouse=True)
def clean_project(app_env):
    from ui import resources
    from vss_core.config.projects import load_projects
    from vss_core.redis.server import connect

    project = load_projects(app_env.config).projects[PROJECT]
    connect(project).flushall()
    resources.forget_target(project)
    yield project
    registry = resources.job_registry()
    for snap in registry.jobs(project=PROJECT, active=True):
        registry.cancel(snap.id)
        registry.wait(snap.id, 30)


def open_panel(at, name: str):
    """Open one of the panels under the workspace (only the open one is drawn)."""
    from ui.review_actions import PANEL

    at.session_state[PANEL] = name
    return at.run()


def metric(at, label: str) -> str:
    """A count of the Overview panel (opened first when it is not)."""
    if not at.metric:
        open_panel(at, "Overview")
    return next(m.value for m in at.metric if m.label == label)


def shown(at, project) -> list:
    """The pool items of the workspace's page, as they are now, in the order shown."""
    from vss_core.labeling.decisions import open_decisions

    return open_decisions(project, 32).pool.get(at.session_state["review_ws_ids"])


def send(at, *decisions, seq=[0]):
    """A batch from the browser's workspace: (item, status, label, how) tuples."""
    from ui.workspace import _state_keys

    seq[0] += 1
    batch = {"client": "test", "seq": seq[0], "undo": 0,
             "decisions": [{"id": i.id, "version": i.version, "status": status, "label": label, "how": how}
                           for i, status, label, how in decisions]}
    at.session_state[_state_keys("review_ws")[0]] = [batch]
    return at.run()


def predicted_page(app_env, annotator="ana"):
    load_exemplars(app_env, PROJECT)
    at = open_app(PROJECT, annotator=annotator, page=REVIEW)
    at.radio(key="predict_source").set_value("folder")
    at.text_input(key="predict_path_folder").set_value(str(app_env.queries)).run()
    at.button(key="predict_start").click().run()
    assert not at.exception
    open_panel(at, "Overview")
    at = run_until(at, lambda a: a.metric and metric(a, "In the pool") == "6", timeout=60)
    return at.run()  # the job may have finished after the workspace was drawn in that run


def test_empty_exemplars_is_one_clear_message(app_env):
    at = open_app(PROJECT, annotator="ana", page=REVIEW)
    at.radio(key="predict_source").set_value("folder")
    at.text_input(key="predict_path_folder").set_value(str(app_env.queries)).run()
    at.button(key="predict_start").click().run()
    errors = [e.value for e in at.main.error]
    assert len(errors) == 1 and "is empty: load labeled exemplars" in errors[0]


def test_predict_job_fills_the_workspace_and_lists_bad_files(app_env, clean_project):
    at = predicted_page(app_env)
    assert metric(at, "predicted") == "6"
    items = shown(at, clean_project)
    assert len(items) == 6 and {i.status for i in items} == {"predicted"}
    assert {i.name.split("_")[1] for i in items} == {"circles", "squares", "stripes"}
    errors = next(df.value for df in at.dataframe if "reason" in df.value.columns)
    assert [f.rsplit("/", 1)[-1] for f in errors["file"]] == ["readme.txt"]


def test_the_focus_view_gets_its_neighbours_until_the_browser_says_it_closed(app_env, clean_project):
    from ui.review_workspace import FOCUS
    from ui.workspace import _request_key

    at = predicted_page(app_env)
    first = at.session_state["review_ws_ids"][0]
    at.session_state[_request_key("review_ws", "focus")] = first  # Enter on the first tile
    at.run()
    assert at.session_state[FOCUS] == first and not at.exception
    at.run()  # another run (a batch, say): still open, its data still sent
    assert at.session_state[FOCUS] == first
    at.session_state[_request_key("review_ws", "closed")] = True  # a message said no focus view is open
    at.run()
    assert FOCUS not in at.session_state and not at.exception


def test_accept_correct_and_undo_from_workspace_batches(app_env, clean_project):
    at = predicted_page(app_env)
    first, second, *_ = shown(at, clean_project)
    send(at, (first, "accepted", first.suggestion, "page"))
    assert metric(at, "accepted") == "1" and metric(at, "predicted") == "5"
    assert [i.id for i in shown(at, clean_project)][:2] == [first.id, second.id]  # the page stays as it was seen
    other = next(label for label in ("circles", "squares") if label != first.suggestion)
    send(at, (second, "accepted", "Calanus – ♀", "single"), (first, "accepted", other, "single"))
    assert metric(at, "corrected") == "2"  # the first tile decided again on its old version: still ours, not refused
    after = {i.id: i for i in shown(at, clean_project)}
    assert after[second.id].label == "Calanus – ♀" and after[second.id].how == "single"
    send(at, (second, "predicted", None, "undo"))  # U on the tile: back to its suggestion
    assert after[second.id].suggestion == shown(at, clean_project)[1].label and metric(at, "corrected") == "1"
    at.button(key="review_undo").click().run()
    assert "Undone" in texts(at) and metric(at, "corrected") == "2" and metric(at, "predicted") == "4"


def test_bulk_accept_only_after_every_image_was_previewed_and_not_promoted(app_env, monkeypatch):
    from ui import review_actions

    monkeypatch.setattr(review_actions, "PREVIEW_PAGE", 4)
    at = open_panel(predicted_page(app_env), "Accept in bulk")
    at.number_input(key="bulk_threshold").set_value(-1.0).run()
    at.toggle(key="bulk_uncertain").set_value(True).run()
    assert "bulk decisions stay in the pool only" in texts(at)
    at.button(key="bulk_open").click().run()
    assert at.button(key="bulk_accept").label == "Accept these 6" and at.button(key="bulk_accept").disabled
    assert "seen 1 of 2 page(s)" in texts(at)
    at.button(key="bulk_next").click().run()
    assert not at.button(key="bulk_accept").disabled
    at.button(key="bulk_accept").click().run()
    assert "bulk accept: 6 image(s) changed" in texts(at) and metric(at, "accepted") == "6"
    from vss_core.config.projects import load_projects
    from vss_core.redis.exemplars import connect_store

    counts = connect_store(load_projects(app_env.config).projects[PROJECT]).label_counts()
    assert sum(counts.values()) == 18  # the project's policy: bulk decisions are not promoted to exemplars


def test_a_change_someone_else_made_since_is_refused(app_env, clean_project):
    from vss_core.labeling.decisions import Change, open_decisions

    at = predicted_page(app_env)
    item = shown(at, clean_project)[0]
    d = open_decisions(clean_project, 32)
    d.apply([Change(item.id, "dubious", None, item.version)], "bob")
    send(at, (item, "accepted", item.suggestion, "page"))
    conflict = at.session_state["review_ws_conflicts"][item.id]
    assert "bob" in conflict and "since you saw it" in conflict  # shown on the tile
    assert d.pool.get([item.id])[0].status == "dubious"


def test_no_annotator_no_decisions(app_env):
    load_exemplars(app_env, PROJECT)
    at = open_app(PROJECT, page=REVIEW)
    assert at.button(key="predict_start").disabled
    assert "Enter your name" in texts(at)


def test_label_sheet_download_matches_the_pool(app_env, clean_project):
    from vss_core.labeling import labelsheet
    from vss_core.labeling.decisions import open_decisions

    at = predicted_page(app_env)
    item = shown(at, clean_project)[0]
    send(at, (item, "accepted", item.suggestion, "page"))
    rows = list(csv.DictReader(io.StringIO(labelsheet.to_csv(open_decisions(clean_project, 32).pool))))
    assert len(rows) == 6 and sum(r["status"] == "accepted" for r in rows) == 1
    assert [(r["how"], r["exemplar"]) for r in rows if r["status"] == "accepted"] == [("page", "1")]
    open_panel(at, "Export").button(key="write_sheet").click().run()
    assert "Written:" in texts(at)


def test_review_page_after_an_exemplar_audit_relabel_and_retire(app_env, clean_project):
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.exemplar_review import ExemplarReview
    from vss_core.redis.pool import PoolFilter

    at = predicted_page(app_env)
    item = shown(at, clean_project)[0]
    send(at, (item, "accepted", item.suggestion, "page"))
    d = open_decisions(clean_project, 32)
    accepted = d.pool.page(PoolFilter(statuses=("accepted",)))[1][0]
    review = ExemplarReview(d)
    assert review.relabel([accepted.exemplar], "audited label", "aud").applied
    assert review.retire([d.exemplars.exemplars("circles", limit=1)[0].key], "aud").applied
    at.run()
    assert not at.exception
    assert open_panel(at, "Export").button(key="write_sheet") and not at.exception
    activity = next(df.value for df in open_panel(at, "Activity").dataframe if "action" in df.value.columns)
    assert list(activity["action"])[:3] == ["retire", "relabel", "workspace"]
    assert "audited label" in activity["after"].iloc[1]
    assert d.pool.get([accepted.id])[0].label == "audited label"  # the image follows its exemplar


def test_stale_suggestions_are_marked_and_refreshed_by_a_resuggest_job(app_env, clean_project):
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.exemplar_review import ExemplarReview

    at = predicted_page(app_env)
    assert "stale" not in texts(at)
    d = open_decisions(clean_project, 32)
    circles = [e.key for e in d.exemplars.exemplars("circles", limit=100)]
    assert ExemplarReview(d).relabel(circles, "rings", "aud").applied  # the class is renamed: suggestions age
    at.run()
    assert "6 undecided suggestion(s) are stale" in texts(at)
    at.button(key="resuggest").click().run()
    at = run_until(at, lambda a: "6 suggestion(s) refreshed" in texts(a), timeout=60)
    at.run()
    assert "are stale" not in texts(at) and not at.exception
    suggestions = {i.suggestion for i in shown(at, clean_project)}
    assert "rings" in suggestions and "circles" not in suggestions


def test_the_exemplar_audit_page_says_when_its_ranking_is_stale(app_env, clean_project):
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.exemplar_review import ExemplarReview
    from vss_core.mining import runs as mining_jobs

    load_exemplars(app_env, PROJECT)
    d = open_decisions(clean_project, 32)
    assert mining_jobs.score_mislabel(d, k=3) == 18
    at = open_app(PROJECT, annotator="ana", page="pages/audit.py")
    assert "Up to date with the exemplars: 18 scored" in texts(at)
    ExemplarReview(d).retire([d.exemplars.exemplars("circles", limit=1)[0].key], "aud")
    at.run()
    assert "Stale: the exemplars changed since this ranking was made" in texts(at) and not at.exception
