"""Interpretability: how well do the argmax components, read as clusters, line up with human labels?

A sentence's cluster is its argmax component in every group, combined into one id (the code c_1 ... c_G read as a
base-K number). Scores are scikit-learn's homogeneity (each cluster holds one label), completeness (each label
sits in one cluster) and NMI (their harmonic mean, arithmetic normalisation).

Small clusters look pure by chance (one sentence per cluster scores 1), so homogeneity comes with its chance level:
the mean homogeneity of the same clusters against the labels shuffled, and the score above it.
"""

import numpy as np
import torch
from sklearn.metrics import homogeneity_completeness_v_measure

CHANCE_SHUFFLES = 20  # label permutations averaged for the chance level of homogeneity


def combined_cluster_ids(component_probs: torch.Tensor) -> torch.Tensor:
    """(N, G, K) component probabilities -> (N,) ids of the argmax code, sum_g argmax_g * K^(G-1-g)."""
    if component_probs.dim() != 3:
        raise ValueError(f"component_probs must be (sentences, groups, K), got shape {tuple(component_probs.shape)}.")
    num_groups, num_components = component_probs.shape[1:]
    powers = num_components ** torch.arange(num_groups - 1, -1, -1, dtype=torch.long)
    return (component_probs.argmax(-1).long() * powers).sum(-1)


def _as_array(values) -> np.ndarray:
    return values.numpy(force=True) if isinstance(values, torch.Tensor) else np.asarray(values)


def cluster_scores(cluster_ids, labels) -> dict[str, float]:
    """Homogeneity, completeness and NMI of clusters against one label per sentence (sequences or arrays)."""
    cluster_ids, labels = _as_array(cluster_ids), _as_array(labels)
    if len(cluster_ids) != len(labels) or not len(labels):
        raise ValueError(f"need one label per sentence: got {len(labels)} labels for {len(cluster_ids)} sentences.")
    homogeneity, completeness, nmi = homogeneity_completeness_v_measure(labels, cluster_ids)
    return {"homogeneity": float(homogeneity), "completeness": float(completeness), "nmi": float(nmi)}


def homogeneity_chance(cluster_ids, labels, *, seed: int = 0, shuffles: int = CHANCE_SHUFFLES) -> float:
    """The homogeneity these cluster sizes reach by chance: its mean over `shuffles` permutations of the labels, the
    i-th the i-th `permutation` of `np.random.default_rng(seed)`, so that a seed gives the same level every time."""
    cluster_ids, labels = _as_array(cluster_ids), _as_array(labels)
    generator = np.random.default_rng(seed)
    scores = [cluster_scores(cluster_ids, labels[generator.permutation(len(labels))])["homogeneity"]
              for _ in range(shuffles)]
    return float(np.mean(scores))


def cluster_agreement(cluster_ids, labels: dict, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """`cluster_scores` of clusters (one id per sentence) against each named label column, with the homogeneity's
    chance level (`homogeneity_chance`, seeded with `seed`) and the homogeneity above it (`homogeneity_adjusted`)."""
    cluster_ids = _as_array(cluster_ids)
    agreement = {}
    for name, values in labels.items():
        values = _as_array(values)
        scores = cluster_scores(cluster_ids, values)
        chance = homogeneity_chance(cluster_ids, values, seed=seed)
        agreement[name] = {"homogeneity": scores["homogeneity"], "homogeneity_chance": chance,
                           "homogeneity_adjusted": scores["homogeneity"] - chance,
                           "completeness": scores["completeness"], "nmi": scores["nmi"]}
    return agreement


def label_agreement(component_probs: torch.Tensor, labels: dict[str, list], *,
                    seed: int = 0) -> dict[str, dict[str, float]]:
    """`cluster_agreement` of the combined argmax clusters of q(c|x) (N, G, K)."""
    return cluster_agreement(combined_cluster_ids(component_probs), labels, seed=seed)


__all__ = ["CHANCE_SHUFFLES", "cluster_agreement", "combined_cluster_ids", "cluster_scores", "homogeneity_chance",
           "label_agreement"]
