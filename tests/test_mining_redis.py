"""Mining through the embedded Redis: the chunked scores equal vss_core.mining.scores's full-matrix ones, and
a planted novel image, an odd one out and a mislabeled exemplar rank first."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import label_image
from vss_core.embed.embedder import Embedder
from vss_core.labeling.decisions import open_decisions
from vss_core.labeling.loader import collect_folder, load_items
from vss_core.labeling.predict import predict_paths
from vss_core.mining import runs as mining_jobs
from vss_core.mining import scores as mining
from vss_core.redis.pool import PoolFilter


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=8)


def noise_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8))


@pytest.fixture
def mined(redis_project, embedder, image_folder, tmp_path):
    exemplars = tmp_path / "exemplars"
    shutil.copytree(image_folder, exemplars)
    label_image("circles", seed=77).save(exemplars / "squares" / "actually_a_circle.jpg")  # mislabeled
    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    load_items(collect_folder(exemplars), embedder, d.exemplars)
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(12):
        label_image("circles", seed=4000 + i).save(pool / f"circle_{i}.jpg")
    noise_image(1).save(pool / "zz_novel.png")  # nothing like any exemplar, and odd within the set
    predict_paths(sorted(pool.iterdir()), embedder, d.exemplars, d.pool, top_n=5, threshold=0.5)
    return d


def _name(d, member):
    return d.pool.get([member])[0].name


def test_novel_image_ranks_first_and_matches_the_full_matrix(mined):
    d = mined
    assert mining_jobs.score_novelty(d, k=5) == 13
    total, top = mining_jobs.ranked(d, mining_jobs.NOVELTY, limit=3)
    assert total == 13 and _name(d, top[0].member) == "zz_novel.png"
    ids = d.pool.ids(PoolFilter())
    ex = np.vstack([v for _, _, v in mining_jobs.exemplar_batches(d)])
    expected = mining.novelty_scores(d.pool.vectors(ids), ex, k=5)
    got = dict((s.member, s.score) for s in mining_jobs.ranked(d, mining_jobs.NOVELTY, limit=100)[1])
    assert np.allclose([got[i] for i in ids], expected, atol=1e-4)


def test_odd_one_out_ranks_first_within_its_set(mined):
    d = mined
    assert mining_jobs.score_anomaly(d, k=5) == 13
    top = mining_jobs.ranked(d, mining_jobs.ANOMALY, limit=1)[1]
    assert _name(d, top[0].member) == "zz_novel.png"
    ids = d.pool.ids(PoolFilter())
    expected = mining.anomaly_scores(d.pool.vectors(ids), k=5)
    got = dict((s.member, s.score) for s in mining_jobs.ranked(d, mining_jobs.ANOMALY, limit=100)[1])
    assert np.allclose([got[i] for i in ids], expected, atol=1e-4)


def test_mislabeled_exemplar_ranks_first(mined):
    d = mined
    assert mining_jobs.score_mislabel(d, k=5) == 19
    top = mining_jobs.ranked(d, mining_jobs.MISLABEL, limit=1)[1][0]
    assert d.exemplars.client.hget(top.member, "source").decode().endswith("actually_a_circle.jpg")


def test_mining_needs_something_to_score(redis_project, embedder):
    from vss_core.errors import InputError

    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    with pytest.raises(InputError, match="at least two exemplars"):
        mining_jobs.score_novelty(d)
    with pytest.raises(InputError, match="at least two images"):
        mining_jobs.score_anomaly(d)
