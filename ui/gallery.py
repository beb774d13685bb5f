"""Search results: per query image, its thumbnail, suggestions and nearest exemplars."""

from __future__ import annotations

import json

import streamlit as st

from ui.plain import md
from ui.thumbs import thumb_cache

PAGE_SIZE = 40


def _vote_text(kind: str, vote) -> str:
    if vote is None:
        return f"{kind}: –"
    return f"{kind}: **{md(vote.label)}** ({vote.share:.0%})"


def render_query(result, source, cache) -> None:
    with st.container(border=True):
        left, right = st.columns([1, 5], vertical_alignment="top")
        with left:
            thumb = source if isinstance(source, bytes) else cache.for_path(source)
            st.image(thumb, caption=md(result.filename), width=128)
        with right:
            if result.error is not None:
                st.error(f"{md(result.filename)}: {md(result.error)}")
                return
            if not result.neighbors:
                st.warning("No exemplars in the index yet.")
                return
            st.markdown(f"Suggested {_vote_text('majority', result.majority)} · "
                        f"{_vote_text('score-weighted', result.weighted)}")
            st.image([cache.for_path(n.source) for n in result.neighbors],
                     caption=[f"{md(n.label)} · {n.score:.3f}" for n in result.neighbors],
                     width=120)


def render(results, sources, key: str) -> None:
    """The whole result set: downloads, a summary, then a page of query galleries.

    ``sources`` has one entry per query: its server path, or thumbnail bytes of an upload.
    """
    n = len(results.results)
    ok = len(results.ok)
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="center")
    c1.markdown(f"**{ok}** of {n} image{'s' if n != 1 else ''} searched · top {results.top_n}"
                " · scores are cosine similarities (1 = identical)")
    c2.download_button("JSON", json.dumps(results.to_fastapi_json(), indent=2),
                       file_name="vss_results.json", mime="application/json",
                       help="fastapi-vss's shape: one list per image, scores as cosine distances",
                       on_click="ignore", icon=":material/download:", key=f"json_{key}")
    c3.download_button("CSV", results.to_csv(), file_name="vss_results.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:", key=f"csv_{key}")
    pairs = list(zip(results.results, sources))
    if n > PAGE_SIZE:
        pages = (n + PAGE_SIZE - 1) // PAGE_SIZE
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"page_{key}")
        pairs = pairs[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    cache = thumb_cache()
    for result, source in pairs:
        render_query(result, source, cache)
