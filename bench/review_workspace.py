"""The Review page's tile workspace in headless Chromium: page open -> first tiles, a scripted annotator
that knows the truth (decisions per minute, every image decided once and right), and key -> screen latency.

    .venv/bin/python bench/review_workspace.py [--n 1000] [--repeat 3]
    .venv/bin/python bench/review_workspace.py --render-only --n 10000

Set-up (all in a tmp dir): a config folder with one project on an embedded Redis and the tests' tiny ViT
(random weights, HF_HUB_OFFLINE=1); the pool is filled WITHOUT embedding (synthetic vectors and neighbours,
as bench/review.py's fill_pool), N items whose true label the bench knows, 80 % of the suggestions right.
Sources are a few hundred small real JPEGs under the project's data root, reused.  Then `streamlit run
app.py` and Debian's /usr/bin/chromium (Playwright, executable_path; never a downloaded browser) at
1280 x 800 on /review?project=...&annotator=bench.
 - render: goto -> 48 tiles in `.vss-ws` with every image decoded (first run: new server, cold thumbnails),
   three ways against the Exemplars page, and Streamlit's floor (bench/streamlit_floor.py: a one-line page).
 - annotate: per page, read the tiles; for each wrong suggestion move the cursor there (arrow keys) and press
   the legend digit of the true label; then A, wait for data-sync="idle", N; until nothing is left.
   Afterwards the pool in Redis: every label equals the truth, one audit entry per image.
 - latency: synthetic keydown -> first DOM mutation / next frame inside the page; then 200 real key presses
   50 ms apart (arrows and digits) on 60 fresh items, none lost (final labels in Redis = a model of the keys).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import REPO, save_result, table, verdict, write_jpegs  # noqa: E402
from bench.streamlit_floor import floor  # noqa: E402
from tests.browser_kit import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402
from tests.workspace_kit import LATENCY_JS, REAL_KEYS_JS  # noqa: E402

PROJECT = "wsbench"
LABELS = ["copepod", "diatom", "jelly", "larvacean", "marine snow"]
PAGE = 48
BURST_ITEMS = 60
WS = ".vss-ws"

# ---------------------------------------------------------------- set-up


def save_tiny_vit(folder: Path) -> Path:
    """The tests' tiny_vit_dir: a random 2-layer ViT (hidden 32, 32 px, patch 8) and the ViT processor."""
    import torch
    from transformers import ViTConfig, ViTModel

    from tests.fixtures_models import _tiny_kwargs, vit_processor

    torch.manual_seed(0)
    ViTModel(ViTConfig(**_tiny_kwargs(32, 8))).save_pretrained(folder)
    vit_processor(32).save_pretrained(folder)
    return folder


def setup(root: Path, n_sources: int):
    model = save_tiny_vit(root / "model")
    images = root / "images"
    sources = write_jpegs(images / "pool", n_sources, size=(200, 150), quality=85, unique=n_sources)
    config = root / "config"
    config.mkdir()
    (config / f"{PROJECT}.yaml").write_text(f"vss:\n  project: {PROJECT}\n  model: {model}\n  device: cpu\n"
                                            f"  threshold: 0.8\n  data_roots: [{images}]\n")
    env = {"CONFIG_PATH": str(config), "VSS_DATA_DIR": str(root / "data"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    os.environ.update(env)
    from vss_core.config.projects import load_projects
    from vss_core.labeling.decisions import open_decisions

    project = load_projects().get(PROJECT)
    return open_decisions(project, 32, str(model)), sources, env


def fill_pool(d, n: int, sources: list[Path], prefix: str = "ws", seed: int = 0,
              right: float = 0.8) -> dict[str, str]:
    """``n`` pool items (synthetic vectors and neighbours); returns {id: true label}.  A share ``right``
    of the suggestions is the truth, the rest another label."""
    import numpy as np

    from vss_core.labeling.suggestions import suggestion_fields
    from vss_core.redis.pool import Prediction
    from vss_core.redis.search_index import Neighbor

    rng = np.random.default_rng(seed)
    truth, batch = {}, []
    for i in range(n):
        id = f"{prefix}{i:06d}"
        true = LABELS[int(rng.integers(len(LABELS)))]
        shown = true if rng.random() < right else LABELS[(LABELS.index(true) + 1 + int(rng.integers(4))) % 5]
        truth[id] = true
        neighbors = tuple(Neighbor("", shown, f"x{j}", float(rng.uniform(0.85, 1.0)),
                                   str(sources[(i + j) % len(sources)])) for j in range(5))
        vector = rng.normal(size=d.pool.layout().dim).astype(np.float32)
        batch.append(Prediction(id, str(sources[i % len(sources)]), f"{id}.jpg", vector,
                                suggestion_fields(neighbors, 0.8), "bench"))
        if len(batch) == 1000:
            d.pool.add(batch, 0.8)
            batch = []
    if batch:
        d.pool.add(batch, 0.8)
    return truth


# ---------------------------------------------------------------- page helpers

FIND_WS = """() => {
  const find = (root) => {
    const hit = root.querySelector('.vss-ws');
    if (hit) return hit;
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const x = find(el.shadowRoot); if (x) return x; }
    return null;
  };
  if (!window.__ws || !window.__ws.isConnected) window.__ws = find(document);
  return window.__ws;
}"""

READY_JS = """(n) => {
  const ws = (%s)();
  if (!ws) return false;
  const tiles = ws.querySelectorAll('.tile');
  if (tiles.length < n) return false;
  return [...ws.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)
    ? performance.now() : false;
}""" % FIND_WS

READ_PAGE_JS = """ws => {
  const W = innerWidth, H = innerHeight;
  const tiles = [...ws.querySelectorAll('.tile[data-id]')].map(t => {
    const r = t.getBoundingClientRect();
    return {id: t.dataset.id, idx: Number(t.dataset.idx), sugg: t.querySelector('.sugg').textContent,
            decided: t.classList.contains('is-decided'),
            onscreen: r.top >= 0 && r.left >= 0 && r.bottom <= H && r.right <= W && r.width > 0};
  });
  const legend = [...ws.querySelectorAll('.ws-legend li span')].map(s => s.textContent);
  const cols = getComputedStyle(ws.querySelector('.ws-grid')).gridTemplateColumns.split(' ').length;
  const cur = ws.querySelector('.tile.is-cursor');
  return {tiles, legend, cols, cursor: cur ? Number(cur.dataset.idx) : 0,
          title: ws.querySelector('.ws-title').textContent, sync: ws.dataset.sync};
}"""

def browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def new_page(b):
    context = b.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    return context, pg


def open_review(pg, url: str) -> tuple[float, float]:
    """goto the Review page; (wall s until PAGE tiles with decoded images, the same in page ms since navigation)."""
    start = time.perf_counter()
    pg.goto(f"{url}/review?project={PROJECT}&annotator=bench", wait_until="commit")
    handle = pg.wait_for_function(READY_JS, arg=PAGE, polling="raf", timeout=120_000)
    return time.perf_counter() - start, float(handle.json_value())


def exemplars_shown(pg) -> None:
    pg.get_by_role("heading", name="Exemplars", exact=True).wait_for(timeout=120_000)


def open_baseline(pg, url: str) -> float:
    """The baseline in the same run: goto the Exemplars page until its title shows (a Streamlit page of this
    app with no workspace), wall seconds."""
    start = time.perf_counter()
    pg.goto(f"{url}/exemplars?project={PROJECT}&annotator=bench", wait_until="commit")
    exemplars_shown(pg)
    return time.perf_counter() - start


def click_page(pg, label: str, shown) -> float:
    """Open a page from the sidebar's menu (no reload: the way an annotator moves between pages); wall s until
    ``shown(pg)`` returns."""
    pg.wait_for_timeout(500)
    opener = pg.locator('[data-testid="stExpandSidebarButton"]')
    if opener.is_visible():  # the Review page starts with the sidebar folded
        opener.click()
        pg.wait_for_timeout(500)
    start = time.perf_counter()
    pg.locator(f'[data-testid="stSidebar"] a:has-text("{label}")').first.click()
    shown(pg)
    return time.perf_counter() - start


def tiles_shown(pg) -> None:
    pg.wait_for_function(READY_JS, arg=PAGE, polling="raf", timeout=120_000)


def collapse_sidebar(pg) -> bool:
    """Collapse Streamlit's sidebar (its button shows on hover); True when it is."""
    if pg.locator('[data-testid="stExpandSidebarButton"]').is_visible():
        return True  # the Review page folds it
    sidebar = pg.locator('[data-testid="stSidebar"]')
    if sidebar.count():
        sidebar.hover()
    for sel in ('[data-testid="stSidebarCollapseButton"] button', '[data-testid="stSidebarHeader"] button'):
        button = pg.locator(sel)
        if button.count():
            try:
                button.first.click(timeout=3000)
                pg.wait_for_timeout(500)
                take_keys(pg)
                return True
            except Exception:  # noqa: BLE001 (a Streamlit version without it: keep the sidebar)
                pass
    return False


def take_keys(pg) -> None:
    """Give the workspace the keyboard again (the sidebar's button took it): a click on its side panel."""
    from playwright.sync_api import expect

    pg.locator(f"{WS} .ws-counter").click()
    expect(pg.locator(f"{WS} .ws-keys-state")).to_have_text("● keys active")


def wait_idle(pg) -> None:
    from playwright.sync_api import expect

    expect(pg.locator(WS)).to_have_attribute("data-sync", "idle", timeout=60_000)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


@contextlib.contextmanager
def served_pool(n: int, n_sources: int):
    """The set-up above in a tmp dir with a pool of ``n`` items, and ``streamlit run app.py`` on it; yields
    (decisions, sources, truth, url, seconds the pool took to fill).  The embedded Redis stops afterwards."""
    with tempfile.TemporaryDirectory(prefix="vss-ws-bench-") as tmp:
        root = Path(tmp)
        d, sources, env = setup(root, n_sources)
        try:
            start = time.perf_counter()
            truth = fill_pool(d, n, sources)
            fill_s = time.perf_counter() - start
            with streamlit_server("app.py", {**os.environ, **env}, root / "streamlit.log", 90) as (url, _):
                yield d, sources, truth, url, fill_s
        finally:
            from vss_core.redis.server import embedded_server

            srv = embedded_server(root / "data" / PROJECT)
            if srv.running:
                srv.stop()


# ---------------------------------------------------------------- measurements


def render(url: str, repeat: int) -> list[dict]:
    """Page open -> 48 tiles, three ways, each against the Exemplars page opened the same way: a first visit
    (a new browser context: Streamlit's own scripts not cached), a reload of the page (browser cache warm)
    and a click on the page's name in the sidebar (no reload).  The first open after the server starts is
    reported apart (cold server: the project, the model and the thumbnails are loaded then)."""
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        b = browser(p)
        context, pg = new_page(b)
        wall, _ = open_review(pg, url)
        rows.append({"how": "cold server, first visit", "open->48 tiles s": wall, "tiles": count_tiles(pg),
                     "Exemplars page s": open_baseline(pg, url)})
        context.close()
        for i in range(repeat):
            context, pg = new_page(b)
            first, _ = open_review(pg, url)
            tiles = count_tiles(pg)
            other, other_pg = new_page(b)
            rows.append({"how": "first visit", "open->48 tiles s": first, "tiles": tiles,
                         "Exemplars page s": open_baseline(other_pg, url)})
            other.close()
            open_baseline(pg, url)  # both pages' scripts are in the browser cache from here on
            reload, _ = open_review(pg, url)
            rows.append({"how": "reload", "open->48 tiles s": reload, "tiles": count_tiles(pg),
                         "Exemplars page s": open_baseline(pg, url)})
            side = click_page(pg, "Review", tiles_shown)
            rows.append({"how": "from the sidebar", "open->48 tiles s": side, "tiles": count_tiles(pg),
                         "Exemplars page s": click_page(pg, "Exemplars", exemplars_shown)})
            context.close()
        b.close()
    for row in rows:
        row["ratio"] = row["open->48 tiles s"] / row["Exemplars page s"]
    return rows


def count_tiles(pg) -> int:
    return pg.locator(f"{WS} .tile").count()


def press_to(pg, cursor: int, target: int, cols: int) -> int:
    """Arrow keys from ``cursor`` to ``target``; the number of keys."""
    keys = []
    dr = target // cols - cursor // cols
    keys += ["ArrowDown" if dr > 0 else "ArrowUp"] * abs(dr)
    dc = target - (cursor + dr * cols)
    keys += ["ArrowRight" if dc > 0 else "ArrowLeft"] * abs(dc)
    for k in keys:
        pg.keyboard.press(k)
    return len(keys)


def annotate(pg, truth: dict[str, str], shots: Path) -> dict:
    """The scripted annotator: wrong suggestions get the true label's digit, A accepts the rest, N pages on."""
    decisions = keys = pages = corrected = offscreen = 0
    seen: set[str] = set()
    ws = pg.locator(WS)
    start = time.perf_counter()
    previous = None
    while True:
        state = ws.evaluate(READ_PAGE_JS)
        tiles = [t for t in state["tiles"] if not t["decided"]]
        if not state["tiles"] or "nothing left" in state["title"]:
            break
        if pages == 0:
            pg.screenshot(path=str(shots / "annotate_first_page.png"))
        pages += 1
        offscreen += sum(1 for t in state["tiles"] if not t["onscreen"])
        cursor, cols = state["cursor"], state["cols"]
        for t in sorted(tiles, key=lambda t: t["idx"]):
            true = truth[t["id"]]
            if t["sugg"] == true:
                continue
            keys += press_to(pg, cursor, t["idx"], cols)
            pg.keyboard.press(str(state["legend"].index(true) + 1))
            keys += 1
            corrected += 1
            cursor = min(t["idx"] + 1, len(state["tiles"]) - 1)
        pg.keyboard.press("a")
        keys += 1
        decisions += len(tiles)
        seen.update(t["id"] for t in tiles)
        wait_idle(pg)
        previous = [t["id"] for t in state["tiles"]]
        pg.keyboard.press("n")
        keys += 1
        pg.wait_for_function(
            "([find, before]) => { const ws = (eval(find))(); if (!ws) return false;"
            " const ids = [...ws.querySelectorAll('.tile[data-id]')].map(t => t.dataset.id).join(',');"
            " return ids !== before || ws.querySelector('.ws-title').textContent.includes('nothing left'); }",
            arg=[FIND_WS, ",".join(previous)], polling="raf", timeout=120_000)
    took = time.perf_counter() - start
    pg.screenshot(path=str(shots / "annotate_done.png"))
    return {"pages": pages, "decisions": decisions, "corrected by digit": corrected, "keys": keys, "s": took,
            "decisions/min": decisions / took * 60, "tiles off screen": offscreen, "ids seen": len(seen)}


def check_pool(d, truth: dict[str, str]) -> dict:
    from vss_core.redis.schema import PREDICTED

    ids = list(truth)
    items = dict(zip(ids, d.pool.get(ids)))
    undecided = sum(1 for i in items.values() if i is None or i.status == PREDICTED)
    wrong = sum(1 for id, i in items.items() if i is not None and i.status != PREDICTED and i.label != truth[id])
    per_id = collections.Counter(e["id"] for e in d.audit(10 * len(ids) + 10_000)
                                 if e.get("target", "pool") == "pool" and e["id"] in truth)
    return {"undecided left": undecided, "wrong labels": wrong,
            "decided once": sum(1 for id in ids if per_id[id] == 1),
            "decided twice+": sum(1 for id in ids if per_id[id] > 1), "never in audit": sum(1 for id in ids if not per_id[id])}


def model_keys(keys: list[str], cols: int, ids: list[str], legend: list[str], cursor: int) -> dict[str, str]:
    """The final label of each tile the keys decide (digits label the cursor's tile and move it on)."""
    final = {}
    moves = {"ArrowLeft": -1, "ArrowRight": 1, "ArrowDown": cols, "ArrowUp": -cols}
    for key in keys:
        if key in moves:
            if 0 <= cursor + moves[key] < len(ids):
                cursor += moves[key]
        else:
            final[ids[cursor]] = legend[int(key) - 1]
            cursor = min(cursor + 1, len(ids) - 1)
    return final


def latency(pg, url: str, d, sources) -> dict:
    """In-page key latency (synthetic keydown), then 200 real keys 50 ms apart on fresh items, none lost."""
    burst_truth = fill_pool(d, BURST_ITEMS, sources, prefix="burst", seed=99)
    open_review(pg, url)
    collapse_sidebar(pg)
    ws = pg.locator(WS)
    moves = ws.evaluate(LATENCY_JS, ["ArrowRight", "ArrowLeft"] * 20)
    state = ws.evaluate(READ_PAGE_JS)
    ids = [t["id"] for t in state["tiles"]]
    rng = random.Random(7)
    digits = [str(i + 1) for i in range(len(state["legend"]))]
    keys = rng.choices(["ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp", *digits],
                       weights=[20, 15, 8, 7] + [10] * len(digits), k=200)
    final = model_keys(keys, state["cols"], ids, state["legend"], state["cursor"])
    ws.evaluate(REAL_KEYS_JS)
    for key in keys:
        pg.keyboard.press(key)
        pg.wait_for_timeout(50)
    wait_idle(pg)
    real = pg.evaluate("() => window.__lat")
    time.sleep(1.0)
    stored = {i.id: (i.status, i.label) for i in d.pool.get(list(burst_truth)) if i is not None}
    lost = sum(1 for id, label in final.items() if stored.get(id, ("predicted", ""))[0] == "predicted"
               or stored[id][1] != label)
    lost += sum(1 for id, (status, _) in stored.items() if status != "predicted" and id not in final)
    mutation = [m["mutation"] for m in moves if m["mutation"] is not None]
    frame = [m["frame"] for m in moves]
    return {"synthetic keys": len(moves), "key->mutation median ms": statistics.median(mutation),
            "key->mutation p95 ms": percentile(mutation, 0.95), "key->frame median ms": statistics.median(frame),
            "key->frame p95 ms": percentile(frame, 0.95),
            "real keys": len(keys), "real keys with a change": len(real),
            "real key->change median ms": statistics.median([r["change"] for r in real]) if real else None,
            "real key->frame p95 ms": percentile([r["frame"] for r in real], 0.95) if real else None,
            "decided tiles (model)": len(final), "lost": lost}


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="pool items")
    parser.add_argument("--sources", type=int, default=300, help="distinct JPEG files, reused")
    parser.add_argument("--repeat", type=int, default=3, help="page opens for the render timing")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    out: dict = {"n": args.n, "page size": PAGE, "note": "2-core machine shared with other jobs"}
    shots = REPO / "bench" / "results" / "tmp"
    shots.mkdir(parents=True, exist_ok=True)
    with served_pool(args.n, args.sources) as (d, sources, truth, url, out["fill s"]):
        out["render"] = render(url, args.repeat)
        if not args.render_only:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                b = browser(p)
                context, pg = new_page(b)
                open_review(pg, url)
                out["sidebar collapsed"] = collapse_sidebar(pg)
                out["annotate"] = annotate(pg, truth, shots)
                out["pool check"] = check_pool(d, truth)
                context.close()
                context, pg = new_page(b)
                out["latency"] = latency(pg, url, d, sources)
                pg.screenshot(path=str(shots / "after_burst.png"))
                context.close()
                b.close()
    out["floor"] = floor(args.repeat)  # its own server, after the app's has stopped
    report(out, args)


def report(out: dict, args) -> None:
    print(f"\npool {args.n:,} items, page {PAGE}; 2-core machine shared with other jobs (numbers are noisy)\n")
    table(out["render"])
    for how, runs in out["floor"].items():
        print(f"Streamlit's floor (bench/streamlit_floor.py, a one-line page), {how}: median "
              f"{statistics.median(runs):.2f} s")
    for how in ("first visit", "reload", "from the sidebar"):
        runs = [r["open->48 tiles s"] for r in out["render"] if r["how"] == how]
        base = [r["Exemplars page s"] for r in out["render"] if r["how"] == how]
        if runs:
            print(f"open -> {PAGE} tiles, {how}: median {statistics.median(runs):.2f} s, worst {max(runs):.2f} s "
                  f"(Exemplars page {statistics.median(base):.2f} s; target <= 1 s): {verdict(1.0 / max(runs), 1.0)}")
    if "annotate" in out:
        print()
        table([out["annotate"]])
        rate = out["annotate"]["decisions/min"]
        print(f"scripted annotator: {rate:.0f} decisions/min (target >= 600): {verdict(rate / 600, 1.0)}")
        print()
        table([out["pool check"]])
        print()
        lat = out["latency"]
        table([{k: v for k, v in lat.items() if "real" not in k and k not in ("lost", "decided tiles (model)")}])
        table([{k: v for k, v in lat.items() if "real" in k or k in ("lost", "decided tiles (model)")}])
    save_result("review_workspace" + ("_render" if args.render_only else ""), out)


if __name__ == "__main__":
    main()
