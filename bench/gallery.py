"""Search page: time from the end of embedding + KNN to the rendered gallery (32 queries, top-5).

    .venv/bin/python bench/gallery.py [--queries 32] [--top-n 5] [--repeat 3]

Drives the real app (app.py, Search page) in Streamlit's AppTest with a tiny ViT and an
embedded Redis in a tmp dir.  Each run uploads ``--queries`` 1024x768 JPEGs and clicks
Search; "render" is the script run's wall time minus the search time the page reports
("Search took ..."), i.e. what a person waits for after the results exist.  The first
run renders with a cold thumbnail cache (exemplar thumbnails made from their files),
the later ones with a warm cache.  Target: render < 1 s.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import REPO, machine, natural_image, save_model, save_result, table, verdict  # noqa: E402


def setup(root: Path, exemplars_per_label: int) -> None:
    model = save_model("tiny", root / "model")
    images = root / "images"
    for k, label in enumerate(("copepod", "jelly", "larvacean")):
        (images / label).mkdir(parents=True)
        for i in range(exemplars_per_label):
            natural_image(1000 * k + i, (320, 240)).save(images / label / f"{label}_{i}.jpg", quality=88)
    config = root / "config"
    config.mkdir()
    (config / "bench.yaml").write_text(f"vss:\n  project: bench\n  model: {model}\n  device: cpu\n"
                                       f"  data_roots: [{images}]\n")
    os.environ.update(CONFIG_PATH=str(config), VSS_DATA_DIR=str(root / "data"), BATCH_SIZE="32")
    from vss_core.config.projects import load_projects
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.redis.exemplars import open_store

    project = load_projects().get("bench")
    embedder = Embedder(project.model, device="cpu")
    load_items(collect_folder(images), embedder, open_store(project, embedder.dim))


def query_files(n: int) -> list[tuple[str, bytes, str]]:
    files = []
    for i in range(n):
        buffer = io.BytesIO()
        natural_image(5000 + i, (1024, 768)).save(buffer, "JPEG", quality=90)
        files.append((f"query_{i}.jpg", buffer.getvalue(), "image/jpeg"))
    return files


def one_run(files, top_n: int) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params["project"] = "bench"
    at.run()
    at.switch_page("pages/search.py").run()
    at.slider[0].set_value(top_n)
    at.file_uploader(key="search_uploads").set_value(files)
    start = time.perf_counter()
    at.button[0].click().run()
    total = time.perf_counter() - start
    assert not at.exception, at.exception
    took = float(next(c.value for c in at.caption if c.value.startswith("Search took")).split()[2])
    galleries = [img for img in at.get("image") if len(img.captions) == top_n]
    return {"total s": total, "search s": took, "render s": total - took, "galleries": len(galleries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--top-n", type=int, default=5)
    parser.add_argument("--exemplars", type=int, default=100, help="exemplars per label (3 labels)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vss-gallery-") as tmp:
        setup(Path(tmp), args.exemplars)
        files = query_files(args.queries)
        rows = []
        for i in range(args.repeat):
            row = {"run": "cold thumbnail cache" if i == 0 else f"warm cache #{i}", **one_run(files, args.top_n)}
            rows.append(row)
        from vss_core.redis.server import embedded_server

        embedded_server(Path(tmp) / "data" / "bench").stop()
    worst = max(r["render s"] for r in rows)
    table(rows)
    print(f"render after search, worst of {len(rows)}: {worst:.3f} s (target < 1 s): {verdict(1.0 / worst, 1.0)}")
    save_result("gallery", {"machine": machine(), "queries": args.queries, "top_n": args.top_n,
                            "exemplars": 3 * args.exemplars, "rows": rows, "worst_render_s": worst})


if __name__ == "__main__":
    main()
