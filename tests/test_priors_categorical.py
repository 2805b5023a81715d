"""The categorical mixture prior (DCM-VAE) against torch.distributions, explicit enumeration and the paper's
identities, in float64."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence

from modeling_demvae.priors import CategoricalMixturePrior

G, K, D, V, B = 2, 3, 2, 4, 5


@pytest.fixture
def prior():
    torch.manual_seed(0)
    prior = CategoricalMixturePrior(num_groups=G, num_components=K, latent_size=D, categorical_size=V).double()
    with torch.no_grad():
        prior.logits.normal_(0.0, 1.5)
    return prior


@pytest.fixture
def posterior():
    torch.manual_seed(1)
    latent_logits = torch.randn(B, G, D, V, dtype=torch.float64) * 2
    probs = torch.softmax(torch.randn(B, G, K, dtype=torch.float64) * 2, -1)
    return latent_logits, probs


def component_distributions(prior) -> Categorical:
    """p(z | c) per group, component and variable, from the full logits [eta, 0]: batch shape (G, K, d)."""
    return Categorical(logits=torch.cat((prior.logits, torch.zeros(G, K, D, 1, dtype=torch.float64)), -1))


def test_component_kl_matches_torch_distributions(prior, posterior):
    latent_logits, _ = posterior
    q = Categorical(logits=latent_logits.unsqueeze(2))  # (B, G, 1, d)
    expected = kl_divergence(q, component_distributions(prior)).sum(-1)
    torch.testing.assert_close(prior.component_kl(latent_logits), expected)


def test_zkl_is_kl_to_the_categorical_at_the_averaged_logits(prior, posterior):
    latent_logits, probs = posterior
    averaged_eta = (probs[:, :, :, None, None] * prior.logits).sum(2)  # sum_c q(c|x) eta_c: (B, G, d, V - 1)
    averaged = Categorical(logits=torch.cat((averaged_eta, torch.zeros(B, G, D, 1, dtype=torch.float64)), -1))
    expected = kl_divergence(Categorical(logits=latent_logits), averaged).sum(dim=(1, 2))
    torch.testing.assert_close(prior.kl_to_averaged(latent_logits, probs), expected)


def test_dispersion_identity(prior, posterior):
    """sum_c q(c|x) KL(q(z|x) || p(z|c)) = zkl + L_d (spec section 8), the left side from torch.distributions."""
    latent_logits, probs = posterior
    component_kl = kl_divergence(Categorical(logits=latent_logits.unsqueeze(2)), component_distributions(prior))
    left = (probs * component_kl.sum(-1)).sum(dim=(1, 2))
    right = prior.kl_to_averaged(latent_logits, probs) + prior.dispersion(probs)
    torch.testing.assert_close(left, right, rtol=1e-12, atol=1e-12)


def test_dispersion_is_jensen_gap_nonnegative_and_zero_for_equal_components(prior, posterior):
    _, probs = posterior
    dispersion = prior.dispersion(probs)
    direct_log_partition = torch.log(1 + prior.logits.exp().sum(-1))  # (G, K, d)
    averaged_eta = (probs[:, :, :, None, None] * prior.logits).sum(2)
    expected = (torch.einsum("bgk,gkd->b", probs, direct_log_partition)
                - torch.log(1 + averaged_eta.exp().sum(-1)).sum(dim=(1, 2)))
    torch.testing.assert_close(dispersion, expected)
    assert (dispersion > 0).all()
    one_hot = F.one_hot(torch.randint(K, (B, G)), K).double()  # one component per sentence: no Jensen gap
    torch.testing.assert_close(prior.dispersion(one_hot), torch.zeros(B, dtype=torch.float64), atol=1e-12, rtol=0)
    with torch.no_grad():
        prior.logits.copy_(prior.logits[:, :1].expand_as(prior.logits))
    torch.testing.assert_close(prior.dispersion(probs), torch.zeros(B, dtype=torch.float64), atol=1e-12, rtol=0)


def test_log_partition_and_its_gradient_is_the_mean(prior):
    """A(eta) = log(1 + sum exp eta), stable for large eta; dA/deta = E[T(z)], the probabilities of the first
    V - 1 values (the exponential family's mean parameters)."""
    eta = prior.logits.detach().clone().requires_grad_(True)
    log_partition = prior.log_partition(eta)
    torch.testing.assert_close(log_partition, torch.log(1 + eta.exp().sum(-1)))
    (gradient,) = torch.autograd.grad(log_partition.sum(), eta)
    torch.testing.assert_close(gradient, component_distributions(prior).probs[..., :-1])
    large = torch.tensor([[1000.0, 0.0, -1000.0]], dtype=torch.float64)
    torch.testing.assert_close(prior.log_partition(large), torch.tensor([1000.0], dtype=torch.float64))


def test_log_prob_matches_an_explicit_enumeration_of_the_mixture(prior):
    """p(z) = prod_g (1/K) sum_k prod_j p(z_gj | k), for every one-hot z of a one-group prior, summing to 1."""
    one_group = CategoricalMixturePrior(num_groups=1, num_components=K, latent_size=D, categorical_size=V).double()
    with torch.no_grad():
        one_group.logits.copy_(prior.logits[:1])
    probs = component_distributions(prior).probs[0]  # (K, d, V)
    values = list(itertools.product(range(V), repeat=D))
    z = torch.stack([F.one_hot(torch.tensor(v), V).double().flatten() for v in values])
    expected = torch.tensor([math.log(sum(math.prod(probs[k, j, v[j]].item() for j in range(D)) for k in range(K)) / K)
                             for v in values], dtype=torch.float64)
    torch.testing.assert_close(one_group.log_prob(z), expected)
    torch.testing.assert_close(one_group.log_prob(z).exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    # and the groups multiply
    two_groups = z[torch.randint(len(values), (7, G))].flatten(1)
    first_z, second_z = two_groups.view(7, G, D * V).unbind(1)
    second = CategoricalMixturePrior(num_groups=1, num_components=K, latent_size=D, categorical_size=V).double()
    with torch.no_grad():
        second.logits.copy_(prior.logits[1:])
    torch.testing.assert_close(prior.log_prob(two_groups), one_group.log_prob(first_z) + second.log_prob(second_z))


def test_sampling_one_component_draws_its_probabilities(prior):
    """Each value's frequency within 5 standard errors of its probability (n draws: sqrt(p (1 - p) / n))."""
    n, component = 40_000, [2, 0]
    z = prior.sample(n, component, generator=torch.Generator().manual_seed(0)).view(n, G, D, V)
    assert ((z == 0) | (z == 1)).all() and (z.sum(-1) == 1).all()
    probs = component_distributions(prior).probs[torch.arange(G), torch.tensor(component)]  # (G, d, V)
    tolerance = 5 * (probs * (1 - probs) / n).sqrt()
    assert ((z.mean(0) - probs).abs() <= tolerance).all(), (z.mean(0) - probs).abs().max()


def test_sampling_the_mixture_draws_the_mixture_marginal(prior):
    n = 40_000
    z = prior.sample(n, generator=torch.Generator().manual_seed(1)).view(n, G, D, V)
    marginal = component_distributions(prior).probs.mean(1)  # (G, d, V): (1/K) sum_k p(z_gj | k)
    tolerance = 5 * (marginal * (1 - marginal) / n).sqrt()
    assert ((z.mean(0) - marginal).abs() <= tolerance).all()
    # the same test can fail: a single component's draws are not the mixture's
    single = prior.sample(n, [0, 0], generator=torch.Generator().manual_seed(1)).view(n, G, D, V)
    assert ((single.mean(0) - marginal).abs() > tolerance).any()
