"""Streamlit's own floor for opening a page: a one-line app (a title, nothing else) under `streamlit run`,
opened in a new Chromium context (nothing cached) and reloaded, wall seconds until its title shows.  What
no page of the app can beat in the same browser on the same machine; used by bench/review_workspace.py.

    .venv/bin/python bench/streamlit_floor.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser_kit import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

APP = 'import streamlit as st\n\nst.title("Floor")\n'


def floor(repeat: int) -> dict[str, list[float]]:
    """{"first visit": [s, ...], "reload": [s, ...]} for the one-line app."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"first visit": [], "reload": []}
    with tempfile.TemporaryDirectory(prefix="vss-floor-") as tmp:
        app = Path(tmp) / "floor.py"
        app.write_text(APP, encoding="utf-8")
        with streamlit_server(str(app), dict(os.environ), Path(tmp) / "streamlit.log", 60) as (url, _), \
                sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(repeat + 1):  # the first one warms the server; not counted
                context = b.new_context(viewport={"width": 1280, "height": 800})
                pg = context.new_page()
                first = _open(pg, url)
                reload = _open(pg, url)
                context.close()
                out["first visit"].append(first)
                out["reload"].append(reload)
            b.close()
    return {k: v[1:] for k, v in out.items()}


def _open(pg, url: str) -> float:
    start = time.perf_counter()
    pg.goto(url, wait_until="commit")
    pg.get_by_role("heading", name="Floor", exact=True).wait_for(timeout=60_000)
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    for how, runs in floor(parser.parse_args().repeat).items():
        print(f"one-line Streamlit page, {how}: median {statistics.median(runs):.2f} s, "
              f"runs {', '.join(f'{s:.2f}' for s in runs)}")
