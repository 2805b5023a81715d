"""The importance-weighted NLL against the exact marginal likelihood, by enumeration or quadrature."""

import math

import pytest
import torch
from conftest import tiny_batch, tiny_model

from modeling_demvae.metrics import importance_weighted_nll, sentence_log_likelihoods

SENTENCES = [[1, 5, 6, 7, 8, 2], [1, 9, 10, 2], [1, 11, 2]]
GRID = torch.linspace(-14.0, 14.0, 4001, dtype=torch.float64)


def log_px_given_latent(model, sentence, latent):
    """log p(x|latent) for one sentence and many latents, from the logits by hand (no cross_entropy)."""
    ids = torch.tensor([sentence]).expand(latent.shape[0], -1)
    with torch.no_grad():
        log_probs = model(input_ids=ids, latent=latent.float()).logits.double().log_softmax(-1)
    return log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1).sum(-1)


def grid_log_integral(log_values):
    """log of the integral over GRID of exp(log_values), by the trapezoid rule in log space."""
    step = (GRID[1] - GRID[0]).item()
    weights = torch.full_like(GRID, math.log(step))
    weights[0] = weights[-1] = math.log(step / 2)
    return torch.logsumexp(log_values + weights, 0).item()


def gaussian_mixture_log_density(z, means, variances):
    components = torch.distributions.Normal(means.double(), variances.double().sqrt())
    return torch.logsumexp(components.log_prob(z[:, None]), -1) - math.log(len(means))


def exact_log_likelihood(model, sentence):
    """log p(x) by independent computation: quadrature over a 1-d z and/or enumeration over all codes."""
    config = model.config
    codes = torch.cartesian_prod(*[torch.arange(config.num_components)] * config.num_groups).view(
        -1, config.num_groups
    )
    one_hot = torch.nn.functional.one_hot(codes, config.num_components).flatten(1).double()
    log_prior_codes = -config.num_groups * math.log(config.num_components)
    if config.variant == "discrete":
        return (torch.logsumexp(log_px_given_latent(model, sentence, one_hot), 0) + log_prior_codes).item()
    if config.variant == "dem":
        prior = model.prior
        log_pz = gaussian_mixture_log_density(GRID, prior.means[0, :, 0], prior.log_variances[0, :, 0].exp())
        return grid_log_integral(log_px_given_latent(model, sentence, GRID[:, None]) + log_pz)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(GRID)
    if config.variant == "vae":
        return grid_log_integral(log_px_given_latent(model, sentence, GRID[:, None]) + log_pz)
    per_code = [  # semi: z and codes side by side in the decoder latent
        grid_log_integral(
            log_px_given_latent(model, sentence, torch.cat((GRID[:, None], code.expand(len(GRID), -1)), 1)) + log_pz
        )
        for code in one_hot
    ]
    return torch.logsumexp(torch.tensor(per_code), 0).item() + log_prior_codes


def sensitive_model(variant, **overrides):
    """A tiny model whose decoder depends strongly on its latent, with separated mixture components, and a wide
    q(z|x) (std 3) so that a few thousand importance samples pin log p(x) down to a few hundredths."""
    settings = dict(variant=variant, num_groups=1, num_components=3, latent_size=1, dropout=0.0)
    settings.update(overrides)
    model = tiny_model(seed=1, **settings).eval()
    with torch.no_grad():
        if model.decoder.latent_to_hidden is not None:
            model.decoder.latent_to_hidden.weight.mul_(8.0)
        if model.config.has_continuous_latent:
            model.posterior.logvar.bias.fill_(math.log(9.0))
        if variant == "dem":
            model.prior.means.copy_(torch.tensor([-2.5, 0.0, 2.5]).view(1, 3, 1))
            model.prior.log_variances.fill_(math.log(0.5))
    return model


@pytest.mark.parametrize(
    "variant,overrides",
    [("dem", {}), ("vae", {}), ("semi", {}), ("discrete", {"num_groups": 2})],
)
def test_importance_weighted_estimate_matches_exact_marginal(variant, overrides):
    model = sensitive_model(variant, **overrides)
    estimate = sentence_log_likelihoods(model, SENTENCES, num_samples=10000, seed=0)["log_likelihood"]
    exact = torch.tensor([exact_log_likelihood(model, s) for s in SENTENCES], dtype=torch.float64)
    assert estimate.dtype == torch.float64
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0)
    # few samples: Jensen makes the estimate a lower bound on average, and it still lands near the exact value
    few = sentence_log_likelihoods(model, SENTENCES, num_samples=5, seed=0)["log_likelihood"]
    assert (few - exact).abs().max() < 1.5


def test_rnnlm_log_likelihood_is_exact_and_matches_forward():
    model = tiny_model(variant="rnnlm", dropout=0.0).eval()
    result = sentence_log_likelihoods(model, SENTENCES, num_samples=7)
    for sentence, log_px in zip(SENTENCES, result["log_likelihood"]):
        with torch.no_grad():
            nll = model(input_ids=torch.tensor([sentence])).nll.item()
        assert log_px.item() == pytest.approx(-nll, abs=1e-4)
    assert torch.equal(result["log_likelihood"], result["elbo"])


def test_never_underflows_even_where_exp_is_zero_in_float64():
    """A sentence with log p(x) far below -745 (exp underflows to 0) is estimated, not dropped."""
    model = sensitive_model("discrete", num_groups=2, max_sentence_length=64)
    with torch.no_grad():
        model.lm_head.weight.mul_(150.0)  # confident and wrong: a tiny likelihood
    long_sentence = [1] + [4 + (7 * i) % 30 for i in range(60)] + [2]
    exact = exact_log_likelihood(model, long_sentence)
    assert math.exp(exact) == 0.0
    estimate = sentence_log_likelihoods(model, [long_sentence, SENTENCES[1]], num_samples=4000)
    assert torch.isfinite(estimate["log_likelihood"]).all()
    assert estimate["log_likelihood"][0].item() == pytest.approx(exact, abs=0.15)


def test_perplexity_beyond_float_range_is_infinite_not_an_error():
    model = sensitive_model("dem")
    with torch.no_grad():
        model.lm_head.weight.mul_(5000.0)  # over 709 nats per token: exp overflows
    summary = importance_weighted_nll(model, [SENTENCES[1]], num_samples=2)
    assert math.isfinite(summary["nll"]) and summary["nll"] > 709 * (len(SENTENCES[1]) - 1)
    assert summary["ppl"] == math.inf


def test_elbo_matches_forward_elbo_and_bounds_log_likelihood():
    model = sensitive_model("dem", num_groups=2)
    input_ids, attention_mask = tiny_batch()
    sentences = [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
    result = sentence_log_likelihoods(model, sentences, num_samples=4000, seed=3)
    model.config.num_posterior_samples = 4000
    with torch.random.fork_rng():
        torch.manual_seed(3)
        with torch.no_grad():
            forward_elbo = model(input_ids=input_ids, attention_mask=attention_mask).elbo.item()
    assert result["elbo"].mean().item() == pytest.approx(forward_elbo, abs=0.05)
    assert (result["elbo"] <= result["log_likelihood"] + 1e-6).all()


def test_summary_order_batching_and_determinism():
    model = sensitive_model("dem")
    one_per_call = sentence_log_likelihoods(model, SENTENCES, num_samples=400, max_tokens=300, seed=5)
    batched = sentence_log_likelihoods(model, SENTENCES, num_samples=400, max_tokens=10**6, seed=5)
    torch.testing.assert_close(one_per_call["log_likelihood"], batched["log_likelihood"], atol=0.2, rtol=0)
    again = sentence_log_likelihoods(model, SENTENCES, num_samples=400, max_tokens=300, seed=5)
    assert torch.equal(one_per_call["log_likelihood"], again["log_likelihood"])
    summary = importance_weighted_nll(model, SENTENCES, num_samples=400, max_tokens=300, seed=5)
    nll = -one_per_call["log_likelihood"]
    assert summary["nll"] == pytest.approx(nll.mean().item())
    assert summary["ppl"] == pytest.approx(math.exp(nll.sum().item() / (5 + 3 + 2)))
    assert summary["num_sentences"] == 3 and summary["nll_samples"] == 400


def test_bad_input_is_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="num_samples"):
        sentence_log_likelihoods(model, SENTENCES, num_samples=0)
    with pytest.raises(ValueError, match="sentence 1"):
        sentence_log_likelihoods(model, [[1, 5, 2], [1]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_losses_scored_in_blocks_equal_one_cross_entropy_and_training_keeps_one_block(dtype, monkeypatch):
    """Scoring on a CPU goes a few rows at a time: bit for bit the numbers of one cross-entropy over all rows,
    padding ignored; under autograd all rows go at once, with the same gradient."""
    from modeling_demvae.metrics import likelihood

    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(5, 7, 11, generator=generator)).to(dtype)
    targets = torch.randint(0, 11, (5, 7), generator=generator)
    targets[1, 4:] = targets[3, 2:] = likelihood.IGNORE_INDEX
    whole = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                              ignore_index=likelihood.IGNORE_INDEX, reduction="none").view(5, 7)
    for tokens, rows in ((7, 1), (16, 2), (1000, 142)):
        monkeypatch.setattr(likelihood, "CPU_LOSS_TOKENS", tokens)
        assert likelihood.loss_rows(logits) == rows
        assert torch.equal(likelihood.token_log_losses(logits, targets), whole)
    assert torch.equal(whole[targets == likelihood.IGNORE_INDEX], torch.zeros(8))
    assert likelihood.token_log_losses(logits[:0], targets[:0]).shape == (0, 7)

    monkeypatch.setattr(likelihood, "CPU_LOSS_TOKENS", 7)
    trained = logits.float().requires_grad_()
    assert likelihood.loss_rows(trained) == 5
    likelihood.token_log_losses(trained, targets).sum().backward()
    reference = logits.float().requires_grad_()
    torch.nn.functional.cross_entropy(reference.flatten(0, 1), targets.flatten(), ignore_index=likelihood.IGNORE_INDEX,
                                      reduction="sum").backward()
    assert torch.allclose(trained.grad, reference.grad, atol=1e-6)
