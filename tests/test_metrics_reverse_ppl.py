"""rPPL: the language model's perplexity by hand, its training and early stopping, prior sampling."""

import math

import pytest
import torch
from conftest import tiny_model

from modeling_demvae.metrics import (
    LSTMLanguageModel,
    language_model_perplexity,
    reverse_perplexity,
    reverse_perplexity_ceiling,
    reverse_perplexity_from_samples,
    sample_sentences,
    train_language_model,
)


def test_perplexity_against_a_token_by_token_count():
    torch.manual_seed(0)
    lm = LSTMLanguageModel(20, hidden_size=8).eval()
    sentences = [[1, 5, 6, 7, 2], [1, 9, 2], [1, 4, 4, 4, 4, 4, 2]]
    total, count = 0.0, 0
    for sentence in sentences:
        with torch.no_grad():
            log_probs = lm(torch.tensor([sentence]))[0].log_softmax(-1)
        for position in range(len(sentence) - 1):
            total -= log_probs[position, sentence[position + 1]].item()
            count += 1
    assert language_model_perplexity(lm, sentences, max_tokens=7) == pytest.approx(math.exp(total / count), rel=1e-5)


def test_language_model_learns_the_generated_language_and_stops_early():
    language = [[1, 5, 6, 7, 2], [1, 5, 8, 2], [1, 9, 6, 7, 2]] * 40
    lm, history = train_language_model(language, language[:6], vocab_size=12, hidden_size=16, batch_size=16,
                                       learning_rate=0.02, max_epochs=12, patience=2)
    assert language_model_perplexity(lm, [[1, 5, 6, 7, 2]]) < 2.0
    assert language_model_perplexity(lm, [[1, 7, 7, 5, 2]]) > 20.0  # words in an order never generated
    assert language_model_perplexity(lm, language[:6]) == pytest.approx(min(history), rel=1e-6)  # the best epoch
    assert history[0] > min(history)
    # a validation set the training data cannot help with: perplexity rises, training stops `patience` epochs later
    _, history = train_language_model(language, [[1, 10, 11, 10, 11, 2]], vocab_size=12, hidden_size=16,
                                      batch_size=16, learning_rate=0.02, max_epochs=12, patience=2)
    assert len(history) < 12 and len(history) == history.index(min(history)) + 3


def test_prior_samples_and_reverse_perplexity_are_deterministic():
    model = tiny_model().eval()
    samples = sample_sentences(model, 7, batch_size=3, seed=4)
    assert len(samples) == 7 and all(s[0] == 1 and s[-1] == 2 and 2 not in s[1:-1] for s in samples)
    assert samples == sample_sentences(model, 7, batch_size=7, seed=4)
    test_sentences = [[1, 5, 6, 2], [1, 7, 8, 9, 2]]
    kwargs = dict(num_train=30, num_valid=10, hidden_size=8, max_epochs=2, seed=1)
    result = reverse_perplexity(model, test_sentences, **kwargs)
    assert result == reverse_perplexity(model, test_sentences, **kwargs)
    assert result["rppl_train_samples"] == 30 and result["rppl_valid_samples"] == 10
    assert 1.0 < result["rppl"] < float("inf") and 0.0 <= result["unseen_test_token_rate"] <= 1.0
    with pytest.raises(ValueError, match="num_train"):
        reverse_perplexity(model, test_sentences, num_train=0)


def test_a_model_without_a_latent_samples_its_words_instead_of_repeating_one_greedy_sentence():
    model = tiny_model(variant="rnnlm").eval()
    assert model.config.decoder_latent_size == 0
    with torch.no_grad():
        model.lm_head.bias[5] += 3.0  # one word far more likely than the rest, everywhere
    samples = sample_sentences(model, 2000, batch_size=1000, seed=3)
    assert samples == sample_sentences(model, 2000, batch_size=1000, seed=3)  # seeded
    assert len({tuple(s) for s in samples}) > 1000  # greedy decoding would give one sentence 2,000 times
    # the first words follow the decoder's distribution after <s>, which never emits padding (an empty sentence's
    # first word is </s>)
    with torch.no_grad():
        logits = model(torch.tensor([[1]]), latent=torch.zeros(1, 0)).logits[0, -1]
    probs = logits.index_fill(0, torch.tensor([model.config.pad_token_id]), -torch.inf).softmax(-1)
    counts = torch.bincount(torch.tensor([s[1] for s in samples]), minlength=len(probs))
    frequencies = counts / counts.sum()
    assert 0.25 < probs[5] < 0.5 and abs(frequencies[5] - probs[5]) < 0.04  # about 4 standard deviations
    assert 0.5 * (frequencies - probs).abs().sum() < 0.1  # total variation; about 0.05 expected from 2,000 draws


def test_the_ceiling_trains_the_language_model_on_distinct_real_sentences(monkeypatch):
    from modeling_demvae.metrics import reverse_ppl

    train = [[1, 3 + i // 10, 3 + i % 10, 2] for i in range(60)]  # 60 different sentences
    valid = [[1, 4, 3 + i, 2] for i in range(8)]
    seen = []
    monkeypatch.setattr(reverse_ppl, "reverse_perplexity_from_samples",
                        lambda train, valid, test, **kwargs: seen.append((train, valid, kwargs)) or {"rppl": 1.0})
    for seed in (3, 3, 4):
        reverse_ppl.reverse_perplexity_ceiling(train, valid, [[1, 5, 2]], num_train=25, num_valid=100, vocab_size=20,
                                               seed=seed)
    (chosen, chosen_valid, kwargs), again, other = seen
    assert len(chosen) == 25 and len({tuple(s) for s in chosen}) == 25 and all(s in train for s in chosen)
    assert sorted(chosen_valid) == sorted(valid)  # fewer than asked: all of them
    assert again[:2] == (chosen, chosen_valid) and other[0] != chosen  # seeded
    assert kwargs == {"vocab_size": 20, "seed": 3}


def test_real_sentences_reach_a_lower_reverse_perplexity_than_samples_of_one_sentence():
    """The ceiling is the rPPL of perfect samples: the language itself beats samples that repeat one sentence."""
    language = [[1, 5, 6, 7, 2], [1, 5, 8, 2], [1, 9, 6, 7, 2], [1, 9, 8, 2]] * 30
    options = dict(vocab_size=12, hidden_size=16, batch_size=16, learning_rate=0.02, max_epochs=8, seed=0)
    ceiling = reverse_perplexity_ceiling(language, language[:8], language[:4], num_train=100, num_valid=8, **options)
    one_sentence = reverse_perplexity_from_samples([language[0]] * 100, [language[0]] * 8, language[:4], **options)
    assert ceiling["rppl_train_samples"] == 100 and ceiling["rppl_valid_samples"] == 8
    assert ceiling["rppl"] < 3.0 < one_sentence["rppl"]


def test_an_interrupted_language_model_training_continues_to_the_uninterrupted_model(tmp_path):
    language = [[1, 5, 6, 7, 2], [1, 5, 8, 2], [1, 9, 6, 7, 2], [1, 9, 8, 6, 2]] * 20
    options = dict(vocab_size=12, hidden_size=16, batch_size=8, learning_rate=0.01, seed=2)  # dropout 0.3
    whole, whole_history = train_language_model(language, language[:8], max_epochs=5, **options)
    checkpoint = tmp_path / "lm.pt"
    train_language_model(language, language[:8], max_epochs=2, checkpoint=checkpoint, **options)  # stopped after 2
    assert len(torch.load(checkpoint, weights_only=True)["history"]) == 2
    resumed, history = train_language_model(language, language[:8], max_epochs=5, checkpoint=checkpoint, **options)
    assert history == whole_history and len(history) == 5
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))
    finished = train_language_model(language, language[:8], max_epochs=5, checkpoint=checkpoint, **options)[1]
    assert finished == history  # a finished training is not trained further
