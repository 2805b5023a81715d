"""The mixture prior against torch.distributions and the paper's identities, in float64."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from modeling_demvae.priors import GaussianMixturePrior, checked_components

G, K, D, B = 3, 4, 2, 5


@pytest.fixture
def prior():
    torch.manual_seed(0)
    prior = GaussianMixturePrior(num_groups=G, num_components=K, latent_size=D).double()
    with torch.no_grad():
        prior.means.normal_()
        prior.log_variances.uniform_(-1.0, 1.0)
    return prior


@pytest.fixture
def posterior():
    torch.manual_seed(1)
    mean = torch.randn(B, G * D, dtype=torch.float64)
    logvar = torch.randn(B, G * D, dtype=torch.float64) * 0.5
    probs = torch.softmax(torch.randn(B, G, K, dtype=torch.float64) * 2, -1)
    return mean, logvar, probs


def q_normal(mean, logvar):
    return Normal(mean.view(B, G, 1, D), (0.5 * logvar.view(B, G, 1, D)).exp())


def test_component_kl_matches_torch_distributions(prior, posterior):
    mean, logvar, _ = posterior
    expected = kl_divergence(q_normal(mean, logvar), Normal(prior.means, (0.5 * prior.log_variances).exp())).sum(-1)
    torch.testing.assert_close(prior.component_kl(mean, logvar), expected)


def test_zkl_is_kl_to_the_precision_weighted_gaussian(prior, posterior):
    mean, logvar, probs = posterior
    precision = torch.einsum("bgk,gkd->bgd", probs, torch.exp(-prior.log_variances))
    averaged_mean = torch.einsum("bgk,gkd->bgd", probs, prior.means * torch.exp(-prior.log_variances)) / precision
    expected = kl_divergence(
        Normal(mean.view(B, G, D), (0.5 * logvar.view(B, G, D)).exp()), Normal(averaged_mean, precision.rsqrt())
    ).sum(dim=(1, 2))
    torch.testing.assert_close(prior.kl_to_averaged(mean, logvar, probs), expected)


def test_dispersion_identity(prior, posterior):
    """sum_c q(c|x) KL(q(z|x) || p(z|c)) = zkl + L_d (spec section 3)."""
    mean, logvar, probs = posterior
    left = (probs * prior.component_kl(mean, logvar)).sum(dim=(1, 2))
    right = prior.kl_to_averaged(mean, logvar, probs) + prior.dispersion(probs)
    torch.testing.assert_close(left, right)


def test_log_partition_is_the_gaussian_normalizer(prior):
    variance = prior.log_variances.exp()
    expected = prior.means**2 / (2 * variance) + 0.5 * torch.log(variance)
    torch.testing.assert_close(prior.log_partition(prior.natural_parameters()), expected)


def test_dispersion_is_nonnegative_and_zero_for_equal_components(prior, posterior):
    _, _, probs = posterior
    assert (prior.dispersion(probs) > 0).all()
    with torch.no_grad():
        prior.means.copy_(prior.means[:, :1].expand_as(prior.means))
        prior.log_variances.copy_(prior.log_variances[:, :1].expand_as(prior.log_variances))
    torch.testing.assert_close(prior.dispersion(probs), torch.zeros(B, dtype=torch.float64), atol=1e-12, rtol=0)
    # one-hot q(c|x) gives no dispersion whatever the components
    one_hot = torch.nn.functional.one_hot(torch.randint(K, (B, G)), K).double()
    prior.means.data.normal_()
    torch.testing.assert_close(prior.dispersion(one_hot), torch.zeros(B, dtype=torch.float64), atol=1e-12, rtol=0)


def test_log_prob_matches_mixture_same_family(prior):
    z = torch.randn(7, G * D, dtype=torch.float64)
    per_group = MixtureSameFamily(
        Categorical(logits=torch.zeros(G, K, dtype=torch.float64)),
        Independent(Normal(prior.means, (0.5 * prior.log_variances).exp()), 1),
    )
    expected = per_group.log_prob(z.view(7, G, D)).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_sampling_from_one_component(prior):
    generator = torch.Generator().manual_seed(0)
    component = [2, 0, 3]
    z = prior.sample(20_000, component, generator=generator).view(-1, G, D)
    groups = torch.arange(G)
    expected_mean = prior.means[groups, torch.tensor(component)]
    expected_std = (0.5 * prior.log_variances[groups, torch.tensor(component)]).exp()
    torch.testing.assert_close(z.mean(0), expected_mean, atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), expected_std, atol=0.05, rtol=0.05)


def test_sampling_the_mixture_visits_every_component(prior):
    generator = torch.Generator().manual_seed(0)
    indices = prior.component_indices(4000, generator=generator)
    counts = torch.stack([torch.bincount(indices[:, g], minlength=K) for g in range(G)])
    assert (counts > 4000 / K * 0.8).all()


def test_checked_components_errors():
    with pytest.raises(ValueError, match="one index per group"):
        checked_components(1, num_groups=3, num_components=4, num_samples=2)
    with pytest.raises(ValueError, match="one index per group"):
        checked_components([1, 2], num_groups=3, num_components=4, num_samples=2)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        checked_components([1, 2, 4], num_groups=3, num_components=4, num_samples=2)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        checked_components([-1, 2, 3], num_groups=3, num_components=4, num_samples=2)
    assert checked_components(3, num_groups=1, num_components=4, num_samples=2).tolist() == [[3], [3]]


def test_standard_normal_prior_is_not_learnable():
    prior = GaussianMixturePrior(num_groups=1, num_components=1, latent_size=6, learnable=False)
    assert list(prior.parameters()) == []
    mean, logvar = torch.randn(2, 6), torch.randn(2, 6)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(prior.kl_to_averaged(mean, logvar, torch.ones(2, 1, 1)), expected)
    assert math.isclose(prior.dispersion(torch.ones(2, 1, 1)).abs().max().item(), 0.0, abs_tol=1e-6)
