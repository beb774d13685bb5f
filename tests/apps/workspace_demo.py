"""A tiny page around ``ui.workspace.tiles`` for the browser tests (no Redis, no vss_core).

Two pages of 60 fake items (PNG data URIs of distinct colors) go through the workspace; returned batches
are applied to an in-memory store held in ``st.cache_resource``, exactly once per (client, seq), and the
store is written to the JSON file named by ``WORKSPACE_OUT`` after each batch.  ``?run=NAME`` picks a
separate store (one per test); ``?locked=ID`` refuses decisions on that item (a conflict).  N / P turn
the page (``page_request``); the focus view gets a 512 px image, six fake neighbours (labels taken from
the legend by the item's number, see ``neighbors``) and the legend plus ``EXTRA_LABELS`` as its labels.
"""

from __future__ import annotations

import base64
import colorsys
import io
import json
import os
import sys
import threading
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `ui`

from ui import workspace  # noqa: E402

N_ITEMS = 60  # per page
N_PAGES = 2
LEGEND = ["copepod", "diatom", "jelly", "larvacean", "marine snow"]
EXTRA_LABELS = ["ciliate", "fish egg", "radiolarian"]


def picture(i: int, px: int) -> str:
    """A PNG data URI: item i's color, its number, a grey ring (something to zoom into)."""
    r, g, b = colorsys.hsv_to_rgb((i % N_ITEMS) / N_ITEMS, 0.55 + 0.4 * (i % 3) / 2, 0.95 - 0.25 * (i % 2))
    img = Image.new("RGB", (px, px), (int(r * 255), int(g * 255), int(b * 255)))
    draw = ImageDraw.Draw(img)
    draw.text((px // 12, px // 12), f"{i:02d}", fill=(0, 0, 0))
    draw.ellipse((px // 4, px // 4, 3 * px // 4, 3 * px // 4), outline=(90, 90, 90), width=max(1, px // 64))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@st.cache_resource
def fake_items() -> list[dict]:
    items = []
    for i in range(N_ITEMS * N_PAGES):
        score = round(0.35 + 0.6 * ((i * 37) % N_ITEMS) / N_ITEMS, 4)
        items.append({"id": f"item-{i:03d}", "version": 1, "src": picture(i, 128),
                      "suggestion": LEGEND[i % len(LEGEND)], "score": score, "uncertain": score < 0.5})
    return items


def neighbors(i: int) -> list[dict]:
    """Six fake neighbours of item i, nearest first: labels L(i+1), L(i+1), L(i+3), L(i+2), L(i+3), L(i+4)
    of the legend L (so key 1 in the focus view is L(i+1), never item i's own suggestion)."""
    steps = [1, 1, 3, 2, 3, 4]
    return [{"label": LEGEND[(i + s) % len(LEGEND)], "score": round(0.95 - 0.07 * k, 3),
             "src": fake_items()[(i + 7 * (k + 1)) % len(fake_items())]["src"]} for k, s in enumerate(steps)]


@st.cache_data(max_entries=32)
def focus_data(i: int) -> dict:
    return {**fake_items()[i], "src": picture(i, 512), "name": f"sample_{i:03d}.png", "neighbors": neighbors(i),
            "labels": LEGEND + EXTRA_LABELS}


@st.cache_resource
def store() -> dict:
    return {"lock": threading.Lock(), "runs": {}}


def apply(run: str, batches: list[dict], locked: str) -> dict[str, str]:
    """Apply each new batch once; return the conflicts {id: reason} of the refused decisions."""
    s = store()
    conflicts: dict[str, str] = {}
    with s["lock"]:
        data = s["runs"].setdefault(run, {"decisions": {}, "applied": [], "log": [], "conflicts": {}})
        for batch in batches:
            tag = f"{batch['client']}:{batch['seq']}"
            if tag in data["applied"]:
                continue
            data["applied"].append(tag)
            for k, d in enumerate(batch["decisions"]):
                if d["id"] == locked:
                    data["conflicts"][d["id"]] = "locked by another reviewer"
                    continue
                data["log"].append({"batch": tag, "n": k, **d})
                if d["status"] == workspace.UNDECIDED:
                    data["decisions"].pop(d["id"], None)
                else:
                    data["decisions"][d["id"]] = {"status": d["status"], "label": d["label"], "how": d["how"]}
        conflicts = dict(data["conflicts"])
        out = os.environ.get("WORKSPACE_OUT")
        if out:
            tmp = Path(out + ".tmp")
            tmp.write_text(json.dumps({k: {key: v[key] for key in ("decisions", "applied", "log", "conflicts")}
                                       for k, v in s["runs"].items()}))
            tmp.replace(out)
    return conflicts


st.set_page_config(page_title="Workspace demo", layout="wide")
workspace.compact_page()
run = st.query_params.get("run", "default")
locked = st.query_params.get("locked", "")
conflicts = apply(run, workspace.take_batches("ws") or [], locked)  # the decisions first, then the page
asked = workspace.page_request("ws")
if asked:
    turned = st.session_state.get("page", 0) + (1 if asked == "next" else -1)
    st.session_state["page"] = min(N_PAGES - 1, max(0, turned))
    st.session_state.pop("focus", None)
page = st.session_state.get("page", 0)
on_page = fake_items()[page * N_ITEMS:(page + 1) * N_ITEMS]
if workspace.focus_closed("ws"):
    st.session_state.pop("focus", None)
wanted = workspace.focus_request("ws")
if wanted in {it["id"] for it in on_page}:
    st.session_state["focus"] = wanted
focus = focus_data(int(st.session_state["focus"].split("-")[1])) if "focus" in st.session_state else None
decided = store()["runs"].get(run, {}).get("decisions", {})
items = [{**it, "status": decided.get(it["id"], {}).get("status", workspace.UNDECIDED),
          "label": decided.get(it["id"], {}).get("label")} for it in on_page]
late = workspace.tiles(items, LEGEND, key="ws", page_label=f"Demo page {page + 1} of {N_PAGES} ({run})",
                       conflicts=conflicts, focus=focus)
if late:
    apply(run, late, locked)
st.caption(f"{len(decided)} decisions stored")
st.caption(f"focus data sent for {st.session_state.get('focus') or 'none'}")
