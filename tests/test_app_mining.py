"""The mining pages through AppTest: Rare events, Anomalies, Exemplar audit and Embedding map, on a pool
with planted odd images; scoring as jobs, marking, a new class from a group, keep/retire, undo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import LABELS, label_image
from tests.test_app import load_exemplars, open_app, run_until, texts
from tests.test_app_review import PROJECT, clean_project, metric  # noqa: F401  (fixture)


@pytest.fixture
def pool(app_env, clean_project, tmp_path):  # noqa: F811
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.predict import collect_images, predict_paths

    load_exemplars(app_env, PROJECT)
    folder = tmp_path / "pool"
    folder.mkdir()
    for k, label in enumerate(sorted(LABELS)):
        for i in range(8):
            label_image(label, seed=6000 + 100 * k + i).save(folder / f"{label}_{i}.jpg", quality=90)
    for i in range(2):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(folder / f"zz_odd_{i}.png")
    project = load_projects(app_env.config).projects[PROJECT]
    embedder = Embedder(str(app_env.model), device="cpu", batch_size=8)
    d = open_decisions(project, embedder.dim)
    predict_paths(collect_images(folder), embedder, d.exemplars, d.pool, job="run1")
    return d


def score(at, what: str):
    at.button(key=f"mine_{what}").click().run()
    return run_until(at, lambda a: "— done" in texts(a), timeout=60)


def table(at, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


def test_rare_events_rank_novel_first_and_make_a_new_class(app_env, pool):
    at = open_app(PROJECT, annotator="ana", page="pages/rare.py")
    assert "Score novelty" in at.button(key="mine_novelty").label
    at = score(at, "novelty")
    assert table(at, "novelty")["file"].iloc[0].startswith("zz_odd")
    groups = [m.value for m in at.markdown if m.value.startswith("**Group ")]
    assert groups
    at.text_input(key="group0_new").set_value("odd thing").run()
    assert at.button(key="group0_assign").label == "Create class"
    at.button(key="group0_assign").click().run()
    assert "odd thing" not in pool.exemplars.label_counts()  # listed first, applied only on Apply
    at.button(key="group0_apply").click().run()
    assert "new class" in texts(at)
    assert "odd thing" in pool.exemplars.label_counts()
    at.button(key="rare_undo").click().run()
    assert "odd thing" not in pool.exemplars.label_counts()


def test_anomalies_mark_and_export(app_env, pool):
    at = open_app(PROJECT, annotator="ana", page="pages/anomalies.py")
    at.selectbox(key="anomaly_scope").set_value("run1").run()
    at = score(at, "anomaly")
    at.number_input(key="anomaly_top").set_value(at.number_input(key="anomaly_top").max).run()
    shown = table(at, "anomaly")
    assert set(shown["file"].iloc[:2]) == {"zz_odd_0.png", "zz_odd_1.png"}
    assert "Marked anomalies" in texts(at)
    assert at.button(key="mark_anomaly").disabled  # nothing selected yet
    from vss_core.labeling.decisions import Change
    from vss_core.redis.pool import PoolFilter

    odd = [i for i in pool.pool.page(limit=100)[1] if i.name.startswith("zz_odd")]
    pool.apply([Change(i.id, None, expected_version=i.version, flag="anomaly") for i in odd], "ana", "mark anomaly")
    at.run()
    assert "2 image(s) marked as anomalies" in texts(at)
    at.button(key="anomaly_write").click().run()
    written = next(s.value for s in at.success).split("`")[1]
    lines = open(written, encoding="utf-8").read().splitlines()
    assert len(lines) == 3 and all("anomaly" in line for line in lines[1:])
    assert pool.pool.page(PoolFilter(flags=("anomaly",)), limit=0)[0] == 2


def test_exemplar_audit_keep_and_retire_with_undo(app_env, pool):
    at = open_app(PROJECT, annotator="ana", page="pages/audit.py")
    at = score(at, "mislabel")
    keeps = [b for b in at.button if b.key and b.key.startswith("keep_")]
    retires = [b for b in at.button if b.key and b.key.startswith("retire_")]
    assert len(keeps) == 18 and len(retires) == 18
    before = sum(pool.exemplars.label_counts().values())
    retires[0].click().run()
    assert sum(pool.exemplars.label_counts().values()) == before - 1 and "retire: 1 image(s) changed" in texts(at)
    at.button(key="audit_undo").click().run()
    assert sum(pool.exemplars.label_counts().values()) == before


def test_embedding_map_draws_every_point(app_env, pool):
    at = open_app(PROJECT, annotator="ana", page="pages/map.py")
    assert not at.exception
    charts = [str(e.proto) for e in at.get("vega_lite_chart")]
    assert any("all 44 points" in c for c in charts)
