"""bf16 autocast on a CPU: the training step, the importance-weighted NLL, prior sampling and the rPPL language model
against float32 (or float64) on the same weights. These force bf16 on any CPU: on one without bf16 units it is only
emulated and slow, so the models are tiny."""

import pytest
import torch
from conftest import tiny_batch, tiny_model

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer
from modeling_demvae import gru as cpu_gru
from modeling_demvae.data import PaddingCollator, sentence_ids
from modeling_demvae.metrics import sample_sentences, sentence_log_likelihoods, train_language_model
from modeling_demvae.metrics.reverse_ppl import language_model_perplexity
from modeling_demvae.synthetic import generate_sentences

BATCH = 16


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def synthetic_batches(num_batches: int, seed: int = 0):
    """Batches of synthetic-corpus sentences (short template sentences, a few dozen words), and the tokenizer."""
    texts, _ = generate_sentences(BATCH * num_batches, seed=seed)
    tokenizer = build_tokenizer(texts)
    ids = sentence_ids(tokenizer, texts, max_length=16)
    collate = PaddingCollator(pad_token_id=tokenizer.pad_token_id)
    batches = [collate([{"input_ids": s} for s in ids[i: i + BATCH]]) for i in range(0, len(ids), BATCH)]
    return batches, ids, len(tokenizer)


def small_model(vocab_size: int) -> DEMVAEForGeneration:
    torch.manual_seed(0)
    return DEMVAEForGeneration(DEMVAEConfig(
        vocab_size=vocab_size, embed_size=24, encoder_hidden_size=24, decoder_hidden_size=24, num_groups=2,
        num_components=3, latent_size=2, max_sentence_length=16, dropout=0.0, dispersion_weight=0.8))


def train(model, batches, *, steps: int, in_bf16: bool) -> list[float]:
    """Adam steps on the batches in turn, each with its step's fixed posterior noise; the loss of every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        noise = model.posterior_noise(len(batch["input_ids"]), generator=torch.Generator().manual_seed(step))
        with bf16() if in_bf16 else torch.autocast("cpu", enabled=False):
            loss = model(batch["input_ids"], batch["attention_mask"], posterior_noise=noise, kl_weight=1.0).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def trained():
    """A small model trained in float32 on the synthetic corpus until its predictions are peaked, as a trained
    model's are (an untrained one's near-uniform logits would hide bf16's rounding), and its sentences."""
    batches, ids, vocab_size = synthetic_batches(12)
    model = small_model(vocab_size)
    train(model, batches, steps=200, in_bf16=False)
    return model.eval(), ids


def test_training_step_under_bf16_autocast_matches_float64(monkeypatch):
    """One forward and backward of the whole model under bf16 autocast: the CPU GRU scan runs for the encoder and the
    decoder, the output layer runs in bf16, the loss is float32, and the loss, every term and every parameter's
    gradient (float32, the master weights') are within bf16 rounding of the same step in float64."""
    model = tiny_model(dropout=0.0)
    reference = tiny_model(dropout=0.0).double()
    input_ids, mask = tiny_batch()
    noise = model.posterior_noise(3, generator=torch.Generator().manual_seed(0))
    scans, logits_dtypes = [], []
    scan_apply = cpu_gru._GRUScan.apply
    monkeypatch.setattr(cpu_gru._GRUScan, "apply", lambda *args: scans.append(args[-1]) or scan_apply(*args))
    model.lm_head.register_forward_hook(lambda module, args, output: logits_dtypes.append(output.dtype))

    with bf16():
        output = model(input_ids, mask, posterior_noise=noise, kl_weight=1.0)
    output.loss.backward()
    assert scans == [torch.bfloat16, torch.bfloat16] and logits_dtypes == [torch.bfloat16]  # encoder, decoder
    assert output.loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    expected = reference(input_ids, mask, posterior_noise={k: v.double() for k, v in noise.items()}, kl_weight=1.0)
    expected.loss.backward()
    for term in ("loss", "nll", "zkl", "dispersion", "agg_ckl", "mi"):
        got, want = getattr(output, term).double(), getattr(expected, term)
        assert abs(got - want) <= 1e-2 * abs(want) + 1e-3, f"{term}: {got.item()} against {want.item()} in float64"
    for (name, param), want in zip(model.named_parameters(), reference.parameters(), strict=True):
        error = (param.grad.double() - want.grad).norm() / want.grad.norm().clamp_min(1e-12)
        assert error <= 3e-2, f"the gradient of {name} is {error:.1e} (relative) from float64"


def test_bf16_training_loss_stays_within_one_percent_of_float32():
    """40 Adam steps from the same weights on the same batches and noise, in float32 and under bf16 autocast: the
    mean loss agrees within 1% (the issue's acceptance over 500 PTB steps on a bf16 CPU is
    `benchmarks/train_speed.py --loss-check 500`), though bf16 did change every step's loss."""
    batches, _, vocab_size = synthetic_batches(8)
    float32 = train(small_model(vocab_size), batches, steps=40, in_bf16=False)
    bfloat16 = train(small_model(vocab_size), batches, steps=40, in_bf16=True)
    assert float32[-1] < 0.8 * float32[0]  # it learns, so the comparison covers a moving model
    mean32, mean16 = sum(float32) / 40, sum(bfloat16) / 40
    assert abs(mean16 - mean32) <= 0.01 * mean32, f"mean loss {mean16:.3f} in bf16 against {mean32:.3f}"
    assert all(a != b for a, b in zip(float32[1:], bfloat16[1:], strict=True))


def test_nll_under_bf16_is_within_a_tenth_of_a_nat_of_float32(trained):
    """The importance-weighted NLL of each sentence (same seed, so the same noise) under bf16 autocast, whose output
    layer does run in bf16, within 0.1 nats of float32; the ELBO too."""
    model, ids = trained
    sentences = ids[:24]
    float32 = sentence_log_likelihoods(model, sentences, num_samples=20, seed=1)
    logits_dtypes = []
    hook = model.lm_head.register_forward_hook(lambda module, args, output: logits_dtypes.append(output.dtype))
    with bf16():
        bfloat16 = sentence_log_likelihoods(model, sentences, num_samples=20, seed=1)
    hook.remove()
    assert logits_dtypes and set(logits_dtypes) == {torch.bfloat16}
    assert -float32["log_likelihood"].mean() / float32["num_tokens"].mean() < 1.5  # peaked: log(V) is about 4
    for key in ("log_likelihood", "elbo"):
        difference = (bfloat16[key] - float32[key]).abs()
        assert difference.max() < 0.1, f"{key}: {difference.max():.3f} nats from float32"
        assert difference.max() > 0  # bf16 did run


def test_prior_samples_and_the_rppl_language_model_under_bf16(trained):
    """Greedy sentences from prior draws under bf16 autocast are nearly all those of float32 (a near tie may flip a
    word). The rPPL language model scores the test sentences under bf16 within 1% of float32, and trains under bf16
    (all its steps inside one autocast region, as `demvae evaluate` runs it) to a perplexity within 3% of float32's."""
    model, ids = trained
    float32 = sample_sentences(model, 120, seed=0)
    with bf16():
        bfloat16 = sample_sentences(model, 120, seed=0)
    assert sum(a == b for a, b in zip(float32, bfloat16, strict=True)) >= 108

    def trained_language_model():
        return train_language_model(float32[:100], float32[100:], vocab_size=model.config.vocab_size, hidden_size=32,
                                    learning_rate=1e-2, max_epochs=4)[0]

    lm = trained_language_model()
    scored = language_model_perplexity(lm, ids[:40])
    with bf16():
        scored_in_bf16 = language_model_perplexity(lm, ids[:40])
        trained_in_bf16 = language_model_perplexity(trained_language_model(), ids[:40])
    assert scored < model.config.vocab_size / 2  # the language model learned
    assert scored_in_bf16 != scored and abs(scored_in_bf16 - scored) <= 0.01 * scored, (scored, scored_in_bf16)
    assert abs(trained_in_bf16 - scored) <= 0.03 * scored, (scored, trained_in_bf16)


def test_a_language_model_trained_under_autocast_scores_with_its_best_weights():
    """Autocast keeps bf16 copies of the weights until its region ends: after each step and after the best epoch's
    weights are put back, the language model must not score with stale copies. A learning rate too high to keep
    improving makes the best epoch an earlier one; it must score inside the region as in a fresh one."""
    _, ids, vocab_size = synthetic_batches(10)
    with bf16():
        lm, history = train_language_model(ids[:60], ids[60:90], vocab_size=vocab_size, hidden_size=32,
                                           learning_rate=1.0, max_epochs=6, patience=1)
        inside = language_model_perplexity(lm, ids[90:150])
    assert history.index(min(history)) < len(history) - 1  # the weights put back are not the last epoch's
    with bf16():
        assert language_model_perplexity(lm, ids[90:150]) == inside
