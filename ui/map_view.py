"""The embedding map: exemplars and pool projected to 2-D, coloured by label or score; a selection opens
the chosen pool images for review."""

from __future__ import annotations

import altair as alt
import numpy as np
import streamlit as st

from ui import resources
from vss_core.mining import runs as mining_jobs
from vss_core.mining import scores as mining
from vss_core.redis.pool import PoolFilter
from vss_core.redis.schema import VECTOR

MAX_POINTS = 20_000


def build(d, method: str, seed: int = 0) -> dict:
    """Points of the map (a sample of at most MAX_POINTS, half exemplars, half pool, when larger)."""
    rng = np.random.default_rng(seed)
    all_keys = sorted(key for rows in d.exemplars.scan() for key, _ in rows)
    pool_ids = sorted(d.pool.ids(PoolFilter()))
    n_ex, n_pool = len(all_keys), len(pool_ids)
    keep_ex, keep_pool = _sample(rng, n_ex, n_pool)
    ex_keys, ex = _exemplar_vectors(d, [all_keys[i] for i in keep_ex])
    ex_labels = [d.exemplars.label_of(key) for key in ex_keys]
    ids = [pool_ids[i] for i in keep_pool]
    items = d.pool.get(ids)
    vectors = np.vstack([ex, d.pool.vectors(ids)]) if len(ids) else ex
    xy = mining.project_2d(vectors, method, seed)
    novelty = mining_jobs.score_map(d.stores, mining_jobs.NOVELTY)
    anomaly = mining_jobs.score_map(d.stores, mining_jobs.ANOMALY)
    rows = [{"x": float(x), "y": float(y), "kind": "exemplar", "label": label, "id": key,
             "novelty": None, "anomaly": None} for (x, y), key, label in zip(xy[:len(ex_keys)], ex_keys, ex_labels)]
    rows += [{"x": float(x), "y": float(y), "kind": "pool", "label": item.label, "id": item.id,
              "novelty": novelty.get(item.id), "anomaly": anomaly.get(item.id)}
             for (x, y), item in zip(xy[len(ex_keys):], items) if item is not None]
    return {"rows": rows, "total": n_ex + n_pool, "shown": len(rows), "method": method}


def _exemplar_vectors(d, keys: list[str]) -> tuple[list[str], np.ndarray]:
    """The vectors of the sampled exemplars only (those deleted meanwhile left out)."""
    dim = d.exemplars.layout().dim or d.pool.layout().dim or 0
    found = [(key, f[VECTOR]) for key, f in zip(keys, d.exemplars.fetch(keys, (VECTOR,)))
             if f[VECTOR] and len(f[VECTOR]) == dim * 4]
    vectors = [np.frombuffer(raw, np.float32) for _, raw in found]
    return [key for key, _ in found], np.vstack(vectors) if vectors else np.zeros((0, dim), np.float32)


def _sample(rng, n_ex: int, n_pool: int):
    if n_ex + n_pool <= MAX_POINTS:
        return list(range(n_ex)), list(range(n_pool))
    ex_share = min(n_ex, max(MAX_POINTS // 2, MAX_POINTS - n_pool))
    pool_share = min(n_pool, MAX_POINTS - ex_share)
    return (sorted(rng.choice(n_ex, ex_share, replace=False).tolist()),
            sorted(rng.choice(n_pool, pool_share, replace=False).tolist()))




def chart(points: dict, colour: str):
    """The scatter; returns the ids of the selected pool points."""
    selection = alt.selection_interval(name="picked", encodings=["x", "y"])
    color = (alt.Color("label:N", legend=alt.Legend(columns=2, symbolLimit=30)) if colour == "label"
             else alt.Color(f"{colour}:Q", scale=alt.Scale(scheme="viridis")))
    base = alt.Chart(alt.Data(values=points["rows"])).mark_point(filled=True, size=30, opacity=0.7).encode(
        x=alt.X("x:Q", title=None, axis=None), y=alt.Y("y:Q", title=None, axis=None), color=color,
        shape=alt.Shape("kind:N", scale=alt.Scale(domain=["exemplar", "pool"], range=["circle", "triangle"])),
        tooltip=["kind:N", "label:N", "novelty:Q", "anomaly:Q"]).add_params(selection)
    sampled = f"{points['shown']:,} of {points['total']:,} points (random sample)" if points["shown"] < points["total"] \
        else f"all {points['total']:,} points"
    event = st.altair_chart(base.properties(height=520, title=f"{points['method'].upper()} · {sampled}"),
                            width="stretch", on_select="rerun", key="map_chart")
    picked = (event or {}).get("selection", {}).get("picked") or {}
    if not picked or "x" not in picked:
        return []
    (x0, x1), (y0, y1) = picked["x"], picked["y"]
    return [r["id"] for r in points["rows"]
            if r["kind"] == "pool" and x0 <= r["x"] <= x1 and y0 <= r["y"] <= y1]


def cached(key: str | None):
    return resources.results_cache().get(key)


def keep(points: dict) -> str:
    return resources.results_cache().put(points)
