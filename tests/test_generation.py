"""generate(component=k), sample_prior and the decoding cache."""

import pytest
import torch
from conftest import tiny_model


@pytest.fixture
def model():
    return tiny_model().eval()


def test_generate_draws_latents_from_the_requested_component(model):
    component = [3, 0, 2]
    torch.manual_seed(7)
    sequences = model.generate(component=component, num_samples=4, max_new_tokens=6)
    torch.manual_seed(7)
    latent = model.sample_prior(4, component=component)
    assert torch.equal(sequences, model.generate(latent=latent, max_new_tokens=6))
    # and those latents come from component k of each group
    many = model.sample_prior(20_000, component=component).view(-1, 3, 2)
    groups = torch.arange(3)
    expected = model.prior.means[groups, torch.tensor(component)].detach()
    torch.testing.assert_close(many.mean(0), expected, atol=0.05, rtol=0)


def test_component_draws_are_nearest_to_their_component(model):
    with torch.no_grad():
        model.prior.means.copy_(torch.arange(4.0).mul(10).view(1, 4, 1).expand(3, 4, 2))
    latent = model.sample_prior(200, component=[1, 2, 3]).view(200, 3, 2)
    nearest = (latent.unsqueeze(2) - model.prior.means.detach()).norm(dim=-1).argmin(-1)
    assert (nearest == torch.tensor([1, 2, 3])).all()


def test_int_component_when_there_is_one_group():
    model = tiny_model(num_groups=1).eval()
    latent = model.sample_prior(5, component=2)
    assert latent.shape == (5, 2)
    assert model.generate(component=2, num_samples=5, max_new_tokens=4).shape[0] == 5


def test_num_samples_gives_different_latents(model):
    latent = model.sample_prior(6)
    assert torch.unique(latent, dim=0).shape[0] == 6
    assert model.generate(num_samples=6, max_new_tokens=3).shape[0] == 6


def test_cached_and_uncached_greedy_decoding_agree(model):
    latent = model.sample_prior(5)
    cached = model.generate(latent=latent, max_new_tokens=10, use_cache=True)
    uncached = model.generate(latent=latent, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached, uncached)


def test_decoding_runs_one_step_per_token(model):
    """With the cache, every decoder call after the first sees one new token, never the whole prefix."""
    seen = []
    handle = model.decoder.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[1]))
    try:
        model.generate(latent=model.sample_prior(2), max_new_tokens=6, min_new_tokens=6)
    finally:
        handle.remove()
    assert seen == [1] * 6


@pytest.mark.parametrize(
    "options",
    [
        dict(num_beams=3),
        dict(num_beams=3, num_return_sequences=2),
        dict(do_sample=True, top_k=5),
        dict(do_sample=True, top_p=0.9, temperature=0.7),
    ],
)
def test_generation_modes_run(model, options):
    out = model.generate(component=[0, 1, 2], num_samples=2, max_new_tokens=5, **options)
    assert out.shape[0] == 2 * options.get("num_return_sequences", 1)
    assert (out[:, 0] == model.config.bos_token_id).all()
    assert out.shape[1] <= 6


def test_beam_search_reorders_the_state_correctly():
    """Each returned beam's score equals its teacher-forced log-likelihood: a wrongly reordered GRU state breaks it."""
    model = tiny_model(initializer_range=1.0).eval()  # large weights, so the state depends strongly on the history
    latent = model.sample_prior(3)
    assert torch.equal(model.generate(latent=latent, max_new_tokens=8),
                       model.generate(latent=latent, max_new_tokens=8, num_beams=1))
    beams = model.generate(
        latent=latent, max_new_tokens=8, num_beams=4, num_return_sequences=4, length_penalty=0.0,
        output_scores=True, return_dict_in_generate=True,
    )
    sequences = beams.sequences
    log_probs = model(input_ids=sequences, latent=latent.repeat_interleave(4, 0)).logits[:, :-1].log_softmax(-1)
    token_log_probs = log_probs.gather(2, sequences[:, 1:].unsqueeze(-1)).squeeze(-1)
    finished_before = (sequences[:, 1:-1] == model.config.eos_token_id).cumsum(1) > 0
    keep = torch.cat([torch.ones_like(finished_before[:, :1]), ~finished_before], dim=1)
    torch.testing.assert_close(beams.sequences_scores, (token_log_probs * keep).sum(1), atol=1e-4, rtol=1e-4)
    assert len({tuple(s.tolist()) for s in sequences[:4]}) == 4


def test_errors_are_clear(model):
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.generate(component=[0, 1, 4], num_samples=1)
    with pytest.raises(ValueError, match="one index per group"):
        model.generate(component=[0, 1], num_samples=1)
    with pytest.raises(ValueError, match="num_groups=3"):
        model.generate(component=1)
    with pytest.raises(ValueError, match="num_samples"):
        model.sample_prior(0)
    with pytest.raises(ValueError, match="either latent= or component="):
        model.generate(component=[0, 0, 0], latent=model.sample_prior(1))
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        model.generate(latent=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="no mixture components"):
        tiny_model(variant="vae").generate(component=[0, 0, 0])


@pytest.mark.parametrize("variant", ["vae", "discrete", "semi", "rnnlm"])
def test_baselines_generate(variant):
    model = tiny_model(variant=variant).eval()
    component = [0, 1, 2] if variant in ("discrete", "semi") else None
    out = model.generate(component=component, num_samples=3, max_new_tokens=4)
    assert out.shape[0] == 3
    if variant == "discrete":
        codes = model.sample_prior(3, component=component).view(3, 3, 4)
        assert codes.argmax(-1).tolist() == [[0, 1, 2]] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu():
    model = tiny_model().double().eval()
    latent = model.sample_prior(4)
    cpu = model.generate(latent=latent, max_new_tokens=8)
    gpu = model.cuda().generate(latent=latent.cuda(), max_new_tokens=8)
    assert torch.equal(cpu, gpu.cpu())
