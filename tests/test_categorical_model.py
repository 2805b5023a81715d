"""The categorical family (DCM-VAE) through the model: its latent, its loss terms against torch.distributions, the
importance-weighted likelihood against exact enumeration, saving, generation and training, in float64."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_batch, tiny_config, tiny_model, tiny_trainer
from demvae.model_card import render_model_card
from torch.distributions import Categorical, kl_divergence

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer, metrics
from modeling_demvae.metrics import sentence_log_likelihoods
from modeling_demvae.priors import CategoricalMixturePrior

CATEGORICAL = {"prior_family": "categorical", "categorical_size": 3}


def categorical_model(**overrides) -> DEMVAEForGeneration:
    return tiny_model(**{**CATEGORICAL, **overrides}).double()


def full_logits(eta: torch.Tensor) -> torch.Tensor:
    return torch.cat((eta, torch.zeros_like(eta[..., :1])), -1)


def test_config_layout_and_names():
    config = tiny_config(**CATEGORICAL, num_groups=2, latent_size=4)
    assert config.decoder_latent_size == 2 * 4 * 3 and config.continuous_size == 0
    assert config.has_categorical_latent and not config.has_continuous_latent
    names = {(beta, mi): DEMVAEConfig(**CATEGORICAL, dispersion_weight=beta, use_mutual_information=mi).paper_name
             for beta in (0.0, 0.4) for mi in (False, True)}
    assert names == {(0.0, False): "CM-VAE", (0.0, True): "CM-VAE + MI", (0.4, False): "DCM-VAE",
                     (0.4, True): "DCM-VAE + MI"}


@pytest.mark.parametrize("overrides, message", [
    ({"categorical_size": 1}, r"categorical_size \(V\) must be an integer >= 2, got 1"),
    ({"variant": "vae"}, r"prior_family='categorical' is a mixture prior: it needs variant='dem', got variant='vae'"),
    ({"prior_family": "poisson"}, r"prior_family must be one of \('gaussian', 'categorical'\), got 'poisson'"),
])
def test_bad_categorical_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        DEMVAEConfig(**{**CATEGORICAL, **overrides})


@pytest.mark.parametrize("training, sample, hard", [(True, True, False), (True, True, True), (False, True, True),
                                                   (False, False, True)])
def test_the_decoder_sees_z_one_hot_relaxed_only_in_training_with_the_relaxed_estimator(training, sample, hard):
    """Training: softmax((logits + g) / tau), or its one-hot argmax with the straight-through estimator (the default,
    as the reference BMVAE); evaluation: the Gumbel-max one-hot; sample=False: the argmax; laid out (G, d, V) and
    flattened."""
    model = categorical_model(gumbel_temperature=0.5, dropout=0.0, gumbel_hard=hard).train(training)
    input_ids, mask = tiny_batch()
    posterior = model.encode(input_ids, mask)
    assert posterior.latent_logits.shape == (3, 3, 2, 3) and posterior.mean is None
    noise = model.posterior_noise(3, generator=torch.Generator().manual_seed(0))
    assert noise["gumbel"].shape == (3, 1, 3, 2, 3)
    latent = model.posterior_latent(posterior, sample=sample, noise=noise)
    perturbed = posterior.latent_logits + (noise["gumbel"][:, 0].double() if sample else 0.0)
    relaxed = training and not hard
    expected = (perturbed / 0.5).softmax(-1) if relaxed else F.one_hot(perturbed.argmax(-1), 3).double()
    torch.testing.assert_close(latent, expected.flatten(1))
    if not relaxed:  # exactly one-hot, not to rounding
        assert torch.equal(latent, expected.flatten(1))


def test_the_straight_through_gradient_is_the_relaxed_sample_s_and_torch_s_hard_gumbel_softmax():
    """Backward, the one-hot sample carries the relaxed sample's gradient: d/dl sum(w * softmax((l + g) / tau)) =
    s * (w - sum(w * s)) / tau, computed here by hand; and the whole draw equals torch's
    F.gumbel_softmax(hard=True) from the same random state."""
    tau, weights = 0.5, torch.randn(3, 3 * 2 * 3, dtype=torch.float64)
    gradients, latents = {}, {}
    for hard in (True, False):
        model = categorical_model(gumbel_temperature=tau, dropout=0.0, gumbel_hard=hard).train()
        posterior = model.encode(*tiny_batch())
        logits = posterior.latent_logits.detach().requires_grad_()
        noise = model.posterior_noise(3, generator=torch.Generator().manual_seed(1))
        latent = model.posterior_latent(type(posterior)(**{**posterior, "latent_logits": logits}), noise=noise)
        (latent * weights).sum().backward()
        gradients[hard], latents[hard] = logits.grad, latent
    relaxed = ((logits.detach() + noise["gumbel"][:, 0].double()) / tau).softmax(-1)
    w = weights.view_as(relaxed)
    by_hand = relaxed * (w - (w * relaxed).sum(-1, keepdim=True)) / tau
    torch.testing.assert_close(gradients[True], by_hand)
    torch.testing.assert_close(gradients[False], by_hand)
    assert set(latents[True].unique().tolist()) == {0.0, 1.0} and not torch.equal(latents[True], latents[False])

    model = categorical_model(gumbel_temperature=tau, dropout=0.0).train()
    logits = model.encode(*tiny_batch()).latent_logits
    torch.manual_seed(3)
    ours = model.posterior_latent(model.encode(*tiny_batch()))
    torch.manual_seed(3)
    torch.testing.assert_close(ours, F.gumbel_softmax(logits, tau=tau, hard=True).flatten(1))


def test_the_estimator_round_trips_through_save_load_and_remote_code(tmp_path):
    model = categorical_model(gumbel_hard=False).float()
    model.save_pretrained(tmp_path)
    assert DEMVAEForGeneration.from_pretrained(tmp_path).config.gumbel_hard is False
    assert '"gumbel_hard": false' in (tmp_path / "config.json").read_text()
    assert DEMVAEConfig().gumbel_hard is True  # the reference BMVAE's estimator by default


def test_loss_terms_against_torch_distributions():
    """zkl = KL(q(z|x) || Cat([eta_bar, 0])), and ELBO = -(nll + sum_c q KL(q(z|x)||p(z|c)) + KL(q(c|x)||U))."""
    model = categorical_model().eval()
    input_ids, mask = tiny_batch()
    out = model(input_ids, mask)
    posterior = model.encode(input_ids, mask)
    probs, q_z = posterior.component_probs, Categorical(logits=posterior.latent_logits)  # (B, G, K), (B, G, d)
    averaged = Categorical(logits=full_logits(torch.einsum("bgk,gkdv->bgdv", probs, model.prior.logits)))
    torch.testing.assert_close(out.zkl, kl_divergence(q_z, averaged).sum(dim=(1, 2)).mean())
    components = Categorical(logits=full_logits(model.prior.logits))  # (G, K, d)
    component_kl = kl_divergence(Categorical(logits=posterior.latent_logits.unsqueeze(2)), components).sum(-1)
    uniform = Categorical(probs=torch.full_like(probs, 1 / probs.shape[-1]))
    ckl = kl_divergence(Categorical(probs=probs), uniform).sum(-1)
    torch.testing.assert_close(out.elbo + out.nll, -((probs * component_kl).sum(dim=(1, 2)) + ckl).mean())
    torch.testing.assert_close(out.zkl + out.dispersion, (probs * component_kl).sum(dim=(1, 2)).mean())
    assert out.dispersion > 0


# ----- exact enumeration on a tiny model -----


def exact_log_likelihood_and_elbo(model, input_ids, mask):
    """log p(x) = logsumexp_z [log p(x|z) + log p(z)] over all V^d values of z (G = 1), p(z) = (1/K) sum_c p(z|c);
    and ELBO = sum_{z,c} q(z|x) q(c|x) [log p(x, z, c) - log q(z, c|x)], both by enumeration, with the relative
    variance of the importance weight p(x, z) / q(z|x) under q (what bounds the estimate's error)."""
    config = model.config
    values = list(itertools.product(range(config.categorical_size), repeat=config.latent_size))
    z = torch.stack([F.one_hot(torch.tensor(v), config.categorical_size).double().flatten() for v in values])
    log_p_z_given_c = torch.stack([  # (Z, K)
        sum(F.log_softmax(full_logits(model.prior.logits[0, c, j]), -1)[v[j]] for j in range(config.latent_size))
        for v in values for c in range(config.num_components)]).view(len(values), config.num_components)
    posterior = model.encode(input_ids, mask)
    log_q_z = torch.stack([  # (B, Z)
        sum(F.log_softmax(posterior.latent_logits[:, 0, j], -1)[:, v[j]] for j in range(config.latent_size))
        for v in values], dim=1)
    log_q_c = posterior.component_probs[:, 0].log()  # (B, K)
    log_px_given_z = []
    for row, row_mask in zip(input_ids, mask):
        tokens = row[row_mask.bool()].unsqueeze(0).expand(len(values), -1)
        log_probs = model(input_ids=tokens, latent=z).logits[:, :-1].log_softmax(-1)
        log_px_given_z.append(log_probs.gather(2, tokens[:, 1:, None]).squeeze(-1).sum(-1))
    log_px_given_z = torch.stack(log_px_given_z)  # (B, Z)
    log_p_z = torch.logsumexp(log_p_z_given_c, -1) - math.log(config.num_components)
    log_px = torch.logsumexp(log_px_given_z + log_p_z, -1)
    joint = log_px_given_z[:, :, None] + log_p_z_given_c - math.log(config.num_components)  # (B, Z, K)
    q = (log_q_z[:, :, None] + log_q_c[:, None]).exp()
    elbo = (q * (joint - log_q_z[:, :, None] - log_q_c[:, None])).sum(dim=(1, 2))
    log_w = log_px_given_z + log_p_z - log_q_z
    relative_variance = (log_q_z + 2 * (log_w - log_px[:, None])).exp().sum(-1) - 1
    variance_of_nll_term = (log_q_z.exp() * log_px_given_z**2).sum(-1) - ((log_q_z.exp() * log_px_given_z).sum(-1))**2
    return log_px, elbo, relative_variance, variance_of_nll_term


def test_importance_weighted_nll_approaches_the_enumerated_likelihood():
    """The estimate's error within 5 standard errors, the delta method's sqrt(Var_q(w) / S) / p(x); ELBO <= log p(x),
    and the module's ELBO (a sample mean of log p(x|z) minus the KL terms) within 5 standard errors of the exact one."""
    model = categorical_model(num_groups=1, num_components=2, latent_size=2, initializer_range=0.5).eval()
    input_ids, mask = tiny_batch()
    with torch.no_grad():
        log_px, elbo, relative_variance, nll_term_variance = exact_log_likelihood_and_elbo(model, input_ids, mask)
        samples = 4000
        sentences = [row[row_mask.bool()].tolist() for row, row_mask in zip(input_ids, mask)]
        estimate = sentence_log_likelihoods(model, sentences, num_samples=samples, seed=3)
    assert (elbo < log_px - 1e-3).all()
    error = (estimate["log_likelihood"] - log_px).abs()
    assert (error <= 5 * (relative_variance / samples).sqrt() + 1e-4).all(), (error, relative_variance)
    assert (relative_variance > 1e-3).all()  # q(z|x) is not the true posterior: the check is not trivial
    error = (estimate["elbo"] - elbo).abs()
    assert (error <= 5 * (nll_term_variance / samples).sqrt() + 1e-4).all(), (error, nll_term_variance)


# ----- generation, saving, training -----


def test_generate_from_one_component_and_reload_it(tmp_path):
    model = categorical_model(num_groups=1).float().eval()
    latent = model.sample_prior(4, component=2, generator=torch.Generator().manual_seed(0)).view(4, 1, 2, 3)
    assert (latent.sum(-1) == 1).all()
    torch.manual_seed(0)
    generated = model.generate(component=2, num_samples=4, max_new_tokens=5)
    model.save_pretrained(tmp_path)
    loaded = DEMVAEForGeneration.from_pretrained(tmp_path)
    assert torch.equal(loaded.prior.logits, model.prior.logits)
    torch.manual_seed(0)
    assert torch.equal(loaded.generate(component=2, num_samples=4, max_new_tokens=5), generated)
    with pytest.raises(ValueError, match=r"component indices must lie in \[0, 4\)"):
        model.generate(component=4, num_samples=2)


def test_training_lowers_the_loss_and_beta_keeps_the_components_apart(tmp_path):
    """A tiny CM-VAE (beta = 0) and DCM-VAE (beta = 0.8), same seed and data, on the synthetic corpus: the validation
    loss falls for both, and with beta = 0.8 (L_d trained at 0.2 of its ELBO weight) the dispersion ends larger."""
    after = {}
    for beta in (0.0, 0.8):
        settings = {**CATEGORICAL, "categorical_size": 4, "latent_size": 3, "dispersion_weight": beta,
                    "kl_annealing": False, "dropout": 0.0}
        trainer, _ = tiny_trainer(tmp_path / str(beta), settings, max_steps=60, eval_every=60, learning_rate=0.01,
                                  mixed_precision="no")
        before = trainer.evaluate()["loss"]
        trainer.train()
        after[beta] = trainer.evaluate()
        assert after[beta]["loss"] < before - 5.0, (beta, before, after[beta])
    assert after[0.8]["dispersion"] > 1.2 * after[0.0]["dispersion"], after


def test_model_card_names_the_family_its_layout_and_its_distance_unit():
    tokenizer = build_tokenizer(["the cat sat on the mat", "a dog ran home"])
    model = categorical_model(num_groups=1, vocab_size=len(tokenizer)).float().eval()
    evaluation = {"component_spread": [0.25], "component_distance": "Jensen-Shannon bits per variable",
                  "settings": {"dataset": "synthetic"}}
    text = render_model_card(model, tokenizer, repo_id="user/dcm", evaluations=[evaluation]).text
    assert "DCM-VAE + MI" in text and "products of categoricals" in text
    assert "| Categorical variables per group d | 2 |" in text and "| Values per categorical variable V | 3 |" in text
    assert "Component spread (Jensen-Shannon bits per variable), per group | [0.25" in text
    assert "model.generate(component=k, num_samples=3)" in text


def test_categorical_component_distance_is_jensen_shannon_in_bits_by_hand():
    """Components [1, 0], [0, 1], [1/2, 1/2] of one binary variable: JS = 1 bit for the disjoint pair, and
    H(M) - (H(p) + H(q)) / 2 = H(3/4, 1/4) - 1/2 bits between [1/2, 1/2] and either other one."""
    prior = CategoricalMixturePrior(num_groups=1, num_components=3, latent_size=1, categorical_size=2).double()
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([50.0, -50.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1))
    half = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) - 0.5
    expected = torch.tensor([[0.0, 1.0, half], [1.0, 0.0, half], [half, half, 0.0]], dtype=torch.float64)
    distances = metrics.component_distances(prior)
    torch.testing.assert_close(distances[0], expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(metrics.spread_of(distances), torch.tensor([(1 + 2 * half) / 3], dtype=torch.float64))
    torch.testing.assert_close(metrics.separation_of(distances), torch.tensor([half], dtype=torch.float64))
