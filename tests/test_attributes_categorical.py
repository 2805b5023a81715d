"""Attributes tied to categorical variables of z (the categorical family, as the reference BMVAE supervises its first
variables): the cross-entropy on q(z_{g,j}|x), generation fixing z_{g,j} with c drawn from p(c | z_{g,j}), training
with --supervise, and the round trip through save and load."""

import pytest
import torch
from conftest import TINY_RUN, tiny_batch, tiny_model
from demvae.cli import main as demvae

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration
from modeling_demvae.data import LABEL_NAMES

ACTS = list(LABEL_NAMES["act"].values())  # 4 labels
V = 5  # values of each categorical variable (>= the 4 acts)
# "act" on variable 1 of group 1 (2 groups of 3 components, 3 variables each); "topic" on group 0's component
ATTRIBUTES = {"act": {"group": 1, "variable": 1, "labels": ACTS}, "topic": {"group": 0, "labels": ["a", "b"]}}
LABELS = torch.tensor([[3, -100], [-100, 1], [0, 0]])  # (act, topic) per sentence


def categorical_attribute_model(**overrides) -> DEMVAEForGeneration:
    settings = dict(prior_family="categorical", categorical_size=V, num_groups=2, num_components=3, latent_size=3,
                    attributes=ATTRIBUTES)
    return tiny_model(**{**settings, **overrides})


def sharp_components(model) -> DEMVAEForGeneration:
    """Component k puts (almost) all the mass of every variable on value k: a sampled z names its component."""
    with torch.no_grad():
        logits = torch.full_like(model.prior.logits, -30.0)
        for k in range(model.config.num_components):
            logits[:, k, :, k] = 30.0 if k < V - 1 else -30.0  # the last value has the fixed logit 0
        model.prior.logits.copy_(logits)
    return model


def values_of(model, latent: torch.Tensor) -> torch.Tensor:
    """(n, G, d) value of each categorical variable of the decoder latent."""
    config = model.config
    return latent.view(latent.shape[0], config.num_groups, config.latent_size, config.categorical_size).argmax(-1)


def test_the_cross_entropy_of_a_variable_is_that_of_q_z_g_j():
    model = categorical_attribute_model(deterministic_eval=True).eval()
    input_ids, mask = tiny_batch()
    out = model(input_ids, mask, attribute_labels=LABELS)
    posterior = model.encode(input_ids, mask)
    expected = torch.zeros(())
    for row in range(3):
        if LABELS[row, 0] != -100:  # act: q(z_{1,1} | x)
            expected -= torch.log_softmax(posterior.latent_logits[row, 1, 1], -1)[LABELS[row, 0]]
        if LABELS[row, 1] != -100:  # topic: q(c_0 | x)
            expected -= torch.log_softmax(posterior.component_logits[row, 0], -1)[LABELS[row, 1]]
    torch.testing.assert_close(out.attribute_loss, expected / 3)


def test_generation_fixes_the_variable_and_draws_c_from_its_conditional(tmp_path):
    model = sharp_components(categorical_attribute_model()).eval()
    values = values_of(model, model.sample_prior(200, attributes={"act": "directive"}))  # label 2 -> value 2
    assert (values[:, 1, 1] == 2).all()
    # only component 2 gives z_{1,1} = 2 any mass, so p(c_1 | z_{1,1} = 2) picks it: group 1's other variables follow
    assert (values[:, 1, [0, 2]] == 2).all()
    assert set(values[:, 0, 0].tolist()) == {0, 1, 2}  # group 0 from the prior
    # a value no component gives mass to (the last one) still is the one asked for, c then near uniform
    model.save_pretrained(tmp_path)
    loaded = DEMVAEForGeneration.from_pretrained(tmp_path)
    torch.manual_seed(0)
    ids = model.generate(attributes={"act": "question", "topic": "b"}, num_samples=3, max_new_tokens=4)
    torch.manual_seed(0)
    assert torch.equal(ids, loaded.generate(attributes={"act": "question", "topic": "b"}, num_samples=3,
                                            max_new_tokens=4))
    values = values_of(loaded, loaded.sample_prior(50, attributes={"act": "question", "topic": "b"}))
    assert (values[:, 1, 1] == 1).all() and (values[:, 0] == 1).all()  # topic "b" is c_0 = 1: all its variables 1


def test_a_variable_needs_enough_values_and_the_categorical_family():
    with pytest.raises(ValueError, match="categorical_size"):
        categorical_attribute_model(categorical_size=3)  # 4 acts, 3 values
    with pytest.raises(ValueError, match="only prior_family='categorical' has"):
        tiny_model(attributes={"act": {"group": 0, "variable": 0, "labels": ACTS}})


def test_supervise_ties_the_categorical_family_to_the_first_variables(labelled_corpus, tmp_path, capsys):
    gaussian = ["train", "--dataset", labelled_corpus, "--embed-size", "16", "--encoder-hidden-size", "16",
                "--decoder-hidden-size", "16", "--num-groups", "1", "--num-components", "4", "--latent-size", "2",
                "--max-sentence-length", "16", "--supervise", "mode", "--max-steps", "4", "--eval-every", "4",
                *TINY_RUN]
    run = [*gaussian, "--prior-family", "categorical", "--categorical-size", "8"]
    assert demvae([*run, "--output-dir", str(tmp_path / "run")]) == 0
    config = DEMVAEConfig.from_pretrained(tmp_path / "run")
    assert (config.attributes["mode"]["group"], config.attributes["mode"]["variable"]) == (0, 0)
    model = DEMVAEForGeneration.from_pretrained(tmp_path / "run")
    label = config.attributes["mode"]["labels"][3]
    assert (values_of(model, model.sample_prior(20, attributes={"mode": label}))[:, 0, 0] == 3).all()
    assert demvae([*run, "--supervise-variables", "1", "--output-dir", str(tmp_path / "second")]) == 0
    assert DEMVAEConfig.from_pretrained(tmp_path / "second").attributes["mode"]["variable"] == 1
    assert demvae([*gaussian, "--supervise-variables", "0", "--output-dir", str(tmp_path / "gaussian")]) == 2
    assert "--supervise-variables ties labels to categorical variables" in capsys.readouterr().err
