"""Mode-collapse diagnostics: does each mixture group still tell sentences apart, and are its components apart?

A collapsed group gives every sentence the same near-uniform q(c|x), so argmax counts and the aggregate q_bar(c)
still look as if all components were used; they are never a usage measure on their own. What does measure use is
the mutual information I(x; c) = H(q_bar(c)) - mean_x H(q(c|x)) (0 when collapsed, up to log K) and its exponential,
the effective number of components the group distinguishes (1 when collapsed, up to K).

Whether the components themselves sit apart is measured by a distance between every pair of a group's components,
in the family's own terms: for Gaussians the distance of their means in pooled standard deviations; for categorical
components the Jensen-Shannon divergence of their distributions, in bits per variable (0: the same distribution, 1:
values that never overlap). A Gaussian distance has no upper bound, so the two scales are not comparable.
"""

import math

import torch

from ..modeling_demvae import categorical_entropy
from ..priors import CategoricalMixturePrior

DISTANCE_UNITS = {"gaussian": "pooled standard deviations", "categorical": "Jensen-Shannon bits per variable"}


def _checked_probs(component_probs: torch.Tensor) -> torch.Tensor:
    if component_probs.dim() != 3 or component_probs.shape[0] == 0:
        raise ValueError(f"component_probs must be a non-empty (sentences, groups, K) tensor, got "
                         f"{tuple(component_probs.shape)}.")
    return component_probs.double()


def information(probs_sum: torch.Tensor, entropy_sum: torch.Tensor, count: int) -> torch.Tensor:
    """I(x; c) = H(q_bar(c)) - mean_x H(q(c|x)) per group, from sums over `count` sentences of q(c|x) (..., G, K) and
    of its entropy (..., G): (..., G)."""
    return (categorical_entropy(probs_sum / count) - entropy_sum / count).clamp_min(0.0)


def mutual_information(component_probs: torch.Tensor) -> torch.Tensor:
    """I(x; c) per group, in nats, over all the sentences given: (N, G, K) -> (G,)."""
    probs = _checked_probs(component_probs)
    return information(probs.sum(0), categorical_entropy(probs).sum(0), len(probs))


def batch_information(batches: torch.Tensor) -> torch.Tensor:
    """I(x; c) summed over groups, q_bar(c) from each batch alone: (batches, B, G, K) -> (batches,)."""
    return information(batches.sum(1), categorical_entropy(batches).sum(1), batches.shape[1]).sum(-1)


class CollapseStatistics:
    """What the collapse diagnostics need of q(c|x), summed over the sentences `update` is given a chunk at a time,
    in their order: the sums of q(c|x) and of its entropy (float64), the MI of each whole batch of `batch_size`
    consecutive sentences (the rows of an unfinished batch wait for the next chunk, so chunks of any size give the
    same batches) and, under a mixture `prior`, the sum of the dispersion L_d. Nothing is kept per sentence."""

    def __init__(self, prior=None, *, batch_size: int = 30):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.prior, self.batch_size = prior, batch_size
        self.sentences, self.probs_sum, self.entropy_sum = 0, 0.0, 0.0
        self.batch_information_sum, self.batches = 0.0, 0
        self.unfinished = None  # the last rows, fewer than batch_size
        self.dispersion_sum = 0.0

    @classmethod
    def for_model(cls, model, *, batch_size: int = 30) -> "CollapseStatistics":
        """The statistics of a model with components, its dispersion under its prior where that is a mixture."""
        if not model.config.has_discrete_latent:
            raise ValueError(f"variant={model.config.variant!r} has no components to diagnose.")
        return cls(model.prior if model.config.has_mixture_prior else None, batch_size=batch_size)

    def update(self, component_probs: torch.Tensor) -> "CollapseStatistics":
        """Add the next sentences' q(c|x), (N, G, K)."""
        probs = _checked_probs(component_probs)
        self.probs_sum = self.probs_sum + probs.sum(0)
        self.entropy_sum = self.entropy_sum + categorical_entropy(probs).sum(0)
        self.sentences += len(probs)
        rows = probs if self.unfinished is None else torch.cat((self.unfinished, probs))
        whole = len(rows) - len(rows) % self.batch_size
        if whole:
            batches = rows[:whole].unflatten(0, (-1, self.batch_size))
            self.batch_information_sum += batch_information(batches).sum().item()
            self.batches += len(batches)
        self.unfinished = rows[whole:]
        if self.prior is not None:
            with torch.no_grad():
                self.dispersion_sum += self.prior.dispersion(component_probs).double().sum().item()
        return self

    def _check_sentences(self) -> None:
        if not self.sentences:
            raise ValueError("no sentences: give CollapseStatistics.update the q(c|x) of at least one sentence.")

    def mutual_information(self) -> torch.Tensor:
        """I(x; c) per group over all the sentences: (G,)."""
        self._check_sentences()
        return information(self.probs_sum, self.entropy_sum, self.sentences)

    def batch_mutual_information(self) -> float:
        """I(x; c) summed over groups as training estimates it: q_bar(c) from one batch, averaged over the batches
        (the last one possibly shorter). Biased by the batch size; the training-time `mi` term."""
        self._check_sentences()
        total, batches = self.batch_information_sum, self.batches
        if len(self.unfinished):
            total, batches = total + batch_information(self.unfinished[None]).item(), batches + 1
        return total / batches

    def dispersion(self) -> float:
        """The mean dispersion L_d over the sentences."""
        self._check_sentences()
        if self.prior is None:
            raise ValueError("no dispersion without a mixture prior: give CollapseStatistics the model's prior.")
        return self.dispersion_sum / self.sentences


def batch_mutual_information(component_probs: torch.Tensor, batch_size: int = 30) -> float:
    """`CollapseStatistics.batch_mutual_information` of these sentences: I(x; c) summed over groups, averaged over
    consecutive batches of `batch_size`, as training estimates it."""
    return CollapseStatistics(batch_size=batch_size).update(component_probs).batch_mutual_information()


def active_components(component_probs: torch.Tensor) -> torch.Tensor:
    """exp(I(x; c)) per group: the effective number of components the posterior tells apart, in [1, K]."""
    return mutual_information(component_probs).exp()


def standardized_distances(means: torch.Tensor, log_variances: torch.Tensor) -> torch.Tensor:
    """||mu_i - mu_j|| / sqrt(mean over dimensions of (s_i^2 + s_j^2) / 2) for every pair of a group's components:
    (G, K, d) -> (G, K, K), a distance in units of the pair's pooled standard deviation."""
    means, variances = means.detach().double(), log_variances.detach().double().exp()
    pooled_std = ((variances[:, :, None] + variances[:, None]) / 2).mean(-1).sqrt()
    return (means[:, :, None] - means[:, None]).norm(dim=-1) / pooled_std


def jensen_shannon_distances(log_probs: torch.Tensor) -> torch.Tensor:
    """JS(p_i, p_j) in bits, averaged over the variables, for every pair of a group's categorical components:
    log-probabilities (G, K, d, V) -> (G, K, K), in [0, 1]."""
    probs = log_probs.detach().double().exp()
    middle = (probs[:, :, None] + probs[:, None]) / 2  # (G, K, K, d, V)

    def kl_to_middle(p):
        return (torch.special.xlogy(p, p) - torch.special.xlogy(p, middle)).sum(-1)

    return ((kl_to_middle(probs[:, :, None]) + kl_to_middle(probs[:, None])) / (2 * math.log(2))).mean(-1)


def component_distances(prior) -> torch.Tensor:
    """The distance of every pair of a group's components in the prior's family (see the module): (G, K, K)."""
    if isinstance(prior, CategoricalMixturePrior):
        return jensen_shannon_distances(prior.log_probabilities(prior.logits))
    return standardized_distances(prior.means, prior.log_variances)


def spread_of(distances: torch.Tensor) -> torch.Tensor:
    """Mean distance over the pairs i < j of a group's components: (G, K, K) -> (G,); about 0 when the components
    sit on top of each other."""
    num_components = distances.shape[1]
    if num_components < 2:
        return distances.new_zeros(distances.shape[0])
    i, j = torch.triu_indices(num_components, num_components, offset=1)
    return distances[:, i, j].mean(-1)


def separation_of(distances: torch.Tensor) -> torch.Tensor:
    """Mean over a group's components of the distance to the nearest other component: (G, K, K) -> (G,). Unlike
    the spread, it drops when some components merge while others stay apart (partial collapse)."""
    num_components = distances.shape[1]
    if num_components < 2:
        return distances.new_zeros(distances.shape[0])
    distances = distances + torch.diag(torch.full((num_components,), float("inf"), dtype=distances.dtype))
    return distances.min(-1).values.mean(-1)


def component_spread(means: torch.Tensor, log_variances: torch.Tensor) -> torch.Tensor:
    """The spread of Gaussian components (G, K, d), in pooled standard deviations: (G,)."""
    return spread_of(standardized_distances(means, log_variances))


def component_separation(means: torch.Tensor, log_variances: torch.Tensor) -> torch.Tensor:
    """The separation of Gaussian components (G, K, d), in pooled standard deviations: (G,)."""
    return separation_of(standardized_distances(means, log_variances))


def collapse_report(model, statistics: CollapseStatistics) -> dict:
    """Per group `mi`, `active_components` and (mixture prior) `component_spread` and `component_separation` (in the
    unit `component_distance` names); the batch-estimated MI summed over groups; and the mean dispersion L_d: from
    the statistics of the sentences q(c|x) was summed over."""
    mi = statistics.mutual_information()
    result = {
        "mi": mi.tolist(),
        "mi_total": mi.sum().item(),
        "batch_mi": statistics.batch_mutual_information(),
        "active_components": mi.exp().tolist(),
        "max_mi": math.log(model.config.num_components),
    }
    if model.config.has_mixture_prior:
        distances = component_distances(model.prior)
        result["component_spread"] = spread_of(distances).tolist()
        result["component_separation"] = separation_of(distances).tolist()
        result["component_distance"] = DISTANCE_UNITS[model.config.prior_family]
        result["dispersion"] = statistics.dispersion()
    return result


def collapse_diagnostics(model, posterior) -> dict:
    """`collapse_report` of the sentences of `posterior` (from `encode_sentences`)."""
    return collapse_report(model, CollapseStatistics.for_model(model).update(posterior.component_probs))


__all__ = [
    "CollapseStatistics",
    "information",
    "mutual_information",
    "batch_mutual_information",
    "active_components",
    "component_distances",
    "component_spread",
    "component_separation",
    "jensen_shannon_distances",
    "separation_of",
    "spread_of",
    "standardized_distances",
    "collapse_diagnostics",
    "collapse_report",
]
