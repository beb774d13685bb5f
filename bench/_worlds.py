"""Synthetic embedding worlds with planted truth, for the mining benches (bench/mining.py,
bench/mining_worlds.py) and the mining tests.  Numpy only; every vector is a float32 unit row.

Two kinds of world:
- :class:`LatentWorld`: the first bench's world: 16-d latent clusters of Zipf-like sizes and
  log-normal spreads, each with its own random shape, lifted to 384-d by one random linear map
  plus isotropic noise.
- :class:`ClusterWorld`: clusters directly in the ambient space, described by a :class:`Spec`:
  cluster shape (isotropic, anisotropic/elongated on a low-rank subspace, along a smooth curve),
  dimension, class imbalance (power-law sizes), spread of the clusters' widths, a shared component
  (all vectors in one cone, as real embeddings are) and one kind of planted anomaly:
  ``far`` (a cluster's own points pushed further out; off the curve for curves), ``between``
  (between two clusters), ``micro`` (tight micro-clusters of a few anomalies), ``background``
  (a sparse cloud around the common direction, not following any cluster).

Each world gives ``normal(n)`` (vectors, class ids of the known classes), ``unseen(n)`` (vectors
of classes that no normal sample has, for novelty), ``anomalies(n)`` and ``nearest_other(x, c)``
(the known class whose centre is nearest other than c, and the margin, for mislabel flips).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def nearest_other(vectors: np.ndarray, classes: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vector, the class whose centre direction is nearest other than its own, and the
    margin: cosine to its own centre minus cosine to that one (small = ambiguous)."""
    sims = vectors @ centres.T
    rows = np.arange(len(classes))
    own = sims[rows, classes].copy()
    sims[rows, classes] = -np.inf
    other = sims.argmax(1)
    return other, own - sims[rows, other]


@dataclass(frozen=True)
class Spec:
    """One ClusterWorld's parameters (lengths relative to a centre's norm ``sep``)."""
    dim: int = 384
    shape: str = "iso"          # iso | aniso | curve
    anomaly: str = "between"    # far | between | micro | background
    clusters: int = 20          # known classes
    unseen: int = 5             # classes only novelty queries come from
    zipf: float = 0.0           # class sizes ~ 1 / rank^zipf
    spread: float = 0.8         # a cluster's width (norm of its noise)
    spread_sd: float = 0.0      # log-normal sd of the widths across clusters
    sep: float = 1.0            # norm of the centres
    cone: float = 0.0           # norm of the component shared by all vectors
    rank: int = 24              # dimension of an aniso / curve cluster's own subspace
    near: float = 0.8           # an unseen class's centre: near x a known centre + the rest random
    far: float = 2.0            # width factor of "far" anomalies
    micro: int = 6              # size of one anomaly micro-cluster
    background: float = 2.0     # width of the "background" cloud


class ClusterWorld:
    """One seed's world of clusters in the ambient space (see :class:`Spec`)."""

    def __init__(self, spec: Spec, seed: int):
        self.spec, self.rng = spec, np.random.default_rng(seed)
        rng, d = self.rng, spec.dim
        self.known, total = spec.clusters, spec.clusters + spec.unseen
        self.common = rng.normal(size=d)
        self.common *= spec.cone / np.linalg.norm(self.common)
        self.centers = rng.normal(0, spec.sep / np.sqrt(d), (total, d))
        for u in range(self.known, total):
            known = self.centers[rng.integers(self.known)]
            self.centers[u] = spec.near * known + np.sqrt(1 - spec.near ** 2) * self.centers[u]
        self.spreads = spec.spread * np.exp(rng.normal(0, spec.spread_sd, total))
        weights = 1.0 / np.arange(1, self.known + 1) ** spec.zipf
        self.weights = rng.permutation(weights / weights.sum())
        if spec.shape in ("aniso", "curve"):
            self.bases = np.stack([np.linalg.qr(rng.normal(size=(d, spec.rank)))[0] for _ in range(total)])
            spectrum = np.arange(1, spec.rank + 1) ** -1.0
            self.spectrum = spectrum / np.linalg.norm(spectrum)
        if spec.shape == "curve":
            self.freq = rng.uniform(0.5, 2.0, (total, spec.rank))
            self.phase = rng.uniform(0, 2 * np.pi, (total, spec.rank))

    def _iso(self, n: int) -> np.ndarray:
        return self.rng.normal(0, 1, (n, self.spec.dim)) / np.sqrt(self.spec.dim)

    def _noise(self, classes: np.ndarray, scale: float = 1.0) -> np.ndarray:
        spec, width = self.spec, (self.spreads[classes] * scale)[:, None]
        if spec.shape == "iso":
            return self._iso(len(classes)) * width
        if spec.shape == "aniso":
            z = self.rng.normal(0, 1, (len(classes), spec.rank)) * self.spectrum
            return np.einsum("nr,ndr->nd", z, self.bases[classes]) * width * 0.9 + self._iso(len(classes)) * width * 0.3
        t = self.rng.uniform(0, 1, (len(classes), 1))
        along = np.sin(self.freq[classes] * np.pi * t + self.phase[classes]) * self.spectrum * 1.4
        curve = np.einsum("nr,ndr->nd", along, self.bases[classes]) * width
        return curve + self._iso(len(classes)) * width * 0.15 * scale

    def _points(self, classes: np.ndarray, scale: float = 1.0) -> np.ndarray:
        return self.common + self.centers[classes] + self._noise(classes, scale)

    def draw_known(self, n: int) -> np.ndarray:
        return self.rng.choice(self.known, n, p=self.weights)

    def normal(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        classes = self.draw_known(n)
        return unit_rows(self._points(classes)), classes

    def unseen(self, n: int) -> np.ndarray:
        return unit_rows(self._points(self.rng.integers(self.known, len(self.centers), n)))

    def nearest_other(self, vectors: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_other(vectors, classes, unit_rows(self.common + self.centers[:self.known]))

    def anomalies(self, n: int) -> np.ndarray:
        spec, rng = self.spec, self.rng
        if spec.anomaly == "far":
            classes = self.draw_known(n)
            if spec.shape == "curve":  # off the curve, not along it
                return unit_rows(self._points(classes) + self._iso(n) * self.spreads[classes, None] * spec.far * 0.3)
            return unit_rows(self._points(classes, spec.far))
        if spec.anomaly == "between":
            a, b = self._pairs(n)
            share = rng.uniform(0.35, 0.65, (n, 1))
            return unit_rows(self.common + share * (self.centers[a] + self._noise(a))
                             + (1 - share) * (self.centers[b] + self._noise(b)))
        if spec.anomaly == "micro":
            groups = -(-n // spec.micro)
            a, b = self._pairs(groups)
            share = rng.uniform(0.3, 0.7, (groups, 1))
            seeds = self.common + share * (self.centers[a] + self._noise(a)) + (1 - share) * self.centers[b]
            rows = np.repeat(seeds, spec.micro, axis=0) + self._noise(np.repeat(a, spec.micro), 0.25)
            return unit_rows(rows[:n])
        if spec.anomaly == "background":
            return unit_rows(self.common + self._iso(n) * spec.background)
        raise ValueError(f"unknown anomaly kind {spec.anomaly!r}")

    def _pairs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.draw_known(n), self.draw_known(n)
        return a, np.where(a == b, (b + 1) % self.known, b)


class LatentWorld:
    """The first bench's world: known + unseen classes on a 16-d manifold in 384-d."""
    latent_dim, dim = 16, 384

    def __init__(self, seed: int, known: int = 20, unseen: int = 5, sep: float = 0.40, noise: float = 0.35):
        self.rng = rng = np.random.default_rng(seed)
        self.known, self.classes, self.noise = known, known + unseen, noise
        L = self.latent_dim
        self.centers = rng.normal(0, sep, (self.classes, L))
        self.spreads = np.exp(rng.normal(0, 0.4, self.classes)) * 0.5
        self.shapes = rng.normal(0, 1, (self.classes, L, L)) / np.sqrt(L)
        self.lift = rng.normal(0, 1, (L, self.dim)) / np.sqrt(L)
        weights = 1.0 / np.arange(1, known + 1) ** 0.8
        self.weights = rng.permutation(weights / weights.sum())

    def draw_known(self, n: int) -> np.ndarray:
        return self.rng.choice(self.known, n, p=self.weights)

    def latent(self, classes: np.ndarray) -> np.ndarray:
        z = self.rng.normal(0, 1, (len(classes), self.latent_dim))
        return self.centers[classes] + np.einsum("nl,nlm->nm", z, self.shapes[classes]) * self.spreads[classes, None]

    def embed(self, latent: np.ndarray, noise_factor: float = 1.0) -> np.ndarray:
        x = latent @ self.lift + self.rng.normal(0, self.noise * noise_factor, (len(latent), self.dim))
        return unit_rows(x)

    def normal(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        classes = self.draw_known(n)
        return self.embed(self.latent(classes)), classes

    def unseen(self, n: int) -> np.ndarray:
        return self.embed(self.latent(self.rng.integers(self.known, self.classes, n)))

    def nearest_other(self, vectors: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_other(vectors, classes, unit_rows(self.centers[:self.known] @ self.lift))

    def anomalies(self, n: int) -> np.ndarray:
        """Half between two classes (a 40-60 % latent mix), half off the manifold (twice the noise)."""
        half = n // 2
        a, b = self.draw_known(half), self.draw_known(half)
        b = np.where(a == b, (b + 1) % self.known, b)
        share = self.rng.uniform(0.4, 0.6, (half, 1))
        between = self.embed(share * self.latent(a) + (1 - share) * self.latent(b))
        return np.concatenate([between, self.embed(self.latent(self.draw_known(n - half)), noise_factor=2.0)])


WORLDS: dict[str, Spec | None] = {  # None: the LatentWorld
    "latent16": None,
    "iso-far": Spec(dim=384, anomaly="far", far=1.3, spread_sd=0.3),
    "iso-between-768": Spec(dim=768, anomaly="between", spread_sd=0.3),
    "aniso-between": Spec(dim=384, shape="aniso", anomaly="between", spread=0.9, sep=0.5, near=0.9),
    "curves-off": Spec(dim=384, shape="curve", anomaly="far", far=1.0, spread=1.0, near=0.9),
    "imbalance-between": Spec(dim=384, shape="aniso", anomaly="between", clusters=30, zipf=1.2, spread_sd=0.5,
                              sep=0.7, near=0.9),
    "micro-64": Spec(dim=64, shape="aniso", anomaly="micro", rank=16, micro=8, near=0.9),
    "background-64": Spec(dim=64, shape="aniso", anomaly="background", rank=16, cone=1.0, background=0.5,
                          spread_sd=0.4),
    "background-384": Spec(dim=384, anomaly="background", cone=1.0, background=0.9, spread_sd=0.4),
    "hubs-768": Spec(dim=768, anomaly="far", clusters=5, far=1.2, cone=1.0, spread=1.2, spread_sd=0.3),
}
HOLDOUT: dict[str, Spec] = {  # never seen by the tuning (bench/mining_worlds.py --tune); only kNN's
    # difficulty was looked at when they were set
    "holdout-aniso-far-768": Spec(dim=768, shape="aniso", anomaly="far", zipf=1.0, spread_sd=0.4, far=1.6, rank=32,
                                  near=0.97),
    "holdout-curves-micro": Spec(dim=384, shape="curve", anomaly="micro", micro=5, spread=1.0, sep=0.5),
    "holdout-imbalance-background-768": Spec(dim=768, anomaly="background", clusters=40, zipf=1.5, cone=1.5,
                                             background=0.8, spread_sd=0.3),
    "holdout-cone-between-64": Spec(dim=64, shape="aniso", rank=12, anomaly="between", cone=1.0, spread_sd=0.5,
                                    sep=0.6),
}


def make_world(name: str, seed: int, **changes):
    """World ``name`` of :data:`WORLDS` or :data:`HOLDOUT` for one seed; ``changes`` override
    fields of its Spec."""
    spec = WORLDS[name] if name in WORLDS else HOLDOUT[name]
    if spec is None:
        return LatentWorld(seed)
    return ClusterWorld(replace(spec, **changes), seed)


def describe(name: str) -> dict:
    """What a world is, for tables: dim, shape, anomaly kind and the knobs that differ from Spec()."""
    spec = WORLDS[name] if name in WORLDS else HOLDOUT[name]
    if spec is None:
        return {"dim": LatentWorld.dim, "shape": "16-d latent manifold", "anomaly": "between + off-manifold"}
    default = Spec()
    knobs = {k: v for k, v in vars(spec).items() if k not in ("dim", "shape", "anomaly") and getattr(default, k) != v}
    return {"dim": spec.dim, "shape": spec.shape, "anomaly": spec.anomaly, "knobs": knobs}
