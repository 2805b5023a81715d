"""wKL, homogeneity, mutual information, component spread and BLEU against hand counts and the libraries directly."""

import math

import numpy as np
import pytest
import sacrebleu
import torch
from conftest import tiny_model
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
from sklearn.metrics import completeness_score, homogeneity_score, normalized_mutual_info_score

from modeling_demvae.metrics import (
    active_components,
    batch_mutual_information,
    bleu_scores,
    cluster_scores,
    collapse_diagnostics,
    combined_cluster_ids,
    component_separation,
    component_spread,
    encode_sentences,
    homogeneity_chance,
    label_agreement,
    mutual_information,
    reconstruct,
    reconstruction_bleu,
    unigram_kl,
)

# ----- wKL -----


def test_unigram_kl_against_hand_count():
    generated = [[1, "a", "a", "b", 2]]  # a: 2, b: 1 (the specials 1 and 2 are ignored)
    reference = [[1, "a", "b", 2], [1, "b", "c", 2]]  # a: 1, b: 2, c: 1
    # add-one smoothing over {a, b, c}: p_gen = (3, 2, 1) / 6, p_ref = (2, 3, 2) / 7
    p, q = [3 / 6, 2 / 6, 1 / 6], [2 / 7, 3 / 7, 2 / 7]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert unigram_kl(generated, reference, ignore=(1, 2)) == pytest.approx(expected, rel=1e-12)
    # without smoothing: p_gen = (2/3, 1/3), p_ref = (1/4, 2/4); c is not generated and adds nothing
    expected = 2 / 3 * math.log((2 / 3) / (1 / 4)) + 1 / 3 * math.log((1 / 3) / (2 / 4))
    assert unigram_kl(generated, reference, smoothing=0.0, ignore=(1, 2)) == pytest.approx(expected, rel=1e-12)
    assert unigram_kl(reference, reference, ignore=(1, 2)) == pytest.approx(0.0, abs=1e-12)


def test_unigram_kl_rejects_what_it_cannot_score():
    with pytest.raises(ValueError, match="infinite"):
        unigram_kl([["z"]], [["a"]], smoothing=0.0)
    with pytest.raises(ValueError, match="empty"):
        unigram_kl([[1, 2]], [["a"]], ignore=(1, 2))
    with pytest.raises(ValueError, match="smoothing"):
        unigram_kl([["a"]], [["a"]], smoothing=-1)


# ----- clusters and labels -----


def test_combined_cluster_ids_read_the_code_as_a_base_k_number():
    probs = torch.zeros(2, 3, 4)
    probs[0, [0, 1, 2], [1, 0, 3]] = 1.0  # code (1, 0, 3)
    probs[1, [0, 1, 2], [3, 3, 3]] = 1.0
    assert combined_cluster_ids(probs).tolist() == [1 * 16 + 0 * 4 + 3, 63]


def test_homogeneity_against_hand_count_and_scikit_learn():
    clusters = [0, 0, 1, 1]
    labels = ["x", "x", "x", "y"]
    # H(label) = H(3/4, 1/4); H(label | cluster) = 1/2 * 0 + 1/2 * log 2; homogeneity = 1 - H(L|C) / H(L)
    h_label = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    scores = cluster_scores(clusters, labels)
    assert scores["homogeneity"] == pytest.approx(1 - 0.5 * math.log(2) / h_label)
    # H(cluster | label): label x splits 2:1 over the clusters, y sits in one; completeness = 1 - H(C|L) / H(C)
    h_c_given_l = 0.75 * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert scores["completeness"] == pytest.approx(1 - h_c_given_l / math.log(2))
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert scores["homogeneity"] == pytest.approx(homogeneity_score(labels, clusters))
    assert scores["completeness"] == pytest.approx(completeness_score(labels, clusters))
    probs = torch.nn.functional.one_hot(torch.tensor(clusters), 2).float().unsqueeze(1)
    agreement = label_agreement(probs, {"act": labels}, seed=4)["act"]
    assert {key: agreement[key] for key in scores} == scores
    assert agreement["homogeneity_chance"] == homogeneity_chance(clusters, labels, seed=4)
    assert agreement["homogeneity_adjusted"] == agreement["homogeneity"] - agreement["homogeneity_chance"]
    with pytest.raises(ValueError, match="one label per sentence"):
        cluster_scores(clusters, labels[:3])


def test_homogeneity_chance_is_the_mean_over_twenty_seeded_label_shuffles():
    generator = torch.Generator().manual_seed(0)
    clusters = torch.randint(0, 6, (60,), generator=generator).tolist()
    labels = [["inform", "question", "directive"][i] for i in torch.randint(0, 3, (60,), generator=generator)]
    permutations = np.random.default_rng(7)
    expected = np.mean([homogeneity_score([labels[i] for i in permutations.permutation(60)], clusters)
                        for _ in range(20)])
    chance = homogeneity_chance(clusters, labels, seed=7)
    assert chance == pytest.approx(expected, abs=1e-12)
    assert 0 < chance < homogeneity_score(labels, clusters) + 0.2  # 6 clusters of 10: a little above 0
    assert homogeneity_chance(clusters, labels, seed=7) == chance  # the same seed, the same level
    assert homogeneity_chance(clusters, labels, seed=8) != chance


def test_homogeneity_chance_of_singletons_is_their_homogeneity_and_of_one_cluster_zero():
    """One sentence per cluster is pure whatever the labels say: its chance level is its homogeneity, 1, and the
    score above chance 0; one cluster for every sentence is never pure."""
    labels = [0, 1, 1, 2, 0, 2, 2, 1, 0, 0]
    singletons = list(range(len(labels)))
    assert homogeneity_score(labels, singletons) == pytest.approx(1.0, abs=1e-9)
    assert homogeneity_chance(singletons, labels) == pytest.approx(1.0, abs=1e-9)
    assert homogeneity_chance([3] * len(labels), labels) == 0.0
    probs = torch.nn.functional.one_hot(torch.tensor(singletons), len(labels)).float().unsqueeze(1)
    assert label_agreement(probs, {"act": labels})["act"]["homogeneity_adjusted"] == pytest.approx(0.0, abs=1e-9)


# ----- mutual information, collapse -----


def test_mutual_information_against_hand_count():
    collapsed = torch.full((6, 1, 4), 0.25)  # every sentence: the same uniform q(c|x)
    one_hot = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])].unsqueeze(1)  # certain, used 2:2:1:1
    probs = torch.cat((collapsed, one_hot), dim=1)
    mi = mutual_information(probs)
    h_used = -(2 * (2 / 6) * math.log(2 / 6) + 2 * (1 / 6) * math.log(1 / 6))
    torch.testing.assert_close(mi, torch.tensor([0.0, h_used], dtype=torch.float64))
    torch.testing.assert_close(active_components(probs), torch.tensor([1.0, math.exp(h_used)], dtype=torch.float64))
    # the collapsed group's argmaxes would still look "used": argmax of a uniform vector is component 0 for all,
    # but a noisy near-uniform one spreads over all 4; MI sees through both
    noisy = (torch.full((400, 1, 4), 0.25) + 1e-4 * torch.randn(400, 1, 4)).softmax(-1)
    assert len(noisy.argmax(-1).unique()) == 4 and mutual_information(noisy).item() < 1e-6
    # batch estimate: mean over batches of size 3 of the batch MI: batches [0,1,2] and [3,0,1], each log 3 in group 2
    assert batch_mutual_information(probs, batch_size=3) == pytest.approx(math.log(3))


def test_component_spread_against_hand_count():
    means = torch.tensor([[[0.0, 0.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])  # group 2 collapsed
    log_variances = torch.log(torch.tensor([[[1.0, 1.0], [3.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]]))
    # group 1: distance 5, pooled variance (1 + 3) / 2 = 2 -> 5 / sqrt 2; group 2: 0
    torch.testing.assert_close(component_spread(means, log_variances), torch.tensor([5 / math.sqrt(2), 0.0],
                                                                                     dtype=torch.float64))
    three = torch.tensor([[[0.0], [1.0], [3.0]]])  # pairs: 1, 3, 2 at unit variance
    assert component_spread(three, torch.zeros_like(three)).item() == pytest.approx(2.0)
    # nearest neighbours: 1 (of 0), 1 (of 1), 2 (of 3) -> 4/3; two merged components of four pull it down to
    # (0 + 0 + 4 + 4) / 4 = 2 while the mean pairwise spread stays high (0, 4, 8, 4, 8, 4 -> 14/3)
    assert component_separation(three, torch.zeros_like(three)).item() == pytest.approx(4 / 3)
    merged = torch.tensor([[[0.0], [0.0], [4.0], [8.0]]])
    assert component_separation(merged, torch.zeros_like(merged)).item() == pytest.approx(2.0)
    assert component_spread(merged, torch.zeros_like(merged)).item() == pytest.approx(14 / 3)


def test_collapse_diagnostics_of_a_model():
    model = tiny_model().eval()
    sentences = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2]]
    posterior = encode_sentences(model, sentences)
    result = collapse_diagnostics(model, posterior)
    probs = posterior.component_probs
    assert result["mi"] == pytest.approx(mutual_information(probs).tolist())
    assert len(result["active_components"]) == model.config.num_groups
    assert all(1.0 <= a <= model.config.num_components for a in result["active_components"])
    assert result["component_spread"] == pytest.approx(
        component_spread(model.prior.means, model.prior.log_variances).tolist()
    )
    assert len(result["component_separation"]) == model.config.num_groups
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([[1, 5, 6, 2]])).dispersion.item()
    single = collapse_diagnostics(model, encode_sentences(model, sentences[:1]))
    assert single["dispersion"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no components"):
        collapse_diagnostics(tiny_model(variant="vae"), encode_sentences(tiny_model(variant="vae"), sentences))


# ----- BLEU -----


def test_bleu_scores_against_nltk_and_sacrebleu_directly():
    references = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "barked"], ["it", "rains"]]
    hypotheses = [["the", "cat", "sat", "on", "a", "mat"], ["a", "dog"], []]
    scores = bleu_scores(references, hypotheses)
    nltk = corpus_bleu([[r] for r in references], hypotheses, smoothing_function=SmoothingFunction().method1)
    sacre = sacrebleu.corpus_bleu([" ".join(h) for h in hypotheses], [[" ".join(r) for r in references]])
    assert scores == {"bleu": pytest.approx(100 * nltk), "sacrebleu": pytest.approx(sacre.score)}
    perfect = bleu_scores(references[:1], references[:1])
    assert perfect == {"bleu": pytest.approx(100.0), "sacrebleu": pytest.approx(100.0)}
    # by hand: one 4-word hypothesis, 3 of 4 unigrams, 2/3 bigrams, 1/2 trigrams, 0/1 4-grams (smoothed to
    # 0.1/1 by method 1), same length as the reference so no brevity penalty
    by_hand = math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(0.1)) / 4)
    assert bleu_scores([["a", "b", "c", "d"]], [["a", "b", "c", "x"]])["bleu"] == pytest.approx(100 * by_hand)
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        bleu_scores(references, hypotheses[:2])


def greedy_by_hand(model, latent, max_new_tokens):
    """Greedy decoding one token at a time from the teacher-forced logits (no generate, no cache); the words, with
    `<pad>` (which an untrained model may predict) left out, as in the metric."""
    ids = torch.tensor([[model.config.bos_token_id]])
    words = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            token = model(input_ids=ids, latent=latent[None]).logits[0, -1].argmax().item()
        if token == model.config.eos_token_id:
            break
        words += [token] if token != model.config.pad_token_id else []
        ids = torch.cat((ids, torch.tensor([[token]])), dim=1)
    return words


@pytest.mark.parametrize("variant", ["dem", "semi"])
def test_reconstruction_bleu_is_greedy_decoding_from_the_posterior_mode(variant):
    model = tiny_model(variant=variant).eval()
    sentences = [[1, 5, 6, 7, 2], [1, 8, 9, 2], [1, 10, 11, 12, 13, 2]]
    posterior = encode_sentences(model, sentences)
    latent = posterior.mean if variant == "dem" else model.posterior_latent(posterior, sample=False)
    expected = [greedy_by_hand(model, z, model.config.max_sentence_length - 1) for z in latent]
    assert reconstruct(model, sentences) == expected
    references = [s[1:-1] for s in sentences]
    nltk = corpus_bleu([[[str(t) for t in r]] for r in references], [[str(t) for t in h] for h in expected],
                       smoothing_function=SmoothingFunction().method1)
    assert reconstruction_bleu(model, sentences)["bleu"] == pytest.approx(100 * nltk)
