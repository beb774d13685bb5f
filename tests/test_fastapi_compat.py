"""fastapi-vss's result shape: per-image lists, cosine distances, result files where it writes them."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import pytest

from tests.peers import fastapi_vss_predictor
from vss_core.fastapi_vss.results import fastapi_result, write_result
from vss_core.redis.exemplars import Neighbor


def nb(label: str, id_: str, similarity: float) -> Neighbor:
    return Neighbor(key=f"doc:{label}:{id_}", label=label, id=id_, score=similarity, source="")


def aipipeline_vote(result: dict, threshold: float) -> list[str | None]:
    """How fastapi-vss's pipeline clients read a result: per image, a majority vote over the
    predictions whose score (a distance: lower is better) is under the threshold."""
    labels = []
    for predictions, scores in zip(result["predictions"], result["scores"]):
        kept = [p for p, s in zip(predictions, scores) if s < threshold]
        labels.append(Counter(kept).most_common(1)[0][0] if kept else None)
    return labels


def test_payload_is_per_image_lists_of_rounded_distances():
    payload = fastapi_result(
        ["a.png", "b.png"],
        [[nb("Otter", "12", 0.99991), nb("Seal", "7", 0.8)], [nb("Seal", "9", 0.25)]],
        {"c.txt": "not an image"})
    assert payload == {
        "filenames": ["a.png", "b.png"],
        "predictions": [["Otter", "Seal"], ["Seal"]],
        "scores": [[0.0001, 0.2], [0.75]],
        "ids": [["12", "7"], ["9"]],
        "errors": {"c.txt": "not an image"},
    }
    json.dumps(payload)


def test_a_distance_threshold_client_keeps_close_neighbours_and_drops_far_ones():
    payload = fastapi_result(
        ["close.png", "far.png"],
        [[nb("Otter", "1", 0.97), nb("Otter", "2", 0.95), nb("Seal", "3", 0.94)],
         [nb("Seal", "4", 0.30), nb("Otter", "5", 0.20)]])
    assert aipipeline_vote(payload, threshold=0.1) == ["Otter", None]


def test_mismatched_lists_are_refused():
    with pytest.raises(ValueError, match="2 file names but 1 neighbour lists"):
        fastapi_result(["a", "b"], [[]])


def test_written_where_fastapi_vss_writes_and_never_overwritten(tmp_path):
    payload = fastapi_result(["a.png"], [[nb("Otter", "12", 1.0)]])
    now = datetime(2026, 3, 4, 15, 7, 9)
    first = write_result(tmp_path / "out", payload, now=now)
    second = write_result(tmp_path / "out", payload, now=now)
    assert first.parent == second.parent == tmp_path / "out" / "20260304_150000"
    assert first.name.startswith("20260304_150709.") and len(first.stem.split(".")[1]) == 9
    assert first != second
    assert json.loads(first.read_text()) == {k: payload[k] for k in ("filenames", "predictions", "scores", "ids")}


def test_unwritable_output_path_names_the_folder(tmp_path):
    from vss_core.errors import VSSError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VSSError, match=str(blocker)):
        write_result(blocker / "out", fastapi_result([], []))


def test_same_payload_as_fastapi_vss_on_the_same_index(vector_store, tiny_vit_dir, image_folder):
    from vss_core.embed.embedder import Embedder
    from vss_core.labeling.loader import collect_folder, load_items
    from vss_core.labeling.search import search

    embedder = Embedder(str(tiny_vit_dir), device="cpu", fast=False)
    vector_store.ensure_index(embedder.dim)
    load_items(collect_folder(image_folder), embedder, vector_store)
    queries = [str(image_folder / "stripes" / "stripes_1.jpg"), str(image_folder / "circles" / "circles_2.png")]
    ours = search(embedder, vector_store, queries, top_n=4).to_fastapi_json()

    theirs = fastapi_vss_predictor(vector_store.client, tiny_vit_dir).predict(queries, top_n=4)
    predictions, scores, ids = theirs
    assert ours["predictions"] == predictions and ours["ids"] == ids
    assert [len(s) for s in ours["scores"]] == [len(s) for s in scores]
    assert sum(ours["scores"], []) == pytest.approx(sum(scores, []), abs=2e-4)
    assert ours["scores"][0][0] == pytest.approx(0.0, abs=1e-3)
    assert aipipeline_vote(ours, 0.05) == aipipeline_vote(
        {"predictions": predictions, "scores": scores}, 0.05) == ["stripes", "circles"]
