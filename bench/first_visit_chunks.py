"""Where a first visit of the Review page spends its time: every script chunk the browser fetches after the
page's own bundle, with how long it queued in the browser before it was sent and how long the server took
to its first byte (Playwright's `request.timing`), on the set-up of bench/review_workspace.py.

    .venv/bin/python bench/first_visit_chunks.py [--n 10000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.review_workspace import browser, new_page, open_baseline, open_review, served_pool  # noqa: E402

LATE_MS = 600  # chunks asked for this long after the first one: those of the widgets, not of the bundle


def chunk_rows(requests) -> list[dict]:
    rows = []
    for r in requests:
        if "/static/js/" not in r.url:
            continue
        t = r.timing
        rows.append({"name": r.url.rsplit("/", 1)[-1], "start": t["startTime"], "queued": t["requestStart"],
                     "ttfb": t["responseStart"] - t["requestStart"], "end": t["startTime"] + t["responseEnd"]})
    first = min(row["start"] for row in rows)
    return [{**row, "start": row["start"] - first, "end": row["end"] - first} for row in rows]


def visit(b, url: str) -> dict:
    context, pg = new_page(b)
    requests = []
    pg.on("requestfinished", lambda r: requests.append(r))
    wall, _ = open_review(pg, url)
    pg.wait_for_timeout(500)
    context.close()
    rows = chunk_rows(requests)
    late = [row for row in rows if row["start"] > LATE_MS]
    return {"late": [r["name"] for r in late], "open->48 tiles s": wall, "chunks": len(rows), "widget chunks": len(late),
            "queued median ms": statistics.median(r["queued"] for r in late),
            "queued max ms": max(r["queued"] for r in late),
            "ttfb max ms": max(r["ttfb"] for r in late),
            "last chunk ms": max(r["end"] for r in late)}


def idle_fetch(url: str, names: list[str]) -> float:
    """Seconds for the same chunks from the same server when it runs no script, 6 at a time (as Chromium)."""
    def get(name: str) -> None:
        with urllib.request.urlopen(f"{url}/static/js/{name}", timeout=10) as r:
            r.read()

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(get, names))
    return time.perf_counter() - start


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with served_pool(args.n, 300) as (_, _, _, url, _), sync_playwright() as p:
        b = browser(p)
        context, pg = new_page(b)
        open_review(pg, url)  # the server's first open: model, Redis, thumbnails
        open_baseline(pg, url)
        context.close()
        for _ in range(args.repeat):
            row = visit(b, url)
            late = row.pop("late")
            print(", ".join(f"{k} {v:.2f}" if k.endswith(" s") else f"{k} {v:.0f}" for k, v in row.items()))
        print(f"the same {len(late)} widget chunks from the idle server, 6 at a time: "
              f"{idle_fetch(url, late) * 1000:.0f} ms")
        b.close()

if __name__ == "__main__":
    main()
