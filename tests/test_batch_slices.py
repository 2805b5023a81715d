"""A batch cut into slices (processes, accumulation micro-batches) trains as the whole batch: q_bar(c) passed in as
`aggregate_component_probs`, and the sampling noise passed in as `posterior_noise`, in float64."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model

SLICED_MODELS = {  # the models with q(c|x), hence with q_bar(c); the categorical family's z has Gumbel noise
    "dem": {}, "discrete": {"variant": "discrete"}, "semi": {"variant": "semi"},
    "dem-categorical": {"prior_family": "categorical", "categorical_size": 3},
}


def four_sentences():
    input_ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0], [1, 11, 2, 0, 0, 0], [1, 12, 13, 14, 2, 0]])
    return input_ids, input_ids.ne(0).long()


def rows(noise: dict, start: int, stop: int) -> dict:
    return {name: value[start:stop] for name, value in noise.items()}


def gradients(model) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def whole_and_sliced(settings, *, global_statistics=True, slices=2):
    """The whole batch's loss terms and gradient, and the mean of its slices' (each slice's loss / slices). Wide
    initial weights put q(c|x) far from uniform, where q_bar's gradient is not negligible."""
    model = tiny_model(**settings, dispersion_weight=0.8, use_mutual_information=True, dropout=0.0,
                       initializer_range=1.0).double()
    model.train()
    input_ids, mask = four_sentences()
    noise = model.posterior_noise(4, generator=torch.Generator().manual_seed(1))
    whole = model(input_ids, mask, posterior_noise=noise, kl_weight=0.7)
    whole.loss.backward()
    whole_grads = gradients(model)
    with torch.no_grad():
        aggregate = model.encode(input_ids, mask).component_probs.mean(0) if global_statistics else None
    size, terms = 4 // slices, torch.zeros(4, dtype=torch.float64)
    for start in range(0, 4, size):
        part = model(input_ids[start:start + size], mask[start:start + size], kl_weight=0.7,
                     posterior_noise=rows(noise, start, start + size), aggregate_component_probs=aggregate)
        (part.loss / slices).backward()
        terms += torch.stack([part.loss, part.nll, part.agg_ckl, part.mi]).detach() / slices
    return whole, whole_grads, terms, gradients(model)


@pytest.mark.parametrize("model", sorted(SLICED_MODELS))
def test_slices_given_the_whole_batch_q_bar_have_its_loss_terms_and_gradient(model):
    whole, whole_grads, terms, sliced_grads = whole_and_sliced(SLICED_MODELS[model])
    expected = torch.stack([whole.loss, whole.nll, whole.agg_ckl, whole.mi]).detach()
    torch.testing.assert_close(terms, expected)
    assert whole_grads.keys() == sliced_grads.keys()
    for name in whole_grads:
        torch.testing.assert_close(sliced_grads[name], whole_grads[name], msg=name)


@pytest.mark.parametrize("model", sorted(SLICED_MODELS))
def test_slices_with_their_own_q_bar_train_another_objective(model):
    """The comparison above can fail: each slice's own q_bar changes agg_ckl and the gradient."""
    whole, whole_grads, terms, sliced_grads = whole_and_sliced(SLICED_MODELS[model], global_statistics=False)
    assert abs(terms[2] - whole.agg_ckl.item()) > 0.01
    logits_weight = "posterior.component_logits.2.weight"
    assert (sliced_grads[logits_weight] - whole_grads[logits_weight]).abs().max() > 0.01


def test_the_whole_batch_q_bar_enters_with_the_slice_s_gradient_only():
    """agg_ckl's gradient in one slice is F'(q_bar) d(mean of the slice's q(c|x)), F'(q_bar) = -dH/dq_bar."""
    model = tiny_model(dropout=0.0).double().train()
    input_ids, mask = four_sentences()
    with torch.no_grad():
        aggregate = model.encode(input_ids, mask).component_probs.mean(0)
    posterior = model.encode(input_ids[:2], mask[:2])
    terms = model.latent_terms(posterior, 2, aggregate)
    torch.testing.assert_close(terms["agg_ckl"], (math.log(4) + (aggregate * aggregate.log()).sum(-1)).sum())
    (dF_dq_bar,) = torch.autograd.grad(terms["agg_ckl"], posterior.component_probs, retain_graph=True)
    expected = (aggregate.log() + 1).expand(2, -1, -1) / 2  # d/dq_i of sum_k q_bar log q_bar, q_bar = mean of 2 rows
    torch.testing.assert_close(dF_dq_bar, expected)


# ----- the sampling noise -----


def test_posterior_noise_is_the_noise_of_z():
    model = tiny_model(num_posterior_samples=2).double().eval()
    input_ids, mask = four_sentences()
    noise = model.posterior_noise(4, generator=torch.Generator().manual_seed(0))
    out = model(input_ids, mask, posterior_noise=noise)
    std = (0.5 * out.posterior_logvar).exp().unsqueeze(1)
    torch.testing.assert_close(out.latent, out.posterior_mean.unsqueeze(1) + std * noise["gaussian"].double())


@pytest.mark.parametrize("training", [True, False])
def test_posterior_noise_is_the_gumbel_noise_of_the_codes(training):
    """Training: the Gumbel-softmax softmax((log q + g) / tau); evaluation: the Gumbel-max code argmax(log q + g)."""
    model = tiny_model(variant="discrete", dropout=0.0, gumbel_temperature=0.5).double().train(training)
    input_ids, mask = four_sentences()
    noise = model.posterior_noise(4, generator=torch.Generator().manual_seed(0))
    out = model(input_ids, mask, posterior_noise=noise)
    perturbed = out.component_probs.log() + noise["gumbel"][:, 0].double()
    expected = (perturbed / 0.5).softmax(-1) if training else F.one_hot(perturbed.argmax(-1), 4).double()
    torch.testing.assert_close(out.latent, expected.flatten(1))


def test_posterior_noise_draws_standard_normal_and_standard_gumbel_values():
    model = tiny_model(variant="semi", num_groups=1, num_components=2, latent_size=1)
    noise = model.posterior_noise(200_000, generator=torch.Generator().manual_seed(0))
    gaussian, gumbel = noise["gaussian"].double().flatten(), noise["gumbel"].double().flatten()
    assert abs(gaussian.mean()) < 0.01 and abs(gaussian.var() - 1) < 0.01
    euler_gamma = 0.5772156649
    assert abs(gumbel.mean() - euler_gamma) < 0.01 and abs(gumbel.var() - math.pi**2 / 6) < 0.02


def test_without_posterior_noise_the_codes_are_drawn_as_gumbel_softmax_draws_them():
    model = tiny_model(variant="discrete", dropout=0.0).double().train()
    input_ids, mask = four_sentences()
    torch.manual_seed(4)
    out = model(input_ids, mask)
    torch.manual_seed(4)
    logits = model.encode(input_ids, mask).component_logits
    torch.testing.assert_close(out.latent, F.gumbel_softmax(logits, tau=1.0).flatten(1))


def test_bad_slice_inputs_are_rejected():
    model = tiny_model()
    input_ids, mask = four_sentences()
    with pytest.raises(ValueError, match=r"posterior_noise must hold \{'gaussian': \(4, 1, 6\)\}"):
        model(input_ids, mask, posterior_noise=model.posterior_noise(3))
    with pytest.raises(ValueError, match=r"aggregate_component_probs must have shape \(3, 4\)"):
        model(input_ids, mask, aggregate_component_probs=torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="variant='vae' has no q\\(c\\|x\\)"):
        tiny_model(variant="vae")(input_ids, mask, aggregate_component_probs=torch.full((3, 4), 0.25))
