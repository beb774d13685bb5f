"""The labeling loop: time to the first reviewable item, actions to validate 1,000 images, review-page
render with 10,000 pool items, and `vss predict` against `vss knn` as whole cold processes.

    .venv/bin/python bench/review.py [--images 1000] [--pool 10000] [--repeat 3]

Everything runs on the tiny ViT and an embedded Redis in a tmp dir, with images whose kind the
tiny model tells apart (so "suggestions that are right" is true of them).
 - first item: a predict job started as the Review page starts it (JobRegistry + predict_job, model
   already loaded as in the app); the time until the pool index answers a page with an item.
 - actions: AppTest drives the Review page; an action is one click, one key or one typed value.
 - render: AppTest run of the Review page (100 thumbnails per page) over a pool of --pool items;
   the first run has a cold thumbnail cache.
 - throughput: `python -m vss_core predict P FOLDER` vs `python -m vss_core knn P FILES...`, each a
   whole process from a cold start on the same images, alternated --repeat times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import REPO, machine, save_model, save_result, table, verdict  # noqa: E402
from tests.fixtures_models import LABELS, label_image  # noqa: E402

PROJECT = "bench"


def setup(root: Path, n_images: int):
    model = save_model("tiny", root / "model")
    exemplars, queries = root / "images" / "exemplars", root / "images" / "queries"
    for k, label in enumerate(sorted(LABELS)):
        (exemplars / label).mkdir(parents=True)
        for i in range(30):
            label_image(label, seed=100 * k + i).save(exemplars / label / f"{label}_{i}.jpg", quality=90)
    queries.mkdir(parents=True)
    for i in range(n_images):
        label = sorted(LABELS)[i % 3]
        label_image(label, seed=50_000 + i).save(queries / f"q_{i:05d}_{label}.jpg", quality=90)
    config = root / "config"
    config.mkdir()
    (config / "bench.yaml").write_text(f"vss:\n  project: {PROJECT}\n  model: {model}\n  device: cpu\n"
                                       f"  threshold: 0.8\n  data_roots: [{root / 'images'}]\n")
    os.environ.update(CONFIG_PATH=str(config), VSS_DATA_DIR=str(root / "data"), BATCH_SIZE="32")
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.decisions import open_decisions
    from vss_core.labeling.loader import collect_folder, load_items

    project = load_projects().get(PROJECT)
    embedder = Embedder(project.model, device="cpu")
    d = open_decisions(project, embedder.dim)
    load_items(collect_folder(exemplars), embedder, d.exemplars)
    return project, embedder, d, queries


def clear_pool(d) -> None:
    from vss_core.redis.pool import PoolFilter

    ids = d.pool.ids(PoolFilter())
    for start in range(0, len(ids), 5000):
        d.pool.client.delete(*[d.pool.key_for(i) for i in ids[start:start + 5000]])


def first_item(project, embedder, d, queries) -> dict:
    from vss_core.jobs.registry import JobRegistry
    from vss_core.labeling.predict import predict_job, threshold_of

    clear_pool(d)
    registry = JobRegistry()
    start = time.perf_counter()
    worker = predict_job("folder", str(queries), project.data_roots, embedder, d.exemplars, d.pool,
                         top_n=5, threshold=threshold_of(project))
    job = registry.start("predict", worker, project=PROJECT)
    while d.pool.page(limit=1)[0] == 0:
        time.sleep(0.01)
    first = time.perf_counter() - start
    snap = registry.wait(job, 600)
    total = time.perf_counter() - start
    return {"first item s": first, "job s": total, "images": snap.done, "img/s": snap.done / total}


def actions(queries) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params.update(project=PROJECT, annotator="bench")
    at.run()
    at.switch_page("pages/review.py").run()
    count, start = 0, time.perf_counter()
    predicted = lambda: int(next(m.value for m in at.metric if m.label == "predicted").replace(",", ""))  # noqa: E731
    while predicted() and count < 10:
        button = at.button(key="bulk_accept")
        if button.label.startswith("Accept 0 "):
            at.number_input(key="bulk_threshold").set_value(-1.0).run()  # typed a lower threshold
            count += 1
            continue
        button.click().run()
        count += 1
    took = time.perf_counter() - start
    accepted = int(next(m.value for m in at.metric if m.label == "accepted").replace(",", ""))
    return {"actions": count, "accepted": accepted, "s": took}


def fill_pool(d, n: int, sources: list[Path]) -> None:
    import numpy as np

    from vss_core.labeling.suggestions import suggestion_fields
    from vss_core.redis.pool import Prediction
    from vss_core.redis.search_index import Neighbor

    clear_pool(d)
    rng = np.random.default_rng(0)
    labels = sorted(LABELS)
    batch = []
    for i in range(n):
        vector = rng.normal(size=d.pool.layout().dim).astype(np.float32)
        neighbors = tuple(Neighbor("", labels[(i + j) % 3 if j else i % 3], f"x{j}", float(rng.uniform(0.6, 1.0)),
                                   str(sources[(i + j) % len(sources)])) for j in range(5))
        batch.append(Prediction(f"synthetic{i:06d}", str(sources[i % len(sources)]), f"synthetic_{i:06d}.jpg",
                                vector, suggestion_fields(neighbors, 0.8), "bench"))
        if len(batch) == 1000:
            d.pool.add(batch, 0.8)
            batch = []
    d.pool.add(batch, 0.8)


def render(repeat: int) -> list[dict]:
    from streamlit.testing.v1 import AppTest

    rows = []
    for i in range(repeat):
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        at.query_params.update(project=PROJECT, annotator="bench")
        at.run()
        start = time.perf_counter()
        at.switch_page("pages/review.py").run()
        took = time.perf_counter() - start
        assert not at.exception, at.exception
        shown = next(df.value for df in at.dataframe if "suggestion" in df.value.columns)
        rows.append({"run": "cold thumbnails" if i == 0 else f"warm #{i}", "render s": took, "rows": len(shown)})
    return rows


def whole_process(d, queries: Path, repeat: int) -> list[dict]:
    files = sorted(str(p) for p in queries.glob("*.jpg"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    commands = {"vss knn": [sys.executable, "-m", "vss_core", "knn", PROJECT, *files],
                "vss predict": [sys.executable, "-m", "vss_core", "predict", PROJECT, str(queries)]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            if name == "vss predict":
                clear_pool(d)
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return [{"command": name, "median s": statistics.median(t), "best s": min(t),
             "img/s": len(files) / statistics.median(t)} for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vss-review-") as tmp:
        project, embedder, d, queries = setup(Path(tmp), args.images)
        first = first_item(project, embedder, d, queries)
        acts = actions(queries)
        procs = whole_process(d, queries, args.repeat)
        fill_pool(d, args.pool, sorted(queries.glob("*.jpg")))
        renders = render(args.repeat)
        from vss_core.redis.server import embedded_server

        embedded_server(Path(tmp) / "data" / PROJECT).stop()
    table([first])
    print(f"first reviewable item after {first['first item s']:.2f} s (target <= 2 s): "
          f"{verdict(2.0 / first['first item s'], 1.0)}")
    table([acts])
    print(f"{acts['actions']} action(s) to validate {acts['accepted']} images (target <= 5): "
          f"{verdict(5 / max(acts['actions'], 1), 1.0)}")
    table(renders)
    worst = max(r["render s"] for r in renders)
    print(f"review page, {args.pool:,} items, worst render {worst:.3f} s (target <= 1 s): {verdict(1.0 / worst, 1.0)}")
    table(procs)
    ratio = procs[1]["img/s"] / procs[0]["img/s"]
    print(f"predict / knn throughput, whole cold processes: {ratio:.2f}x (target >= 0.9x): {verdict(ratio, 0.9)}")
    save_result("review", {"machine": machine(), "images": args.images, "pool": args.pool, "first": first,
                           "actions": acts, "render": renders, "whole_process": procs, "predict_vs_knn": ratio})


if __name__ == "__main__":
    main()
