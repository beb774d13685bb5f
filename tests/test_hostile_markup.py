"""User text is data, never markup: labels, annotator names, file names and REST upload names that hold
Markdown image syntax and HTML are shown literally on the Search, Review, Exemplars and Audit pages.

Every element Streamlit renders as Markdown (markdown, captions, alerts, image captions, button and
expander labels) is rendered here with a CommonMark parser: none may produce an image, a link or HTML,
and the hostile text must appear as text."""

from __future__ import annotations

import html
from pathlib import Path
import shutil

import pytest
from markdown_it import MarkdownIt

from tests.fixtures_models import LABELS, encode, label_image
from tests.test_app import open_app

BEACON = "![b](http://127.0.0.1:9/beacon.png)<img src=http://127.0.0.1:9/i.png>"
WHO = "![who](http://127.0.0.1:9/who.png)<b>ana</b>"
FILE = "![q](beacon.png)<b>q_x_.jpg"  # a file name holds no "/"
PROJECT = "hostile"
_RENDER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def bodies(at) -> list[str]:
    """The Markdown source of every element of the page that Streamlit renders as Markdown."""
    out = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success",
                 "toast"):
        out += [str(e.value) for e in at.get(kind)]
    for image in at.get("image"):
        out += [str(c) for c in image.captions if c]
    out += [b.label for b in at.button] + [e.label for e in at.get("expandable")]
    return out


def assert_literal(at, *texts: str) -> None:
    rendered = [_RENDER.render(body) for body in bodies(at)]
    for html_out in rendered:
        assert "<img" not in html_out and "<a " not in html_out and "<b>" not in html_out, html_out
    page = "\n".join(rendered)
    for text in texts:
        assert html.escape(text, quote=False) in page, f"{text!r} is not shown as text"


@pytest.fixture
def hostile(app_env, tmp_path, monkeypatch):
    """Project ``hostile``: exemplars labeled ``<BEACON> <label>`` loaded by WHO, a pool of queries whose
    file names are FILE-like, one decided by WHO, and exemplar-audit scores."""
    from ui import resources
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import Change, open_decisions
    from vss_core.labeling.loader import collect_csv, load_items
    from vss_core.labeling.predict import predict_paths
    from vss_core.mining.runs import score_mislabel
    from vss_core.redis.server import connect, embedded_server

    root = tmp_path / "root"
    shutil.copytree(app_env.exemplars, root / "exemplars")
    (root / "labels.csv").write_text("path,label\n" + "".join(
        f'"{p}","{BEACON} {p.parent.name}"\n' for p in sorted((root / "exemplars").rglob("*.jpg"))))
    (root / "queries").mkdir()
    for i, label in enumerate(sorted(LABELS)):
        label_image(label, seed=8100 + i).save(root / "queries" / FILE.replace(".jpg", f"{i}.jpg"))
    config = tmp_path / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(f"vss:\n  project: {PROJECT}\n  model: {app_env.model}\n  device: cpu\n"
                                            f"  data_roots:\n    - {root}\n")
    monkeypatch.setenv("CONFIG_PATH", str(config))
    resources.reload_projects()
    project = load_projects(config).projects[PROJECT]
    connect(project).flushall()
    embedder = Embedder(str(app_env.model), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim, embedder.model_name)
    load_items(collect_csv(root / "labels.csv"), embedder, d.exemplars, added_by=WHO)
    predict_paths(sorted((root / "queries").iterdir()), embedder, d.exemplars, d.pool, top_n=3, threshold=0.5)
    first = d.pool.page(limit=1)[1][0]
    d.apply([Change(first.id, "accepted", None, first.version)], WHO)
    score_mislabel(d, k=3)
    yield root
    resources.reload_projects()
    server = embedded_server(app_env.data / PROJECT)
    if server.running:
        server.stop()


def test_search_page_shows_labels_file_names_and_rest_job_names_as_text(hostile):
    from ui.resources import job_registry

    job_registry().start("knn", lambda p: None, project=PROJECT, label=f"1 image(s), top 3 ({FILE})",
                         added_by=WHO)
    at = open_app(PROJECT, page="pages/search.py")
    at.file_uploader(key="search_uploads").set_value(
        [(FILE, encode(label_image("circles", seed=8200)), "image/jpeg"), (f"{FILE}.txt", b"x", "text/plain")])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert_literal(at, BEACON, FILE, WHO)


def test_review_page_shows_names_labels_and_annotators_as_text(hostile):
    """Names and labels reach the tile workspace as data (its JS sets them with textContent, never innerHTML);
    nothing on the page renders them as markup."""
    from ui.review_actions import PANEL, PANELS

    at = open_app(PROJECT, annotator=WHO, page="pages/review.py")
    views = [(statuses, PANELS[0]) for statuses in (["predicted"], ["accepted"])]
    for statuses, panel in views + [(["accepted"], panel) for panel in PANELS[1:]]:
        at.session_state[PANEL] = panel
        at.multiselect(key="review_status").set_value(statuses).run()
        assert not at.exception, at.exception
        shown = " ".join(_RENDER.render(b) for b in bodies(at))
        assert "<b>" not in shown and "<img" not in shown
    js = "".join(p.read_text() for p in (Path(__file__).parent.parent / "ui" / "workspace").glob("*.js"))
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js


def test_exemplars_page_shows_labels_and_who_added_them_as_text(hostile):
    at = open_app(PROJECT, annotator=WHO, page="pages/exemplars.py")
    assert not at.exception, at.exception
    assert_literal(at, BEACON, WHO)
    at.button(key="ask_delete_label").click().run()
    assert_literal(at, BEACON)


def test_audit_page_shows_labels_as_text(hostile):
    at = open_app(PROJECT, annotator=WHO, page="pages/audit.py")
    assert not at.exception, at.exception
    grids = [h.proto.body for h in at.get("html") if "vss-grid" in h.proto.body]
    assert grids and any(html.escape(BEACON) in g for g in grids)  # the thumbnail grid's captions, escaped
    assert not any(BEACON in g for g in grids)
