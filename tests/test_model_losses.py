"""Every loss term of DEMVAEForGeneration against an independent computation, in float64."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_batch, tiny_model
from torch.distributions import Categorical, Normal, kl_divergence

VARIANTS = ("dem", "vae", "discrete", "semi", "rnnlm")


def manual_nll(model, input_ids, attention_mask, latent):
    """Teacher-forced token NLL summed per sentence, computed by decoding each sentence alone, unpadded."""
    totals = []
    for row, mask, z in zip(input_ids, attention_mask, latent):
        tokens = row[: int(mask.sum())].unsqueeze(0)
        logits = model(input_ids=tokens, latent=z.unsqueeze(0)).logits[0]
        log_probs = logits[:-1].log_softmax(-1)
        totals.append(-log_probs.gather(1, tokens[0, 1:].unsqueeze(1)).sum())
    return torch.stack(totals)


@pytest.fixture
def batch():
    return tiny_batch()


def test_category_kl_identity(batch):
    """mean_x KL(q(c|x) || uniform) = agg_ckl + mi."""
    model = tiny_model(num_components=5).double().eval()
    out = model(*batch)
    probs = out.component_probs
    uniform = Categorical(probs=torch.full_like(probs, 1 / probs.shape[-1]))
    expected = kl_divergence(Categorical(probs=probs), uniform).sum(-1).mean()
    torch.testing.assert_close(out.agg_ckl + out.mi, expected)
    assert out.mi >= 0 and out.agg_ckl >= 0


def test_dispersion_identity_through_the_model(batch):
    model = tiny_model().double().eval()
    out = model(*batch)
    component_kl = kl_divergence(
        Normal(out.posterior_mean.view(3, 3, 1, 2), (0.5 * out.posterior_logvar.view(3, 3, 1, 2)).exp()),
        Normal(model.prior.means, (0.5 * model.prior.log_variances).exp()),
    ).sum(-1)
    expected = (out.component_probs * component_kl).sum(dim=(1, 2)).mean()
    torch.testing.assert_close(out.zkl + out.dispersion, expected)
    assert out.dispersion > 0


def test_nll_is_the_unpadded_teacher_forced_cross_entropy(batch):
    model = tiny_model().double().eval()
    out = model(*batch)
    torch.testing.assert_close(out.nll, manual_nll(model, *batch, out.latent).mean())


def test_labels_with_ignore_index_match_the_default_targets(batch):
    model = tiny_model(dropout=0.0).double().eval()
    input_ids, mask = batch
    torch.manual_seed(3)
    default = model(input_ids, mask)
    torch.manual_seed(3)
    labelled = model(input_ids, mask, labels=input_ids.masked_fill(mask == 0, -100))
    torch.testing.assert_close(default.loss, labelled.loss)


@pytest.mark.parametrize("use_mi", [False, True])
def test_gm_vae_loss_is_minus_the_elbo(batch, use_mi):
    """beta = 0, annealing weight 1, no MI term: the training loss is -ELBO exactly."""
    model = tiny_model(dispersion_weight=0.0, use_mutual_information=use_mi).double().eval()
    out = model(*batch, kl_weight=1.0)
    ckl = out.agg_ckl + out.mi
    torch.testing.assert_close(-out.elbo, out.nll + out.zkl + out.dispersion + ckl)
    if use_mi:  # the +L_mi objective drops exactly the mi term
        torch.testing.assert_close(out.loss, -out.elbo - out.mi)
    else:
        torch.testing.assert_close(out.loss, -out.elbo)


def test_dgm_vae_loss_composition(batch):
    beta, weight = 0.8, 0.3
    model = tiny_model(dispersion_weight=beta, use_mutual_information=True).double().eval()
    out = model(*batch, kl_weight=weight)
    expected = out.nll + weight * (out.agg_ckl + out.zkl + (1 - beta) * out.dispersion)
    torch.testing.assert_close(out.loss, expected)
    assert out.kl_weight.item() == pytest.approx(weight)


@pytest.mark.parametrize("anneal_components", [True, False])
def test_the_mutual_information_bonus_and_the_component_terms_weight(batch, anneal_components):
    """loss = nll + w [zkl + (1 - beta) L_d] + w_c [agg_ckl - lambda mi], w_c = w or 1; mi against the entropies of
    q(c|x) and of its batch mean, computed here with torch.distributions."""
    beta, weight, bonus = 0.8, 0.3, 1.5
    model = tiny_model(dispersion_weight=beta, use_mutual_information=True, mutual_information_bonus=bonus,
                       anneal_component_terms=anneal_components).double().eval()
    out = model(*batch, kl_weight=weight)
    probs = out.component_probs
    by_hand = (Categorical(probs=probs.mean(0)).entropy() - Categorical(probs=probs).entropy().mean(0)).sum()
    torch.testing.assert_close(out.mi, by_hand)
    component_weight = weight if anneal_components else 1.0
    expected = (out.nll + weight * (out.zkl + (1 - beta) * out.dispersion)
                + component_weight * (out.agg_ckl - bonus * out.mi))
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match="mutual_information_bonus must be non-negative, got -1.0"):
        tiny_model(mutual_information_bonus=-1.0)


def test_vae_kl_against_standard_normal(batch):
    model = tiny_model(variant="vae").double().eval()
    out = model(*batch)
    q = Normal(out.posterior_mean, (0.5 * out.posterior_logvar).exp())
    torch.testing.assert_close(out.zkl, kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean())
    torch.testing.assert_close(out.loss, out.nll + out.zkl)
    assert out.dispersion == 0 and out.component_probs is None


def test_discrete_variant_loss_is_nll_plus_batch_prior_regularization(batch):
    model = tiny_model(variant="discrete", use_mutual_information=True).double().eval()
    out = model(*batch)
    torch.testing.assert_close(out.loss, out.nll + out.agg_ckl)
    codes = out.latent.view(3, 3, 4)  # hard one-hot codes in evaluation
    assert torch.equal(codes.sum(-1), torch.ones(3, 3, dtype=codes.dtype))
    torch.testing.assert_close(out.nll, manual_nll(model, *batch, out.latent).mean())


def test_semi_variant_has_both_latents(batch):
    model = tiny_model(variant="semi", use_mutual_information=False).double().eval()
    out = model(*batch)
    q = Normal(out.posterior_mean, (0.5 * out.posterior_logvar).exp())
    zkl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean()
    torch.testing.assert_close(out.loss, out.nll + zkl + out.agg_ckl + out.mi)
    assert out.latent.shape == (3, 3 * 2 + 3 * 4)


def test_rnnlm_is_the_decoder_alone(batch):
    model = tiny_model(variant="rnnlm").double().eval()
    out = model(*batch)
    torch.testing.assert_close(out.loss, out.nll)
    torch.testing.assert_close(-out.elbo, out.nll)
    assert not hasattr(model, "encoder") and out.latent.shape == (3, 0)


def test_several_posterior_samples_average_the_reconstruction(batch):
    model = tiny_model(num_posterior_samples=4).double().eval()
    torch.manual_seed(0)
    out = model(*batch)
    assert out.latent.shape == (3, 4, 6)
    per_sample = torch.stack([manual_nll(model, *batch, out.latent[:, s]) for s in range(4)], 1)
    torch.testing.assert_close(out.nll, per_sample.mean())


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(batch, variant):
    model = tiny_model(variant=variant, use_mutual_information=False).train()
    model(*batch, kl_weight=0.5).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    if variant == "dem":
        assert model.prior.means.grad.abs().sum() > 0 and model.prior.log_variances.grad.abs().sum() > 0


def test_padding_is_never_read(batch):
    model = tiny_model().double().eval()
    input_ids, mask = batch
    garbage = input_ids.masked_fill(mask == 0, 17)
    clean, noisy = model.encode(input_ids, mask), model.encode(garbage, mask)
    torch.testing.assert_close(clean.mean, noisy.mean)
    torch.testing.assert_close(clean.component_probs, noisy.component_probs)
    alone = model.encode(input_ids[2:, :3])
    torch.testing.assert_close(alone.mean, clean.mean[2:])


def test_kl_weight_default_is_one(batch):
    model = tiny_model().double().eval()
    torch.manual_seed(0)
    default = model(*batch)
    torch.manual_seed(0)
    explicit = model(*batch, kl_weight=1.0)
    torch.testing.assert_close(default.loss, explicit.loss)
    assert math.isclose(default.kl_weight.item(), 1.0)


def test_empty_batch_is_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="non-empty"):
        model(input_ids=torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty"):
        model.encode(torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one token"):
        model.encode(torch.tensor([[1, 2], [0, 0]]))


def test_trainer_with_language_modeling_collator(tmp_path):
    """A generic client: transformers.Trainer + DataCollatorForLanguageModeling trains the model."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from modeling_demvae import build_tokenizer

    texts = ["the cat sat on the mat", "a dog ran", "the dog sat", "a cat ran on the mat"] * 8
    tokenizer = build_tokenizer(texts)
    model = tiny_model(vocab_size=len(tokenizer))
    dataset = Dataset.from_dict({"text": texts})
    dataset = dataset.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns="text")
    before = model(**tokenizer(texts[:8], return_tensors="pt", padding=True)).nll.item()
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=8, learning_rate=1e-2,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, seed=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.train()
    model.eval()
    after = model(**tokenizer(texts[:8], return_tensors="pt", padding=True)).nll.item()
    assert after < before



def test_token_nll_in_slices_is_the_whole_cross_entropy_in_float32_with_its_gradient():
    from modeling_demvae.networks import NLL_ROWS, token_nll

    torch.manual_seed(0)
    logits = torch.randn(3, NLL_ROWS // 2 + 7, 50, dtype=torch.bfloat16, requires_grad=True)  # three slices
    targets = torch.randint(0, 50, (3, NLL_ROWS // 2 + 7))
    targets[0, :5] = -100
    sliced = token_nll(logits, targets, -100)
    whole = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100,
                            reduction="none").view_as(targets)
    assert sliced.dtype == torch.float32 and torch.equal(sliced, whole) and (sliced[0, :5] == 0).all()
    (gradient,) = torch.autograd.grad(sliced.sum(), logits)
    (expected,) = torch.autograd.grad(whole.sum(), logits)
    assert torch.equal(gradient, expected)
