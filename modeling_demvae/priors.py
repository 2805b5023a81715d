"""Exponential-family mixture priors p(z) = prod_g (1/K) sum_k p(z_g | eta_{g,k}).

The paper's point holds for any exponential family: the ELBO's prior term hides minus the dispersion
L_d = E_q(c|x) A(eta_c) - A(E_q(c|x) eta_c) >= 0, so it pulls the components together. The base class
computes L_d from two family-specific pieces, the natural parameters and the log-partition A; a family
adds its KL, sampling and density. Two families: `GaussianMixturePrior` (diagonal; GM-VAE, DGM-VAE) and
`CategoricalMixturePrior` (products of categoricals; CM-VAE, DCM-VAE).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mean_q, logvar_q, mean_p, var_p):
    """Elementwise KL( N(mean_q, exp(logvar_q)) || N(mean_p, var_p) )."""
    return 0.5 * (torch.log(var_p) - logvar_q + (logvar_q.exp() + (mean_q - mean_p) ** 2) / var_p - 1.0)


def gaussian_log_density(z, mean, logvar):
    """Elementwise log N(z; mean, exp(logvar))."""
    return -0.5 * (LOG_2PI + logvar + (z - mean) ** 2 / logvar.exp())


def categorical_kl(logits_q: torch.Tensor, log_probs_p: torch.Tensor) -> torch.Tensor:
    """KL( Cat(softmax(logits_q)) || Cat(exp(log_probs_p)) ) over the last dimension."""
    log_q = F.log_softmax(logits_q, dim=-1)
    return (log_q.exp() * (log_q - log_probs_p)).sum(-1)


class ExponentialFamilyMixture(nn.Module):
    """G independent groups, each a uniform mixture of K components over a d-dimensional latent.

    Natural parameters have shape (G, K, d, P): P parameters per dimension (2 for a diagonal Gaussian, V - 1 for a
    categorical of V values). `posterior_fields` names the `DEMVAEPosterior` fields that parametrize q(z|x), the
    arguments `kl_to_averaged` and `component_kl` take before the component probabilities.
    """

    posterior_fields: tuple[str, ...] = ()

    def __init__(self, *, num_groups: int, num_components: int, latent_size: int):
        super().__init__()
        self.num_groups, self.num_components, self.latent_size = num_groups, num_components, latent_size

    def natural_parameters(self) -> torch.Tensor:
        raise NotImplementedError

    def log_partition(self, natural: torch.Tensor) -> torch.Tensor:
        """A(eta) per dimension: (..., d, P) -> (..., d)."""
        raise NotImplementedError

    def averaged_natural_parameters(self, component_probs: torch.Tensor) -> torch.Tensor:
        """eta_bar = sum_c q(c|x) eta_c: (B, G, K) -> (B, G, d, P)."""
        return torch.einsum("bgk,gkdp->bgdp", component_probs, self.natural_parameters())

    def dispersion(self, component_probs: torch.Tensor) -> torch.Tensor:
        """L_d = sum_c q(c|x) A(eta_c) - A(eta_bar), summed over groups and dimensions: (B, G, K) -> (B,)."""
        mean_log_partition = torch.einsum(
            "bgk,gkd->b", component_probs, self.log_partition(self.natural_parameters())
        )
        averaged = self.log_partition(self.averaged_natural_parameters(component_probs)).sum(dim=(1, 2))
        return mean_log_partition - averaged

    def component_indices(self, num_samples: int, component=None, *, generator=None) -> torch.Tensor:
        """(num_samples, G) component indices: uniform draws from p(c), or the one the caller fixed."""
        device = self.natural_parameters().device
        if component is None:
            return torch.randint(
                self.num_components, (num_samples, self.num_groups), device=device, generator=generator
            )
        return checked_components(component, self.num_groups, self.num_components, num_samples).to(device)

    def component_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_g | c_g = k) for every group and component: (B, decoder latent) -> (B, G, K)."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = sum_g log (1/K) sum_k p(z_g|k): (B,)."""
        per_component = self.component_log_density(z)
        return (torch.logsumexp(per_component, dim=-1) - math.log(self.num_components)).sum(-1)


def checked_components(component, num_groups: int, num_components: int, num_samples: int) -> torch.Tensor:
    """Turn an int (G = 1), one index per group, or a (num_samples, G) array into (num_samples, G) indices."""
    if isinstance(component, int) and not isinstance(component, bool):
        if num_groups != 1:
            raise ValueError(
                f"component={component} is a single index, but the model has num_groups={num_groups}: "
                f"pass one index per group (a list of {num_groups} ints in [0, {num_components}))."
            )
        component = [component]
    indices = torch.as_tensor(component)
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError(f"component must hold integer indices, got dtype {indices.dtype}.")
    if indices.dim() == 1:
        indices = indices.unsqueeze(0)
    if indices.dim() != 2 or indices.shape[1] != num_groups:
        raise ValueError(
            f"component must give one index per group ({num_groups} groups), got shape {tuple(indices.shape)}."
        )
    if indices.shape[0] == 1:
        indices = indices.expand(num_samples, num_groups)
    elif indices.shape[0] != num_samples:
        raise ValueError(f"component has {indices.shape[0]} rows for num_samples={num_samples}.")
    if indices.min() < 0 or indices.max() >= num_components:
        raise ValueError(
            f"component indices must lie in [0, {num_components}), got {indices.unique().tolist()}."
        )
    return indices.long()


class GaussianMixturePrior(ExponentialFamilyMixture):
    """Mixture of diagonal Gaussians with a learned mean and log-variance per component.

    With `learnable=False` and K = 1 it is the standard normal N(0, I) of the VAE baselines.
    """

    posterior_fields = ("mean", "logvar")

    def __init__(self, *, num_groups: int, num_components: int, latent_size: int, learnable: bool = True):
        super().__init__(num_groups=num_groups, num_components=num_components, latent_size=latent_size)
        shape = (num_groups, num_components, latent_size)
        if learnable:
            self.means = nn.Parameter(torch.zeros(shape))
            self.log_variances = nn.Parameter(torch.zeros(shape))
        else:
            self.register_buffer("means", torch.zeros(shape), persistent=False)
            self.register_buffer("log_variances", torch.zeros(shape), persistent=False)

    def natural_parameters(self) -> torch.Tensor:
        precision = torch.exp(-self.log_variances)
        return torch.stack((self.means * precision, -0.5 * precision), dim=-1)

    def log_partition(self, natural: torch.Tensor) -> torch.Tensor:
        eta1, eta2 = natural.unbind(-1)
        return -(eta1**2) / (4 * eta2) - 0.5 * torch.log(-2 * eta2)

    @staticmethod
    def moments(natural: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the Gaussian with natural parameters (..., 2)."""
        eta1, eta2 = natural.unbind(-1)
        variance = -0.5 / eta2
        return eta1 * variance, variance

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.num_groups, self.latent_size)

    def kl_to_averaged(self, mean, logvar, component_probs) -> torch.Tensor:
        """zkl = KL( q(z|x) || Gaussian at eta_bar ), summed over groups and dimensions: (B,)."""
        averaged_mean, averaged_var = self.moments(self.averaged_natural_parameters(component_probs))
        return gaussian_kl(self._grouped(mean), self._grouped(logvar), averaged_mean, averaged_var).sum(dim=(1, 2))

    def component_kl(self, mean, logvar) -> torch.Tensor:
        """KL( q(z|x) || p(z|c) ) for every group and component: (B, G, K)."""
        q_mean, q_logvar = self._grouped(mean).unsqueeze(2), self._grouped(logvar).unsqueeze(2)
        return gaussian_kl(q_mean, q_logvar, self.means, self.log_variances.exp()).sum(-1)

    def mode(self, components: torch.Tensor) -> torch.Tensor:
        """The most probable z of each row's components (n, G), its mean: (n, G * d)."""
        return self.means[torch.arange(self.num_groups, device=components.device), components].flatten(1)

    def sample(self, num_samples: int, component=None, *, generator=None) -> torch.Tensor:
        """z ~ p(z|c) with c ~ p(c) or fixed: (num_samples, G * d)."""
        indices = self.component_indices(num_samples, component, generator=generator)
        groups = torch.arange(self.num_groups, device=indices.device)
        mean, logvar = self.means[groups, indices], self.log_variances[groups, indices]
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        return (mean + noise * (0.5 * logvar).exp()).flatten(1)

    def component_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_g | c_g = k) for every group and component: (B, G * d) -> (B, G, K)."""
        return gaussian_log_density(self._grouped(z).unsqueeze(2), self.means, self.log_variances).sum(-1)


class CategoricalMixturePrior(ExponentialFamilyMixture):
    """Mixture of products of categoricals: per group, z_g is d variables of V values, each drawn from its component.

    Per variable, component k's natural parameters eta are its first V - 1 logits, the last fixed at 0 (the minimal
    parametrization: each distribution has one eta, and A is strictly convex): p(z = i | k) = softmax([eta, 0])_i and
    A(eta) = log(1 + sum_i exp eta_i). z is handled one-hot, (B, G * d * V) laid out (G, d, V).
    """

    posterior_fields = ("latent_logits",)

    def __init__(self, *, num_groups: int, num_components: int, latent_size: int, categorical_size: int):
        super().__init__(num_groups=num_groups, num_components=num_components, latent_size=latent_size)
        self.categorical_size = categorical_size
        self.logits = nn.Parameter(torch.zeros(num_groups, num_components, latent_size, categorical_size - 1))

    def natural_parameters(self) -> torch.Tensor:
        return self.logits

    def log_partition(self, natural: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(F.pad(natural, (0, 1)), dim=-1)

    @staticmethod
    def log_probabilities(natural: torch.Tensor) -> torch.Tensor:
        """log softmax([eta, 0]): (..., V - 1) -> (..., V)."""
        return F.log_softmax(F.pad(natural, (0, 1)), dim=-1)

    def _grouped(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(z.shape[0], self.num_groups, self.latent_size, self.categorical_size)

    def kl_to_averaged(self, latent_logits, component_probs) -> torch.Tensor:
        """zkl = KL( q(z|x) || Cat(softmax([eta_bar, 0])) ), summed over groups and variables: (B, G, d, V) -> (B,)."""
        averaged = self.log_probabilities(self.averaged_natural_parameters(component_probs))
        return categorical_kl(latent_logits, averaged).sum(dim=(1, 2))

    def component_kl(self, latent_logits) -> torch.Tensor:
        """KL( q(z|x) || p(z|c) ) for every group and component: (B, G, d, V) -> (B, G, K)."""
        return categorical_kl(latent_logits.unsqueeze(2), self.log_probabilities(self.logits)).sum(-1)

    def mode(self, components: torch.Tensor) -> torch.Tensor:
        """The most probable z of each row's components (n, G), one-hot: each variable's likeliest value,
        (n, G * d * V)."""
        logits = self.logits[torch.arange(self.num_groups, device=components.device), components]  # (n, G, d, V-1)
        values = self.log_probabilities(logits).argmax(-1)
        return F.one_hot(values, self.categorical_size).to(logits.dtype).flatten(1)

    def sample(self, num_samples: int, component=None, *, generator=None) -> torch.Tensor:
        """One-hot z ~ p(z|c) with c ~ p(c) or fixed: (num_samples, G * d * V)."""
        indices = self.component_indices(num_samples, component, generator=generator)
        groups = torch.arange(self.num_groups, device=indices.device)
        probs = self.log_probabilities(self.logits[groups, indices]).exp()  # (n, G, d, V)
        values = torch.multinomial(probs.flatten(0, -2), 1, generator=generator).view(probs.shape[:-1])
        return F.one_hot(values, self.categorical_size).to(probs.dtype).flatten(1)

    def component_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_g | c_g = k) of a one-hot z for every group and component: (B, G * d * V) -> (B, G, K)."""
        return torch.einsum("bgdv,gkdv->bgk", self._grouped(z), self.log_probabilities(self.logits).to(z.dtype))


PRIOR_CLASSES = {"gaussian": GaussianMixturePrior, "categorical": CategoricalMixturePrior}

__all__ = ["CategoricalMixturePrior", "ExponentialFamilyMixture", "GaussianMixturePrior", "PRIOR_CLASSES",
           "categorical_kl", "gaussian_kl"]
