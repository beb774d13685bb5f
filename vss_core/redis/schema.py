"""The Redis layout of a project, described once (in the spirit of redisvl's ``IndexSchema``).

A project's Redis holds two vector indexes built from :class:`IndexSchema` values:

- the **exemplars** (fastapi-vss's layout, as MBARI's ``mbari-aidata`` writes it): FT index ``index`` over
  HASH keys ``doc:<label>:<id>`` with ``vector`` (FLOAT32, COSINE) and ``tag`` (TAG, **the model name**).
  The label is the key's middle part, as fastapi-vss reads it.  VSS adds ``label`` (TAG: the same label,
  so that labels can be filtered and counted; see :mod:`vss_core.redis.migrations` for databases without it)
  and the stored fields ``source``, ``added_by``, ``added_at``, ``model`` and ``pool_id`` (a promoted pool image);
- the **pool** of images to label: FT index ``<index>_pool`` over HASH keys ``<index>_pool:<id>``,
  never read by fastapi-vss, with the suggestion, its scores and the current decision.

Beside them, plain keys: each index's record (``vss:meta:<index name>``: model, dimension, layout version,
migration and adoption progress), and under
``vss:<index>:`` the audit stream (``audit``), each image's history (``hist:<id>``), each annotator's undo stack
(``undo:<annotator>``), actions (``action:<id>``), mining scores (``scores:<kind>[:<scope>]``, sorted sets, each
described by ``scoresmeta:<kind>[:<scope>]``), the exemplar-set generation (``generation``) and
retired exemplars (``retired:<action>:<key>``).  Job records, locks and RQ queues: the functions under "jobs" below.  Everything that names a key or a field imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from vss_core.errors import IndexMismatch

TAG_SEPARATOR = "\x1f"
VECTOR = "vector"
TAG = "tag"
LABEL = "label"
LAYOUT_VERSION = 2
DATA_TYPE = "FLOAT32"
METRIC = "COSINE"

EXEMPLAR_FIELDS = ("label", "source", "added_by", "added_at", "model", "pool_id")

POOL_SUFFIX = "_pool"  # the pool index of exemplar index ``x`` is ``x_pool``, over keys ``x_pool:<id>``
# Pool documents: TAG fields (exact, case-sensitive), NUMERIC SORTABLE fields, sortable names.
POOL_TAGS = ("tag", "suggestion", "status", "job", "flag")
POOL_NUMBERS = ("best", "share", "margin", "confidence", "uncertain", "version", "decided_ts", "generation")
POOL_SORTABLE_TEXT = ("name", "suggestion_text")
POOL_STORED = ("source", "label", "annotator", "decided_at", "model", "neighbors", "exemplar",
               "added_at", "second", "k", "how")

PREDICTED, ACCEPTED, CORRECTED, DUBIOUS, SKIPPED = "predicted", "accepted", "corrected", "dubious", "skipped"
STATUSES = (PREDICTED, ACCEPTED, CORRECTED, DUBIOUS, SKIPPED)
PROMOTED_STATUSES = frozenset({ACCEPTED, CORRECTED})
RARE, ANOMALY, NORMAL, DISMISSED = "rare", "anomaly", "normal", "dismissed"
FLAGS = ("", RARE, ANOMALY, NORMAL, DISMISSED)


@dataclass(frozen=True)
class IndexSchema:
    """One FT index over HASH keys: its name, key prefix, vector field and the other indexed fields.

    ``tags`` are TAG fields (separator 0x1f, CASESENSITIVE), ``numbers`` NUMERIC SORTABLE,
    ``sortable_text`` TEXT NOINDEX SORTABLE (sort only); ``stored`` are hash fields written and read
    but not indexed.  ``label_in_key``: a document's label is its key's middle part (``doc:<label>:<id>``,
    the exemplars); otherwise it is the ``label`` field (the pool).
    """

    name: str
    prefix: str
    algorithm: str = "FLAT"
    hnsw: Mapping[str, int] = field(default_factory=dict)
    tags: tuple[str, ...] = (TAG, LABEL)
    numbers: tuple[str, ...] = ()
    sortable_text: tuple[str, ...] = ()
    stored: tuple[str, ...] = EXEMPLAR_FIELDS
    label_in_key: bool = True

    @property
    def meta_key(self) -> str:
        """Hash recording the model, dimension and layout version of this index (absent for fastapi-vss's
        until it is adopted): fields ``model``, ``dim``, ``layout``, ``adopted_at``, ``cursor:<step>``."""
        return f"vss:meta:{self.name}"

    def key(self, *parts: str) -> str:
        """The key of a document: the prefix, then ``parts`` joined by ':'."""
        return self.prefix + ":".join(parts)

    def fields(self) -> tuple[str, ...]:
        """Every hash field a document of this index may have, the vector excepted."""
        seen = dict.fromkeys((*self.tags, *self.numbers, *self.sortable_text, *self.stored))
        return tuple(seen)

    def indexed(self) -> tuple[str, ...]:
        """The indexed fields other than the vector, in FT.CREATE order."""
        return (*self.tags, *self.numbers, *self.sortable_text)

    def field_args(self, name: str) -> list:
        """The FT.CREATE / FT.ALTER arguments of one indexed field."""
        if name in self.tags:
            return [name, "TAG", "SEPARATOR", TAG_SEPARATOR, "CASESENSITIVE"]
        if name in self.numbers:
            return [name, "NUMERIC", "SORTABLE"]
        return [name, "TEXT", "NOSTEM", "SORTABLE", "NOINDEX"]

    def create_args(self, dim: int) -> list:
        """The arguments of ``FT.CREATE`` for ``dim``-dimensional vectors."""
        params: list = ["TYPE", DATA_TYPE, "DIM", dim, "DISTANCE_METRIC", METRIC]
        if self.algorithm == "HNSW":
            for name in ("M", "EF_CONSTRUCTION", "EF_RUNTIME"):
                if name in self.hnsw:
                    params += [name, int(self.hnsw[name])]
        schema = [arg for name in self.indexed() for arg in self.field_args(name)]
        schema += [VECTOR, "VECTOR", self.algorithm, len(params), *params]
        return [self.name, "ON", "HASH", "PREFIX", 1, self.prefix, "SCHEMA", *schema]


@dataclass(frozen=True)
class ProjectLayout:
    """Every Redis name of one project: the two indexes and the keys beside them."""

    exemplars: IndexSchema
    pool: IndexSchema
    namespace: str

    @property
    def audit_key(self) -> str:
        """Stream of every decision, with the state before and after."""
        return f"{self.namespace}audit"

    def history_key(self, image_id: str) -> str:
        """List of the audit entry ids of one pool image, oldest first."""
        return f"{self.namespace}hist:{image_id}"

    def undo_key(self, annotator: str) -> str:
        """List of one annotator's undoable action ids, newest last."""
        return f"{self.namespace}undo:{annotator}"

    def scores_key(self, kind: str, scope: str = "") -> str:
        """Sorted set of mining scores (member: pool id or exemplar key) of ``kind`` over ``scope``."""
        return f"{self.namespace}scores:{kind}" + (f":{scope}" if scope else "")

    def retired_key(self, exemplar_key: str, action_id: str = "") -> str:
        """Where an exemplar retired by action ``action_id`` is kept (outside the index) so that retiring can
        be undone; each retire keeps its own copy (``retired:`` alone is the prefix of them all)."""
        return f"{self.namespace}retired:" + (f"{action_id}:" if action_id else "") + exemplar_key

    def action_key(self, action_id: str) -> str:
        """Hash of one action: who, when, what, and the audit entries it wrote."""
        return f"{self.namespace}action:{action_id}"

    @staticmethod
    def namespace_of(index: str) -> str:
        """The prefix of the keys beside exemplar index ``index``."""
        return f"vss:{index}:"

    @staticmethod
    def generation_key_of(index: str) -> str:
        """Counter bumped by every change of the set of exemplars of index ``index`` (load, promotion,
        relabel, retire, delete); pool suggestions and score sets record the value they were made at."""
        return f"{ProjectLayout.namespace_of(index)}generation"

    @property
    def generation_key(self) -> str:
        """See :meth:`generation_key_of`."""
        return self.generation_key_of(self.exemplars.name)

    def scores_meta_key(self, kind: str, scope: str = "") -> str:
        """Hash describing the ranking at ``scores_key(kind, scope)``: ``generation``, ``k``, ``model``, ``at``,
        ``scored``, ``complete`` ("1"), and ``cancelled_at`` when a later run was stopped before the end."""
        return f"{self.namespace}scoresmeta:{kind}" + (f":{scope}" if scope else "")

    def scores_tmp_key(self, kind: str, scope: str, run: str) -> str:
        """Sorted set a scoring run fills; renamed to ``scores_key`` when the run completes."""
        return f"{self.namespace}scorestmp:{run}:{kind}" + (f":{scope}" if scope else "")


# -- jobs (vss_core.jobs.board, vss_core.jobs.rq_jobs): keys shared by every project on a server ------------

def job_key(job_id: str) -> str:
    """String: one job's record as JSON (state, counts, meta, owner, heartbeat)."""
    return f"vss:job:{job_id}"


def job_list_key(project: str) -> str:
    """Sorted set: a project's job ids by creation time."""
    return f"vss:jobs:{project}"


def job_cancel_key(job_id: str) -> str:
    """Flag: another process asked the job's owner to stop."""
    return f"vss:job:{job_id}:cancel"


def job_lock_key(project: str, kind: str) -> str:
    """The (project, kind) lock of exclusive job kinds, held with a TTL its heartbeats renew."""
    return f"vss:joblock:{project}:{kind}"


def rq_queue_name(project: str) -> str:
    """The RQ queue of a project's job chunks."""
    return f"vss-{project}"


def rq_progress_key(job_id: str) -> str:
    """Hash: progress of an RQ-run job's chunks."""
    return f"vss:rq:{job_id}:progress"


def rq_cancel_key(job_id: str) -> str:
    """Flag: the chunks of an RQ-run job stop at their next batch."""
    return f"vss:rq:{job_id}:cancel"


def project_layout(index: str = "index", prefix: str = "doc:", algorithm: str = "FLAT",
                   hnsw: Mapping[str, int] | None = None) -> ProjectLayout:
    """The layout of a project whose exemplar index is ``index`` over keys ``prefix...``."""
    hnsw = MappingProxyType(dict(hnsw or {}))
    exemplars = IndexSchema(index, prefix, algorithm.upper(), hnsw)
    pool = IndexSchema(f"{index}{POOL_SUFFIX}", f"{index}{POOL_SUFFIX}:", algorithm.upper(), hnsw, tags=POOL_TAGS,
                       numbers=POOL_NUMBERS, sortable_text=POOL_SORTABLE_TEXT, stored=POOL_STORED,
                       label_in_key=False)
    for a, b in ((exemplars, pool), (pool, exemplars)):
        if b.prefix.startswith(a.prefix):
            raise IndexMismatch(f"key prefix '{a.prefix}' of index '{a.name}' would also take the keys of "
                                f"index '{b.name}' ('{b.prefix}'); choose another redis.prefix")
    return ProjectLayout(exemplars, pool, ProjectLayout.namespace_of(index))


def layout_for(project) -> ProjectLayout:
    """The layout of a :class:`~vss_core.config.projects.ProjectConfig`."""
    return project_layout(project.redis.index, project.redis.prefix, project.index_algorithm, project.hnsw)
