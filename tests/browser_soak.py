"""Several browser sessions searching at once against one Streamlit server (one shared embedder): the driver
used by tests/test_browser.py: no errors, no mixing, flat memory; run it with -s to see the p50/p95 latency."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from tests.fixtures_models import LABELS, label_image


def query_sets(folder: Path, sessions: int, per_session: int) -> list[list[Path]]:
    """``per_session`` distinct JPEGs for each session, named ``s<k>_q<i>.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    sets = []
    for k in range(sessions):
        files = []
        for i in range(per_session):
            path = folder / f"s{k}_q{i:02d}.jpg"
            label_image(sorted(LABELS)[i % 3], seed=30_000 + 100 * k + i).save(path, quality=88)
            files.append(path)
        sets.append(files)
    return sets


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_fresh(page, took, before: str | None) -> None:
    """Until this click's own result is on the page (each result names a new JSON file) and the run is over:
    a stale result from the previous click must not count as a search."""
    from playwright.sync_api import expect

    expect(took).to_have_count(1, timeout=120_000)
    if before is not None:
        expect(took.first).not_to_have_text(before, timeout=120_000)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=120_000)


def _session(chromium: str, url: str, files: list[Path], deadline: float, out: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    prefix = files[0].name.split("_")[0] + "_"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(120_000)
        try:
            page.goto(url)
            while not out["latencies"] or time.monotonic() < deadline:  # at least one search
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                    [str(f) for f in files])
                expect(page.get_by_text(files[-1].name).first).to_be_visible(timeout=60_000)
                took = page.get_by_text("Search took", exact=False)
                before = took.first.inner_text() if took.count() else None
                start = time.monotonic()
                page.get_by_role("button", name="Search").click()
                _wait_fresh(page, took, before)
                expect(page.get_by_text("Suggested majority", exact=False)).to_have_count(len(files), timeout=120_000)
                out["latencies"].append(time.monotonic() - start)
                caption = page.locator('[data-testid="stImage"] [data-testid="stImageCaption"]')
                expect(caption.filter(has_text=files[0].name).first).to_be_visible(timeout=60_000)
                captions = caption.all_inner_texts()
                queries = {c for c in captions if c.endswith(".jpg") and c.startswith("s") and "_q" in c}
                foreign = sorted(q for q in queries if not q.startswith(prefix))
                if foreign:
                    out["mixed"].append(foreign[:5])
                out["own_seen"] += bool(queries) and not foreign
        except Exception as exc:  # reported to the caller, which fails the test
            out["errors"].append(f"{type(exc).__name__}: {exc}"[:500])
        finally:
            browser.close()


def soak(chromium: str, url: str, sets: list[list[Path]], seconds: float, server_pid: int) -> dict:
    """Every session searches its own images (at least once) until ``seconds`` pass; latencies, errors,
    mixing, and the server's RSS before and after."""
    results = [{"latencies": [], "errors": [], "mixed": [], "own_seen": 0} for _ in sets]
    deadline = time.monotonic() + seconds
    rss_start = rss_mb(server_pid)
    threads = [threading.Thread(target=_session, args=(chromium, url, files, deadline, out), daemon=True)
               for files, out in zip(sets, results)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    latencies = sorted(x for r in results for x in r["latencies"])
    return {"sessions": len(sets), "searches": len(latencies),
            "per_session": [len(r["latencies"]) for r in results],
            "own_seen": [r["own_seen"] for r in results],
            "p50_s": statistics.median(latencies) if latencies else None,
            "p95_s": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
            "errors": [e for r in results for e in r["errors"]], "mixed": [m for r in results for m in r["mixed"]],
            "rss_start_mb": rss_start, "rss_end_mb": rss_mb(server_pid),
            "alive": [t.is_alive() for t in threads]}
