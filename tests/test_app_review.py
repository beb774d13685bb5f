"""The Review page through AppTest: predict as a job, review with the buttons, bulk accept, undo, stale suggestions,
conflicts between annotators, and the label sheet.  Each test starts from an empty project."""

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


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def grid(at):
    return next(df.value for df in at.dataframe if "suggestion" in df.value.columns)


def predicted_page(app_env, annotator="ana"):
    load_exemplars(app_env, PROJECT)
    at = open_app(PROJECT, annotator=annotator, page=REVIEW)
    at.radio(key="predict_source").set_value("folder")
    at.text_input(key="predict_path_folder").set_value(str(app_env.queries)).run()
    at.button(key="predict_start").click().run()
    assert not at.exception
    return run_until(at, lambda a: a.metric and metric(a, "In the pool") == "6", timeout=60)


def test_empty_exemplars_is_one_clear_message(app_env):
    at = open_app(PROJECT, annotator="ana", page=REVIEW)
    at.radio(key="predict_source").set_value("folder")
    at.text_input(key="predict_path_folder").set_value(str(app_env.queries)).run()
    at.button(key="predict_start").click().run()
    errors = [e.value for e in at.main.error]
    assert len(errors) == 1 and "is empty: load labeled exemplars" in errors[0]


def test_predict_job_fills_the_grid_and_lists_bad_files(app_env):
    at = predicted_page(app_env)
    assert metric(at, "predicted") == "6"
    shown = grid(at)
    assert len(shown) == 6 and set(shown["status"]) == {"predicted"}
    assert {name.split("_")[1] for name in shown["file"]} == {"circles", "squares", "stripes"}
    errors = next(df.value for df in at.dataframe if "reason" in df.value.columns)
    assert [f.rsplit("/", 1)[-1] for f in errors["file"]] == ["readme.txt"]


def test_accept_correct_undo_with_the_focus_buttons(app_env):
    at = predicted_page(app_env)
    first = grid(at)["file"].iloc[0]
    assert first in texts(at)
    at.button(key="k_accept").click().run()
    assert metric(at, "accepted") == "1" and metric(at, "predicted") == "5"
    assert first not in grid(at)["file"].tolist()  # decided: leaves the to-do list
    at.text_input(key="review_new_label").set_value("Calanus – ♀").run()
    at.button(key="k_correct").click().run()
    assert metric(at, "corrected") == "1"
    at.button(key="k_undo").click().run()
    assert metric(at, "corrected") == "0" and "Undone" in texts(at)
    at.button(key="k_undo").click().run()
    assert metric(at, "accepted") == "0" and metric(at, "predicted") == "6"


def test_bulk_accept_above_threshold_is_one_click(app_env):
    at = predicted_page(app_env)
    at.number_input(key="bulk_threshold").set_value(-1.0).run()
    button = at.button(key="bulk_accept")
    assert button.label == "Accept 6 image(s)"
    button.click().run()
    assert metric(at, "accepted") == "6" and "bulk accept: 6 image(s) changed" in texts(at)
    from vss_core.config.projects import load_projects
    from vss_core.redis.exemplars import connect_store

    counts = connect_store(load_projects(app_env.config).projects[PROJECT]).label_counts()
    assert sum(counts.values()) == 18 + 6  # accepted images became exemplars


def test_a_change_someone_else_made_since_is_refused(app_env, clean_project):
    from vss_core.labeling.decisions import Change, open_decisions

    at = predicted_page(app_env)
    shown = grid(at)["file"].iloc[0]
    d = open_decisions(clean_project, 32)
    item = next(i for i in d.pool.page(limit=10)[1] if i.name == shown)
    d.apply([Change(item.id, "dubious", None, item.version)], "bob")
    at.button(key="k_accept").click().run()
    warning = " ".join(w.value for w in at.warning)
    assert "Not saved" in warning and "bob" in warning
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
    at.button(key="k_accept").click().run()
    rows = list(csv.DictReader(io.StringIO(labelsheet.to_csv(open_decisions(clean_project, 32).pool))))
    assert len(rows) == 6 and sum(r["status"] == "accepted" for r in rows) == 1
    at.button(key="write_sheet").click().run()
    assert "Written:" in texts(at)


def test_review_page_after_an_exemplar_audit_relabel_and_retire(app_env, clean_project):
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.exemplar_review import ExemplarReview
    from vss_core.redis.pool import PoolFilter

    at = predicted_page(app_env)
    at.button(key="k_accept").click().run()
    d = open_decisions(clean_project, 32)
    accepted = d.pool.page(PoolFilter(statuses=("accepted",)))[1][0]
    review = ExemplarReview(d)
    assert review.relabel([accepted.exemplar], "audited label", "aud").applied
    assert review.retire([d.exemplars.exemplars("circles", limit=1)[0].key], "aud").applied
    at.run()
    assert not at.exception
    assert "Export" in [h.value for h in at.subheader]
    assert at.button(key="write_sheet")
    activity = next(df.value for df in at.dataframe if "action" in df.value.columns)
    assert list(activity["action"])[:3] == ["retire", "relabel", "decide"]
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
    assert "stale: made before the exemplars last changed" in texts(at)  # the focused image says so too
    at.button(key="resuggest").click().run()
    at = run_until(at, lambda a: "6 suggestion(s) refreshed" in texts(a), timeout=60)
    at.run()
    assert "are stale" not in texts(at) and not at.exception
    suggestions = set(grid(at)["suggestion"])
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
