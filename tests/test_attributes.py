"""Supervised attributes: the config entry, the cross-entropy term, generation by label, and training with labels."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import BLOCK_OUR_PACKAGE, TINY, components_of, sharp_prior, tiny_batch, tiny_model
from demvae.checkpoints import list_checkpoints
from demvae.cli import main as demvae
from safetensors.torch import load_file

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration
from modeling_demvae.data import LABEL_NAMES, with_attribute_labels
from modeling_demvae.synthetic import synthetic_corpus

ACTS = list(LABEL_NAMES["act"].values())
EMOTIONS = list(LABEL_NAMES["emotion"].values())[:4]
# "emotion" on group 0 and "act" on group 2 of the tiny model (3 groups of 4 components); columns sorted by name
ATTRIBUTES = {"emotion": {"group": 0, "labels": EMOTIONS}, "act": {"group": 2, "labels": ACTS}}
LABELS = torch.tensor([[0, 3], [-100, 1], [2, -100]])  # (act, emotion) per sentence; -100: unlabelled


def attribute_model(**overrides):
    return tiny_model(attributes=ATTRIBUTES, **overrides)


# ----- the config -----


def test_attributes_are_completed_sorted_and_survive_save_and_load(tmp_path):
    model = attribute_model(attribute_loss_weight=0.3)
    assert list(model.config.attributes) == ["act", "emotion"]  # config.json sorts keys: so does the config
    assert model.config.attributes["act"] == {"group": 2, "variable": None, "labels": ACTS, "supervised": True,
                                              "values": {label: [i] for i, label in enumerate(ACTS)}}
    model.save_pretrained(tmp_path)
    loaded = DEMVAEConfig.from_pretrained(tmp_path)
    assert loaded.attributes == model.config.attributes and loaded.attribute_loss_weight == 0.3
    assert list(loaded.attributes["act"]["values"]) == ACTS


@pytest.mark.parametrize("attributes, message", [
    ({"act": {"group": 3, "labels": ACTS}}, r"group must be an integer in \[0, num_groups=3\), got 3"),
    ({"act": {"group": 0, "labels": ACTS + ["x"]}}, r"has 5 labels but group 0's component .* takes 4 values"),
    ({"act": {"group": 0, "labels": ["a", "a"]}}, "labels must be a non-empty list of distinct label names"),
    ({"act": {"group": 0, "labels": ACTS, "values": {"inform": [1], "question": [0], "directive": [2],
                                                     "commissive": [3]}}}, "supervised attribute maps label i to"),
    ({"act": {"group": 0, "labels": ACTS, "supervised": False, "values": {"inform": [4], "question": [],
                                                                          "directive": [], "commissive": []}}},
     r"distinct integers in \[0, 4\)"),
    ({"act": {"group": 0, "labels": ACTS, "supervised": False}}, "values must map each label of"),
    ({"act": {"group": 0, "variable": 1, "labels": ACTS}}, "only prior_family='categorical' has"),
    ({"act": {"group": 0, "labels": ACTS}, "emotion": {"group": 0, "labels": EMOTIONS}}, "supervise the same latent"),
    ({"act": {"group": 0, "label": ACTS}}, "must be a dict with keys among"),
])
def test_bad_attributes_are_refused_in_one_line(attributes, message):
    with pytest.raises(ValueError, match=message) as error:
        tiny_model(attributes=attributes)
    assert "\n" not in str(error.value)


def test_bad_attribute_settings_are_refused():
    with pytest.raises(ValueError, match="variant='vae' has no discrete latent"):
        tiny_model(variant="vae", attributes={"act": {"group": 0, "labels": ACTS}})
    with pytest.raises(ValueError, match="attribute_loss_weight must be non-negative"):
        tiny_model(attribute_loss_weight=-1.0)


# ----- the cross-entropy term -----


def test_attribute_loss_is_the_cross_entropy_of_q_c_over_the_labelled_entries():
    model = attribute_model(deterministic_eval=True, attribute_loss_weight=0.7).eval()
    input_ids, mask = tiny_batch()
    out = model(input_ids, mask, attribute_labels=LABELS)
    logits = model.encode(input_ids, mask).component_logits
    expected = torch.zeros(())
    for column, group in ((0, 2), (1, 0)):  # act on group 2, emotion on group 0
        for row in range(3):
            if LABELS[row, column] != -100:
                expected -= torch.log_softmax(logits[row, group], -1)[LABELS[row, column]]
    torch.testing.assert_close(out.attribute_loss, expected / 3)  # per sentence: the batch size divides
    unlabelled = model(input_ids, mask)
    assert unlabelled.attribute_loss is None
    torch.testing.assert_close(out.loss, unlabelled.loss + 0.7 * expected / 3)


def test_bad_attribute_labels_are_refused():
    input_ids, mask = tiny_batch()
    with pytest.raises(ValueError, match="attribute_labels needs attributes in the config"):
        tiny_model()(input_ids, mask, attribute_labels=LABELS)
    model = attribute_model()
    with pytest.raises(ValueError, match=r"shape \(batch, 2\), one column per attribute \['act', 'emotion'\]"):
        model(input_ids, mask, attribute_labels=LABELS[:, :1])
    with pytest.raises(ValueError, match=r"label ids in \[0, 4\) or -100, got \[-100, 1, 4\]"):
        model(input_ids, mask, attribute_labels=torch.tensor([[0, 4], [-100, 1], [2, -100]]))
    mapped = tiny_model(attributes={"act": {"group": 0, "labels": ACTS, "supervised": False,
                                            "values": {"inform": [0], "question": [1, 2], "directive": [],
                                                       "commissive": [3]}}})
    with pytest.raises(ValueError, match="'act' is not supervised"):
        mapped(input_ids, mask, attribute_labels=torch.tensor([[0], [1], [-100]]))


def test_slices_of_a_batch_with_unlabelled_rows_have_its_attribute_loss_and_gradient():
    """Two slices, one all unlabelled: their mean is the whole batch's term because each sentence is divided by the
    batch size, not the label count (a per-slice mean over labels would count the labelled slice twice)."""
    model = attribute_model(dropout=0.0, initializer_range=1.0).double().train()
    input_ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0], [1, 11, 2, 0, 0, 0], [1, 12, 13, 14, 2, 0]])
    mask = input_ids.ne(0).long()
    labels = torch.tensor([[0, 3], [1, -100], [-100, -100], [-100, -100]])
    noise = model.posterior_noise(4, generator=torch.Generator().manual_seed(1))
    whole = model(input_ids, mask, attribute_labels=labels, posterior_noise=noise, kl_weight=0.5)
    whole.loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    with torch.no_grad():
        aggregate = model.encode(input_ids, mask).component_probs.mean(0)
    sliced, per_label_mean = 0.0, 0.0
    for rows in (slice(0, 2), slice(2, 4)):
        part = model(input_ids[rows], mask[rows], attribute_labels=labels[rows], kl_weight=0.5,
                     posterior_noise={k: v[rows] for k, v in noise.items()}, aggregate_component_probs=aggregate)
        (part.loss / 2).backward()
        sliced += part.attribute_loss.detach() / 2
        per_label_mean += part.attribute_loss.detach() * 2 / max(1, int((labels[rows] != -100).sum())) / 2
    torch.testing.assert_close(sliced, whole.attribute_loss.detach())
    assert abs(per_label_mean - whole.attribute_loss.detach() * 4 / 3) > 1e-3  # the other normalization differs
    for name, p in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(p.grad, expected[name], msg=name)


# ----- generation by label -----


def test_sample_prior_fixes_the_attribute_s_component_and_draws_the_others():
    model = sharp_prior(attribute_model())
    components = components_of(model, model.sample_prior(300, attributes={"act": "directive", "emotion": "fear"}))
    assert (components[:, 2] == 2).all() and (components[:, 0] == 3).all()
    assert set(components[:, 1].tolist()) == {0, 1, 2, 3}  # the free group from p(c)
    components = components_of(model, model.sample_prior(300, attributes={"act": "question"}))
    assert (components[:, 2] == 1).all() and set(components[:, 0].tolist()) == {0, 1, 2, 3}


def test_a_label_of_several_components_draws_among_them():
    model = sharp_prior(tiny_model(attributes={"act": {"group": 1, "labels": ACTS, "supervised": False, "values": {
        "inform": [0], "question": [1, 3], "directive": [], "commissive": [2]}}}))
    drawn = components_of(model, model.sample_prior(200, attributes={"act": "question"}))[:, 1]
    assert set(drawn.tolist()) == {1, 3}
    with pytest.raises(ValueError, match=r"act='directive' cannot be generated: it is the majority label of no "
                                         r"component of group 1; the labels of 'act' that can be generated are "
                                         r"\['inform', 'question', 'commissive'\]"):
        model.generate(attributes={"act": "directive"}, num_samples=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"attributes": {"topic": "sport"}}, r"unknown attribute 'topic'; this model has \['act', 'emotion'\]"),
    ({"attributes": {"act": "greeting"}}, r"unknown label 'greeting' of attribute 'act'; its labels are \['inform'"),
    ({"attributes": {"act": "question"}, "component": [0, 1, 2]}, "pass either component= or attributes="),
])
def test_bad_generation_attributes_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        attribute_model().generate(num_samples=2, **kwargs)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="this model has no attributes"):
        tiny_model().generate(attributes={"act": "question"}, num_samples=2)


def generated(model):
    torch.manual_seed(3)
    ids = model.generate(attributes={"act": "question"}, num_samples=4, max_new_tokens=5)
    torch.manual_seed(3)
    return ids, model.sample_prior(50, attributes={"act": "question"})


def test_generation_by_label_round_trips_through_save_and_load(tmp_path):
    model = sharp_prior(attribute_model()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "attributes.py").is_file()  # carried with the modeling source
    loaded = DEMVAEForGeneration.from_pretrained(tmp_path)
    for a, b in zip(generated(model), generated(loaded), strict=True):
        assert torch.equal(a, b)
    assert (components_of(loaded, generated(loaded)[1])[:, 2] == 1).all()


def test_generation_by_label_through_trust_remote_code_without_our_package(tmp_path, tmp_path_factory):
    model = sharp_prior(attribute_model()).eval()
    model.save_pretrained(tmp_path)
    ids, latent = generated(model)
    script = BLOCK_OUR_PACKAGE + textwrap.dedent(f"""
        import json, torch
        torch.set_num_threads({torch.get_num_threads()})
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        torch.manual_seed(3)
        ids = model.generate(attributes={{"act": "question"}}, num_samples=4, max_new_tokens=5)
        torch.manual_seed(3)
        latent = model.sample_prior(50, attributes={{"act": "question"}})
        try:
            model.generate(attributes={{"act": "greeting"}}, num_samples=1)
        except ValueError as error:
            message = str(error)
        print(json.dumps({{"ids": ids.tolist(), "latent": latent.tolist(), "message": message}}))
        """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path_factory.mktemp("hf_home")))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=tmp_path_factory.mktemp("elsewhere"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["ids"] == ids.tolist()
    torch.testing.assert_close(torch.tensor(remote["latent"]), latent)
    assert "its labels are ['inform', 'question', 'directive', 'commissive']" in remote["message"]


# ----- training with labels -----


def test_labelled_fraction_hides_whole_rows_chosen_by_the_seed():
    split = synthetic_corpus(num_train=40, num_valid=0, num_test=0)["train"]
    names = {"mode": LABEL_NAMES["mode"]}
    full = with_attribute_labels(split, ["mode"], names)["attribute_labels"]
    assert [row[0] for row in full] == split["mode"]  # the synthetic mode index is its label id
    half = [with_attribute_labels(split, ["mode"], names, labelled_fraction=0.25, seed=seed)["attribute_labels"]
            for seed in (0, 0, 1)]
    assert half[0] == half[1] != half[2]
    kept = [i for i, row in enumerate(half[0]) if row != [-100]]
    assert len(kept) == 10 and all(half[0][i] == full[i] for i in kept)


def final_weights(output_dir) -> dict[str, torch.Tensor]:
    return load_file(list_checkpoints(Path(output_dir) / "checkpoints")[-1] / "model.safetensors")


def test_semi_supervised_training_with_gradient_accumulation_equals_one_big_batch(labelled_corpus, tmp_path):
    run = ["train", "--dataset", labelled_corpus, *TINY, "--num-components", "8", "--dropout", "0",
           "--supervise", "mode", "--supervise-groups", "1", "--labelled-fraction", "0.5", "--max-steps", "6",
           "--eval-every", "6"]
    assert demvae([*run, "--output-dir", str(tmp_path / "big")]) == 0
    assert demvae([*run, "--output-dir", str(tmp_path / "acc"), "--gradient-accumulation-steps", "4"]) == 0
    big, acc = final_weights(tmp_path / "big"), final_weights(tmp_path / "acc")
    assert max((big[k] - acc[k]).abs().max().item() for k in big) < 1e-5
    config = DEMVAEConfig.from_pretrained(tmp_path / "big")
    assert config.attributes["mode"]["group"] == 1 and config.attributes["mode"]["labels"][0] == "question"
    summary = json.loads((tmp_path / "big" / "training_summary.json").read_text())
    assert summary["validation"]["attribute_loss"] > 0


def test_supervise_refuses_a_column_the_corpus_lacks(labelled_corpus, tmp_path, capsys):
    assert demvae(["train", "--dataset", labelled_corpus, *TINY, "--supervise", "act", "--max-steps", "1",
                   "--output-dir", str(tmp_path)]) == 2
    assert "--supervise act: the train split has no such column; its columns are" in capsys.readouterr().err
