"""The `evaluate`-library wrapper, loaded from its local file (skipped where `evaluate` is not installed)."""

import math

import pytest

from modeling_demvae.metrics import bleu_scores, cluster_scores

evaluate = pytest.importorskip("evaluate")
from modeling_demvae.metrics import hf_evaluate  # noqa: E402


def load(config_name):
    return evaluate.load(hf_evaluate.__file__, config_name=config_name)


def test_bleu_and_homogeneity_through_evaluate_match_the_package_functions():
    hypotheses, references = ["the cat sat on a mat", "a dog"], ["the cat sat on the mat", "a dog barked"]
    assert load("bleu").compute(predictions=hypotheses, references=references) == pytest.approx(
        bleu_scores([r.split() for r in references], [h.split() for h in hypotheses]))
    homogeneity = load("homogeneity")
    homogeneity.add_batch(predictions=[0, 0], references=[1, 1])
    homogeneity.add_batch(predictions=[1, 1], references=[1, 2])
    assert homogeneity.compute() == pytest.approx(cluster_scores([0, 0, 1, 1], [1, 1, 1, 2]))


def test_wkl_through_evaluate_against_hand_count():
    result = load("wkl").compute(predictions=["a a b"], training_corpus=["a b", "b c"])
    p, q = [3 / 6, 2 / 6, 1 / 6], [2 / 7, 3 / 7, 2 / 7]  # add-one smoothing over {a, b, c}
    assert result["wkl"] == pytest.approx(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)))
    with pytest.raises(ValueError, match="training sentences"):
        load("wkl").compute(predictions=["a"])
    with pytest.raises(ValueError, match="config_name must be one of"):
        load("rouge")
