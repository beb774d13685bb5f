"""Mining scores (vss_core.mining.scores) against plain k-th-neighbour distance and a naive baseline,
by ROC AUC on synthetic embeddings with known truth: the first bench, on one world (the latent
world of bench/_worlds.py).  bench/mining_worlds.py compares them on fourteen worlds.

    python bench/mining.py [--seeds 10] [--known 20] [--unseen 5] [--sep 0.40] [--exemplars 3000]

The embeddings lie on a low-dimensional manifold: 16-d latent clusters of unequal size (Zipf-like)
and spread (log-normal), each with its own random shape, centres closer than the clusters are wide,
mapped to 384-d by one random linear map plus isotropic noise, normalised.  --sep sets the distance
of the centres; 0.40 gives a 10-NN label accuracy on the known classes of ~0.85-0.92 (printed).
Planted truth, per seed:
- novelty: a pool of held-out images of the known classes plus images of --unseen classes that no
  exemplar has; positives = the unseen ones.  Scored against --exemplars exemplars.
- anomaly: a set of known-class images plus points between two clusters (latent mixes of two
  images of different classes, 40 %-60 %) and points off the manifold (twice the ambient noise).
- mislabel: the exemplars with 5 % of the labels flipped to the class whose centre is nearest to
  the image (excluding its own).
Candidates shown beside ours (novelty, anomaly): mean distance to the k nearest, and scikit-learn's
LocalOutlierFactor (cosine; novelty=True against the exemplars).  Baselines at the same k: plain k-th neighbour distance (Sun et al. 2022; for mislabel the plain
unweighted kNN vote disagreement) and the naive distance to the mean (the set's mean; for
mislabel the mean of the image's own label).
"""

from __future__ import annotations

import argparse

import _common as common
import numpy as np
from _worlds import LatentWorld
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from vss_core.mining import scores as mining

World = LatentWorld  # the world of this bench (moved to bench/_worlds.py, shared with mining_worlds.py)
DIM = LatentWorld.dim


def knn_accuracy(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    ids, _ = mining.top_k(vectors, vectors, k, exclude_self=True)
    votes = np.array([np.bincount(row, minlength=labels.max() + 1).argmax() for row in labels[ids]])
    return float((votes == labels).mean())


def distance_to_mean(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    mean = reference.mean(axis=0)
    return 1.0 - vectors @ (mean / np.linalg.norm(mean))


def novelty_case(world: World, exemplars: np.ndarray, k: int) -> dict:
    classes = np.concatenate([world.draw_known(1000), world.rng.integers(world.known, world.classes, 150)])
    pool = world.embed(world.latent(classes))
    truth = classes >= world.known
    _, sims = mining.top_k(pool, exemplars, k)
    lof = LocalOutlierFactor(n_neighbors=k, metric="cosine", algorithm="brute", novelty=True).fit(exemplars)
    return {"ours": roc_auc_score(truth, mining.novelty_scores(pool, exemplars, k)),
            "kth": roc_auc_score(truth, 1 - sims[:, -1]),
            "mean_k": roc_auc_score(truth, 1 - sims.mean(1)),
            "lof": roc_auc_score(truth, -lof.score_samples(pool)),
            "naive": roc_auc_score(truth, distance_to_mean(pool, exemplars))}


def anomaly_case(world: World, k: int, n: int = 2000, planted: int = 40) -> dict:
    normal = world.embed(world.latent(world.draw_known(n)))
    a, b = world.draw_known(planted), world.draw_known(planted)
    b = np.where(a == b, (b + 1) % world.known, b)
    share = world.rng.uniform(0.4, 0.6, (planted, 1))
    between = world.embed(share * world.latent(a) + (1 - share) * world.latent(b))
    off = world.embed(world.latent(world.draw_known(planted)), noise_factor=2.0)
    vectors = np.concatenate([normal, between, off])
    truth = np.r_[np.zeros(n), np.ones(2 * planted)].astype(bool)
    _, sims = mining.top_k(vectors, vectors, k, exclude_self=True)
    lof = LocalOutlierFactor(n_neighbors=k, metric="cosine", algorithm="brute").fit(vectors)
    return {"ours": roc_auc_score(truth, mining.anomaly_scores(vectors, k)),
            "kth": roc_auc_score(truth, 1 - sims[:, -1]),
            "mean_k": roc_auc_score(truth, 1 - sims.mean(1)),
            "lof": roc_auc_score(truth, -lof.negative_outlier_factor_),
            "naive": roc_auc_score(truth, distance_to_mean(vectors, vectors))}


def mislabel_case(world: World, vectors: np.ndarray, latent: np.ndarray, classes: np.ndarray, k: int) -> dict:
    flipped = world.rng.random(len(classes)) < 0.05
    gaps = ((latent[:, None, :] - world.centers[None, :world.known, :]) ** 2).sum(-1)
    gaps[np.arange(len(classes)), classes] = np.inf
    labels = np.where(flipped, gaps.argmin(1), classes)
    ids, _ = mining.top_k(vectors, vectors, k, exclude_self=True)
    means = np.stack([vectors[labels == c].mean(0) if (labels == c).any() else np.zeros(DIM) for c in range(world.known)])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    names = [f"class {c}" for c in labels]
    return {"ours": roc_auc_score(flipped, mining.mislabel_scores(vectors, names, k)),
            "kth": roc_auc_score(flipped, (labels[ids] != labels[:, None]).mean(1)),
            "naive": roc_auc_score(flipped, 1 - (vectors * means[labels]).sum(1))}


def run_seed(seed: int, args) -> dict:
    world = World(seed, args.known, args.unseen, args.sep)
    classes = world.draw_known(args.exemplars)
    latent = world.latent(classes)
    exemplars = world.embed(latent)
    return {"seed": seed, "knn10_accuracy": knn_accuracy(exemplars, classes),
            "novelty": novelty_case(world, exemplars, k=5),
            "anomaly": anomaly_case(world, k=10),
            "mislabel": mislabel_case(world, exemplars, latent, classes, k=10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--known", type=int, default=20)
    parser.add_argument("--unseen", type=int, default=5)
    parser.add_argument("--sep", type=float, default=0.40)
    parser.add_argument("--exemplars", type=int, default=3000)
    args = parser.parse_args()
    runs = [run_seed(seed, args) for seed in range(args.seeds)]
    rows, verdicts = [], {}
    for score in ("novelty", "anomaly", "mislabel"):
        for run in runs:
            r = run[score]
            rows.append({"score": score, "seed": run["seed"], "10-NN acc": run["knn10_accuracy"],
                         "ours": r["ours"], "plain kNN": r["kth"], "naive": r["naive"], "ours - kNN": r["ours"] - r["kth"],
                         "mean-of-k": r.get("mean_k", ""), "LOF": r.get("lof", "")})
        ours = np.array([run[score]["ours"] for run in runs])
        kth = np.array([run[score]["kth"] for run in runs])
        candidates = {name: float(np.mean([run[score][name] for run in runs]))
                      for name in ("mean_k", "lof") if name in runs[0][score]}
        verdicts[score] = {"mean_ours": float(ours.mean()), "mean_knn": float(kth.mean()), "mean_candidates": candidates,
                           "mean_naive": float(np.mean([run[score]["naive"] for run in runs])),
                           "seeds_at_least_knn": int((ours >= kth).sum()), "seeds": len(runs),
                           "beats_on_average": bool(ours.mean() > kth.mean())}
    common.table(rows)
    print()
    for score, v in verdicts.items():
        print(f"{score:9s} mean AUC ours {v['mean_ours']:.3f}  plain kNN {v['mean_knn']:.3f}  naive {v['mean_naive']:.3f}"
              + "".join(f"  {name} {value:.3f}" for name, value in v["mean_candidates"].items())
              + f"  ours >= kNN on {v['seeds_at_least_knn']}/{v['seeds']} seeds"
              f"  {'PASS' if v['seeds_at_least_knn'] == v['seeds'] else 'MISS'} (every seed)"
              f"  {'PASS' if v['beats_on_average'] else 'MISS'} (average)")
    common.save_result("mining", {"args": vars(args), "runs": runs, "verdicts": verdicts})


if __name__ == "__main__":
    main()
