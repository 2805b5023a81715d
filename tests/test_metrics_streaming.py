"""BLEU and the posterior metrics summed a chunk of sentences at a time equal the libraries and the formulas applied to
the whole test set at once."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import sacrebleu
import torch
from conftest import tiny_model
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

from modeling_demvae.metrics import (
    BleuStatistics,
    CollapseStatistics,
    bleu_scores,
    chunks_of,
    collapse_diagnostics,
    collapse_report,
    encode_sentences,
    reconstruct,
    reconstruction_bleu,
    strip_special,
)

UNEVEN = (0, 1, 5, 2, 11)  # chunk sizes, then the rest in one: an empty chunk, a single sentence, uneven ones


def uneven_chunks(items, sizes=UNEVEN):
    start = 0
    for size in sizes:
        yield items[start:start + size]
        start += size
    yield items[start:]


def random_corpus(seed: int, vocabulary: int = 6):
    """40 references of 1-12 random words and hypotheses made from them by dropping, changing and adding words: of
    every length from 0 up, some shorter than 4 words."""
    rng = np.random.default_rng(seed)
    references, hypotheses = [], []
    for _ in range(40):
        reference = [f"w{i}" for i in rng.integers(vocabulary, size=rng.integers(1, 13))]
        hypothesis = [word if rng.random() > 0.3 else f"w{rng.integers(vocabulary)}" for word in reference
                      if rng.random() > 0.2]
        hypothesis += [f"w{i}" for i in rng.integers(vocabulary, size=rng.integers(0, 3))]
        references.append(reference)
        hypotheses.append(hypothesis)
    return references, hypotheses


def every_third_word_unseen(references):
    """Hypotheses that share unigrams and bigrams with their references but no trigram or 4-gram."""
    return [[f"unseen{i}" if i % 3 == 2 else word for i, word in enumerate(reference)] for reference in references]


def short(references):
    """Hypotheses of at most 3 words (no 4-grams at all), some empty."""
    return [reference[: i % 4] for i, reference in enumerate(references)]


def corpora():
    references, hypotheses = random_corpus(0)
    long_references = [[f"w{j}" for j in range(i, i + 9)] for i in range(30)]
    yield "random", references, hypotheses
    yield "random, a larger vocabulary", *random_corpus(1, vocabulary=30)
    yield "no 3- or 4-gram matches", long_references, every_third_word_unseen(long_references)
    yield "hypotheses under 4 words", references, short(references)
    yield "no word matches", references, [[f"x{i}"] * (i % 5) for i in range(len(references))]


@pytest.mark.parametrize(("name", "references", "hypotheses"), list(corpora()), ids=[c[0] for c in corpora()])
def test_bleu_from_chunks_equals_nltk_and_sacrebleu_on_the_whole_lists(name, references, hypotheses):
    statistics = BleuStatistics()
    for chunk_references, chunk_hypotheses in zip(uneven_chunks(references), uneven_chunks(hypotheses), strict=True):
        statistics.update(chunk_references, chunk_hypotheses)
    streamed = statistics.scores()
    nltk = corpus_bleu([[r] for r in references], hypotheses, smoothing_function=SmoothingFunction().method1)
    sacre = sacrebleu.corpus_bleu([" ".join(h) for h in hypotheses], [[" ".join(r) for r in references]], force=True)
    assert streamed["bleu"] == pytest.approx(100 * nltk, rel=1e-12, abs=1e-12)
    assert streamed["sacrebleu"] == pytest.approx(sacre.score, rel=1e-12, abs=1e-12)
    assert bleu_scores(references, hypotheses) == streamed  # the same counts, fed at once
    matches = statistics.counts["nltk"]["matches"]
    if name == "no 3- or 4-gram matches":  # the smoothed orders, and a score that is not 0
        assert matches[0] > 0 and matches[2:] == [0, 0] and streamed["bleu"] > 0
    if name == "no word matches":
        assert streamed == {"bleu": 0.0, "sacrebleu": 0.0}


def test_bleu_statistics_refuse_what_they_cannot_score():
    with pytest.raises(ValueError, match="one reference per hypothesis, got 2 and 1"):
        BleuStatistics().update([["a"], ["b"]], [["a"]])
    with pytest.raises(ValueError, match="no sentences to score"):
        BleuStatistics().update([], []).scores()
    with pytest.raises(ValueError, match="chunk size must be a positive integer, got 0"):
        list(chunks_of([[1, 2]], 0))


def test_reconstruction_bleu_in_chunks_equals_bleu_of_the_whole_reconstruction():
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(0)
    sentences = [[1, *torch.randint(3, 40, (int(n),), generator=generator).tolist(), 2]
                 for n in torch.randint(1, 9, (11,), generator=generator)]
    whole = bleu_scores([strip_special(s, model.config) for s in sentences], reconstruct(model, sentences))
    assert reconstruction_bleu(model, sentences, chunk_size=3) == pytest.approx(whole, rel=1e-12)


# ----- the posterior: collapse statistics -----


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p)).sum(-1)


def numpy_information(probs: np.ndarray) -> np.ndarray:
    """I(x; c) per group, computed directly: H(mean q) - mean H(q), (N, G, K) -> (G,)."""
    return entropy(probs.mean(0)) - entropy(probs).mean(0)


@pytest.mark.parametrize("chunk_sizes", [(1, 29, 31, 7, 29), (30, 30, 30), (97,)])
def test_collapse_statistics_from_chunks_equal_the_whole_tensor(chunk_sizes):
    model = tiny_model().eval()  # 3 groups of 4 components
    probs = torch.randn(97, 3, 4, generator=torch.Generator().manual_seed(1)).mul(2).softmax(-1)
    statistics = CollapseStatistics.for_model(model)
    start = 0
    for size in (*chunk_sizes, 97 - sum(chunk_sizes)):
        if size:
            statistics.update(probs[start:start + size])
        start += size
    streamed = collapse_report(model, statistics)
    whole = collapse_diagnostics(model, SimpleNamespace(component_probs=probs))
    assert streamed.keys() == whole.keys()
    for key, value in whole.items():  # the dispersion: per sentence in float32, in batches of other shapes
        tolerance = 1e-6 if key == "dispersion" else 1e-12
        assert streamed[key] == (value if isinstance(value, str) else pytest.approx(value, rel=tolerance)), key
    as_numpy = probs.double().numpy()
    np.testing.assert_allclose(streamed["mi"], numpy_information(as_numpy), rtol=1e-12)
    # batches of 30 consecutive sentences, the last one of 7: each batch's MI summed over groups, then their mean
    batches = [numpy_information(as_numpy[i:i + 30]).sum() for i in range(0, 97, 30)]
    assert streamed["batch_mi"] == pytest.approx(np.mean(batches), rel=1e-12)
    with torch.no_grad():
        dispersion = model.prior.dispersion(probs).double().mean().item()
    assert streamed["dispersion"] == pytest.approx(dispersion, rel=1e-6)


def test_collapse_statistics_refuse_what_they_cannot_give():
    statistics = CollapseStatistics()
    with pytest.raises(ValueError, match="no sentences"):
        statistics.mutual_information()
    statistics.update(torch.full((2, 1, 3), 1 / 3))
    assert statistics.batch_mutual_information() == pytest.approx(0.0) and math.isclose(
        statistics.mutual_information().item(), 0.0, abs_tol=1e-15)
    with pytest.raises(ValueError, match="no dispersion without a mixture prior"):
        statistics.dispersion()
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        CollapseStatistics(batch_size=0)
    with pytest.raises(ValueError, match="has no components"):
        CollapseStatistics.for_model(tiny_model(variant="vae"))


def test_encoding_in_chunks_gives_the_whole_lists_probabilities():
    """The chunks' encodings are the whole list's rows: what the streamed metrics see is what the whole-tensor
    functions see."""
    model = tiny_model().eval()
    sentences = [[1, 5 + i % 7, 6, 2] + [2] * (i % 3) for i in range(10)]
    whole = encode_sentences(model, sentences).component_probs
    chunked = torch.cat([encode_sentences(model, chunk).component_probs for chunk in chunks_of(sentences, 4)])
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
