"""Layout versions of an exemplar index and the numbered steps between them (in the spirit of simonw/llm's
``embeddings_migrations``: each step runs once, in order, and is recorded in Redis).

An exemplar index is in one of two states:

- **VSS's**, version N: ``vss:meta:<index>`` records ``model`` and ``layout`` = N (no ``layout``: 1).
  Opening it runs the steps it lacks (:func:`upgrade`), so a database written by an older VSS is
  upgraded, never misread.
- **fastapi-vss's**, as MBARI's ``mbari-aidata`` writes it: no record, ``tag`` = the model name, the label
  only in the key ``doc:<label>:<id>``.  VSS reads it as it is (labels from the keys; counting and
  filtering by label scan the keys).  :func:`adopt`, run only when a person asks for it (the Exemplars
  page, ``vss adopt``), adds the ``label`` TAG field (FT.ALTER), copies each key's label into it and
  records the index as VSS's.  fastapi-vss ignores the extra field; nothing else changes.

Steps that touch every document walk the keys with SCAN and save the cursor in the record after each
batch, so an interrupted run resumes where it stopped; each write is idempotent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from vss_core.errors import IndexMismatch, InputError
from vss_core.redis.index_layout import add_missing_fields, as_pairs, as_text, escape_tag
from vss_core.redis.schema import LABEL, LAYOUT_VERSION, TAG
from vss_core.timeutil import now_iso

BATCH = 1000
MAX_TAG_VALUES = 100
ADOPT = "adopt"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AdoptReport:
    """What :func:`adopt` did: documents labeled in this run, documents in the index, resumed or not."""

    labeled: int
    total: int
    resumed: bool


def layout_version(index) -> int | None:
    """The layout version of a VSS index; None for an index VSS did not create or adopt."""
    meta = {as_text(k): as_text(v) for k, v in index.client.hgetall(index.schema.meta_key).items()}
    if meta.get("layout"):
        return int(meta["layout"])
    return 1 if meta.get("model") else None


def record_new(index, dim: int, model: str | None) -> None:
    """Record a freshly created index as VSS's, at the current layout version."""
    mapping = {"dim": dim, "layout": LAYOUT_VERSION}
    if model:
        mapping["model"] = model
    index.client.hset(index.schema.meta_key, mapping=mapping)


def upgrade(index, progress: Progress | None = None) -> list[int]:
    """Run the steps a VSS index lacks; returns their numbers (none for a foreign index)."""
    version = layout_version(index)
    if version is None or not index.schema.label_in_key:
        return []
    done = []
    for number in sorted(MIGRATIONS):
        if number > version:
            MIGRATIONS[number](index, progress)
            index.client.hset(index.schema.meta_key, "layout", number)
            done.append(number)
    return done


def _v2_tag_is_the_model(index, progress: Progress | None) -> None:
    """Version 2: ``tag`` holds the model name (as fastapi-vss's tools write it); ``label`` is a TAG field."""
    add_missing_fields(index.client, index.schema, index.reload_layout().fields)
    recorded = as_text(index.client.hget(index.schema.meta_key, "model"))

    def fields(key: str, values: dict) -> dict:
        return {TAG: values.get("model") or recorded, LABEL: index.split_key(key)[0]}

    backfill(index, "v2", ("model",), fields, progress)


MIGRATIONS: dict[int, Callable] = {2: _v2_tag_is_the_model}


def adopt(index, model: str, progress: Progress | None = None) -> AdoptReport:
    """Make a fastapi-vss index filterable by label: FT.ALTER adds ``label``, each key's label is copied in.

    Resumable (the cursor is kept in the record) and idempotent; run again, it labels documents that
    fastapi-vss's tools added since.  Refused when the index holds vectors of another model."""
    if not index.schema.label_in_key:
        raise InputError(f"index '{index.index_name}' is not an exemplar index")
    layout = index.reload_layout()
    if layout is None:
        raise InputError(f"Redis index '{index.index_name}' does not exist: nothing to adopt")
    check_models(index, model)
    resumed = bool(index.client.hget(index.schema.meta_key, f"cursor:{ADOPT}"))
    add_missing_fields(index.client, index.schema, layout.fields)
    labeled = backfill(index, ADOPT, (), lambda key, values: {LABEL: index.split_key(key)[0]}, progress)
    meta = {"dim": layout.dim or 0, "layout": LAYOUT_VERSION, "adopted_at": now_iso()}
    if not index.client.hexists(index.schema.meta_key, "model"):
        meta["model"] = model
    index.client.hset(index.schema.meta_key, mapping=meta)
    index.reload_layout()
    return AdoptReport(labeled, index.info().count, resumed)


def is_adopted(index) -> bool:
    """Whether labels can be filtered and counted through the index (a ``label`` TAG field)."""
    layout = index.reload_layout()
    return layout is not None and LABEL in layout.fields


def backfill(index, step: str, read: tuple[str, ...], fields: Callable[[str, dict], dict],
             progress: Progress | None = None) -> int:
    """HSET ``fields(key, values)`` on every document of ``index`` (``values``: the ``read`` fields).

    Walks the prefix with SCAN, saving the cursor as ``cursor:<step>`` after each batch; returns how many
    documents it wrote in this run."""
    client, meta, name = index.client, index.schema.meta_key, f"cursor:{step}"
    cursor = int(as_text(client.hget(meta, name)) or 0)
    total, written = index.info().count, 0
    while True:
        cursor, keys = index.scan_step(cursor, BATCH)
        if keys:
            written += _write_batch(client, keys, read, fields)
        client.hset(meta, name, cursor) if cursor else client.hdel(meta, name)
        if progress:
            progress(written, total)
        if not cursor:
            return written


def _write_batch(client, keys: list[str], read: tuple[str, ...], fields) -> int:
    values = [{}] * len(keys)
    if read:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, read)
        values = [dict(zip(read, map(as_text, row))) for row in pipe.execute()]
    pipe = client.pipeline(transaction=False)
    for key, row in zip(keys, values):
        pipe.hset(key, mapping=fields(key, row))
    pipe.execute()
    return len(keys)


def tag_models(index) -> list[str]:
    """The model names in the ``tag`` field (how fastapi-vss's tools record the model), in order of use.

    A ``tag`` equal to its document's label is a label (older databases), not a model."""
    try:
        reply = index.client.execute_command(
            "FT.AGGREGATE", index.index_name, "*", "LOAD", 1, f"@{TAG}", "GROUPBY", 1, f"@{TAG}",
            "REDUCE", "COUNT", 0, "AS", "n", "SORTBY", 2, "@n", "DESC", "LIMIT", 0, MAX_TAG_VALUES + 1,
            "TIMEOUT", index.timeout_ms, "DIALECT", 2)
    except Exception:  # noqa: BLE001 - an index without a tag field records no model
        return []
    values = [row[TAG] for row in map(as_pairs, reply[1:]) if row.get(TAG)]
    if not values or len(values) > MAX_TAG_VALUES:
        return []  # a hundred "models": these are labels
    pipe = index.client.pipeline(transaction=False)
    for value in values:
        pipe.execute_command("FT.SEARCH", index.index_name, f"@{TAG}:{{{escape_tag(value)}}}", "NOCONTENT",
                             "LIMIT", 0, 1, "DIALECT", 2)
    models = []
    for value, hit in zip(values, pipe.execute(raise_on_error=False)):
        key = as_text(hit[1]) if isinstance(hit, list) and len(hit) > 1 else ""
        if key and index.split_key(key)[0] != value:
            models.append(value)
    return models


def _tags_other_than(index, model: str) -> list[str]:
    """Model names in ``tag`` other than ``model`` (an index query, not a pass over every document)."""
    reply = index.client.execute_command("FT.SEARCH", index.index_name, f"-@{TAG}:{{{escape_tag(model)}}}",
                                         "RETURN", 1, TAG, "LIMIT", 0, 10, "DIALECT", 2)
    found = []
    for key, flat in zip(reply[1::2], reply[2::2]):
        tag = as_pairs(flat).get(TAG, "")
        if tag and tag != index.split_key(as_text(key))[0]:
            found.append(tag)
    return found


def check_models(index, model: str | None, recorded: str | None = None) -> None:
    """``IndexMismatch`` when the index holds vectors of two models, or of another model than ``model``."""
    where = f"Redis index '{index.index_name}'"
    others = _tags_other_than(index, recorded) if recorded else tag_models(index)
    found = list(dict.fromkeys(([recorded] if recorded else []) + others))
    distinct = []
    for name in found:
        if not any(same_model(name, other) for other in distinct):
            distinct.append(name)
    if len(distinct) > 1:
        raise IndexMismatch(f"{where} holds vectors of two models, '{distinct[0]}' and '{distinct[1]}' "
                            f"(field '{TAG}'); their vectors do not compare: use one index per model")
    if model and distinct and not same_model(distinct[0], model):
        raise IndexMismatch(f"{where} was built with model '{distinct[0]}' but the project uses '{model}'; "
                            f"their vectors do not compare: use another redis.index or model '{distinct[0]}'")


def same_model(a: str, b: str) -> bool:
    """Whether two model names name one model: equal, or the same folder name when either is a path."""
    a, b = a.rstrip("/\\"), b.rstrip("/\\")
    if a == b:
        return True
    if _is_path(a) or _is_path(b):
        return os.path.basename(a) == os.path.basename(b)
    return False


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.sep in name and os.path.isdir(name)

