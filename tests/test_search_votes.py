import csv
import io
from collections import namedtuple

from vss_core.labeling.search import QueryResult, SearchResults, vote

N = namedtuple("N", "key label id score source")


def n(label, score, id_="1"):
    return N(f"doc:{label}:{id_}", label, id_, score, f"/x/{label}/{id_}.png")


def test_majority_and_weighted_can_disagree():
    neighbors = [n("copepod", 0.99), n("atolla", 0.40), n("atolla", 0.30)]
    majority, weighted = vote(neighbors)
    assert (majority.label, round(majority.share, 3)) == ("atolla", 0.667)
    assert weighted.label == "copepod"
    assert round(weighted.share, 3) == round(0.99 / 1.69, 3)


def test_tie_goes_to_best_scoring_neighbor():
    majority, weighted = vote([n("b", 0.9), n("a", 0.9), n("a", 0.1), n("b", 0.1)])
    assert majority.label == "b" and majority.share == 0.5
    assert weighted.label == "b"


def test_negative_scores_carry_no_weight_and_empty_has_no_vote():
    majority, weighted = vote([n("a", -0.5), n("b", 0.2)])
    assert weighted.label == "b" and weighted.share == 1.0
    assert vote([]) == (None, None)


def test_fastapi_json_shape_and_csv():
    results = SearchResults([
        QueryResult("q1.png", (n("a", 0.9, "7"), n("b", 0.5, "8")), *vote([n("a", 0.9), n("b", 0.5)])),
        QueryResult("bad.png", error="not an image"),
    ], top_n=2)
    data = results.to_fastapi_json()
    assert data["filenames"] == ["q1.png"]
    assert data["predictions"] == [["a", "b"]]
    assert data["ids"] == [["7", "8"]]
    assert data["scores"] == [[0.1, 0.5]]  # fastapi-vss's cosine distances
    assert data["errors"] == {"bad.png": "not an image"}
    rows = list(csv.DictReader(io.StringIO(results.to_csv())))
    assert [r["label"] for r in rows] == ["a", "b", ""]
    assert rows[0]["majority_label"] == "a" and rows[2]["error"] == "not an image"
