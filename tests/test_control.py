"""Labels for unsupervised models (`demvae label-components`) and control accuracy with its cached classifier."""

import json
import pickle
from collections import Counter

import pytest
import torch
from conftest import TINY, components_of, sharp_prior
from demvae import component_labels, files
from demvae.cli import main as demvae
from demvae.loading import load_model_and_tokenizer
from demvae.model_card import render_model_card
from sklearn.metrics import homogeneity_score

from modeling_demvae import data
from modeling_demvae.metrics import control
from modeling_demvae.metrics.control import LabelClassifier, cached_classifier, control_accuracy
from modeling_demvae.synthetic import synthetic_corpus

MODES = list(data.LABEL_NAMES["mode"].values())


def named(split):
    return split["text"], [MODES[m] for m in split["mode"]]


# ----- the classifier -----


def test_the_ceiling_is_the_balanced_accuracy_and_rare_labels_are_read_back():
    """9 in 10 sentences of one label: the classifier, whose labels weigh equally, still reads the rare ones, and its
    macro accuracy is scikit-learn's balanced accuracy."""
    from sklearn.metrics import balanced_accuracy_score

    corpus = synthetic_corpus(num_train=2000, num_valid=0, num_test=400, seed=4)
    texts, labels = named(corpus["train"])
    common = labels[0]
    keep = [i for i, label in enumerate(labels) if label == common or i % 12 == 0]  # the others kept 1 in 12
    classifier = control.train_classifier([texts[i] for i in keep], [labels[i] for i in keep], label_names=MODES)
    test_texts, test_labels = named(corpus["test"])
    predicted = classifier.predict(test_texts)
    assert classifier.macro_accuracy(test_texts, test_labels) == pytest.approx(
        balanced_accuracy_score(test_labels, predicted))
    rare = [p == t for p, t in zip(predicted, test_labels, strict=True) if t != common]
    assert sum(rare) / len(rare) > 0.9


def test_the_classifier_is_cached_reused_and_retrained_for_another_corpus(tmp_path, monkeypatch):
    corpus = synthetic_corpus(num_train=400, num_valid=0, num_test=200, seed=1)
    classifier, cached = cached_classifier(*named(corpus["train"]), label_names=MODES, cache_dir=tmp_path)
    assert not cached and classifier.macro_accuracy(*named(corpus["test"])) > 0.95  # the types are easy to tell
    assert {p.name for p in tmp_path.rglob("*") if p.is_file()} == {"classifier.json", "classifier.safetensors"}
    monkeypatch.setattr(control, "train_classifier", lambda *a, **k: pytest.fail("retrained a cached classifier"))
    again, cached = cached_classifier(*named(corpus["train"]), label_names=MODES, cache_dir=tmp_path)
    assert cached and again.predict(corpus["test"]["text"]) == classifier.predict(corpus["test"]["text"])
    monkeypatch.undo()
    other = synthetic_corpus(num_train=400, num_valid=0, num_test=0, seed=2)["train"]
    _, cached = cached_classifier(*named(other), label_names=MODES, cache_dir=tmp_path)
    assert not cached and len(list(tmp_path.iterdir())) == 2


def test_loading_a_classifier_never_unpickles(tmp_path, monkeypatch):
    corpus = synthetic_corpus(num_train=100, num_valid=0, num_test=0)["train"]
    classifier, _ = cached_classifier(*named(corpus), label_names=MODES, cache_dir=tmp_path)
    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("unpickled"))
    loaded = LabelClassifier.load(next(tmp_path.iterdir()))
    assert loaded.predict(corpus["text"]) == classifier.predict(corpus["text"])


# ----- label-components -----


@pytest.fixture
def unsupervised_model(labelled_corpus, tmp_path):
    folder = tmp_path / "model"
    assert demvae(["train", "--dataset", labelled_corpus, *TINY, "--num-components", "4", "--max-steps", "30",
                   "--eval-every", "30", "--output-dir", str(folder)]) == 0
    return folder


def expected_mapping(folder, corpus_path):
    """The mapping computed here: argmax q(c_g|x), the most homogeneous group, each component's majority label."""
    model, tokenizer = load_model_and_tokenizer(folder)
    split = data.load_corpus(corpus_path)["train"]
    ids = data.sentence_ids(tokenizer, split["text"], max_length=model.config.max_sentence_length)
    batch = data.PaddingCollator()([{"input_ids": sentence} for sentence in ids])
    with torch.no_grad():
        argmax = model.encode(batch["input_ids"], batch["attention_mask"]).component_probs.argmax(-1)
    labels = [MODES[m] for m in split["mode"]]
    scores = [homogeneity_score(labels, argmax[:, g].tolist()) for g in range(argmax.shape[1])]
    group = scores.index(max(scores))
    counts = {k: Counter(label for label, c in zip(labels, argmax[:, group].tolist()) if c == k)
              for k in range(model.config.num_components)}
    majority = {k: sorted(count, key=lambda label: (-count[label], label))[:1] for k, count in counts.items()}
    values = {label: [k for k, top in majority.items() if top == [label]] for label in MODES}
    return group, values


def test_label_components_writes_the_majority_mapping_and_generation_uses_it(unsupervised_model, labelled_corpus,
                                                                               capsys):
    assert demvae(["label-components", str(unsupervised_model), "--dataset", labelled_corpus, "--labels", "mode",
                   "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "majority label" in out and "wrote the mapping into" in out
    spec = json.loads((unsupervised_model / "config.json").read_text())["attributes"]["mode"]
    group, values = expected_mapping(unsupervised_model, labelled_corpus)
    assert spec == {"group": group, "variable": None, "labels": MODES, "supervised": False, "values": values}
    assert not [p for p in unsupervised_model.iterdir() if p.name.startswith(".config-")]  # no temporary left
    model, _ = load_model_and_tokenizer(unsupervised_model)
    sharp_prior(model)
    label = next(label for label, components in values.items() if components)
    drawn = components_of(model, model.sample_prior(200, attributes={"mode": label}))[:, group]
    assert set(drawn.tolist()) == set(values[label])


def test_label_components_replaces_config_json_atomically(unsupervised_model, labelled_corpus, monkeypatch, capsys):
    before = (unsupervised_model / "config.json").read_bytes()

    def crash(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        component_labels.write_attributes(unsupervised_model, {"mode": {"group": 0, "labels": MODES,
                                                                        "supervised": False,
                                                                        "values": {m: [] for m in MODES}}})
    assert (unsupervised_model / "config.json").read_bytes() == before
    monkeypatch.undo()
    assert demvae(["label-components", str(unsupervised_model), "--dataset", labelled_corpus, "--labels",
                   "act"]) == 2
    assert "label column(s) ['act'] not in" in capsys.readouterr().err


# ----- control accuracy -----


@pytest.mark.slow
def test_a_supervised_model_controls_its_label_and_a_label_blind_generator_does_not(tmp_path):
    """On the synthetic corpus (8 known sentence types), about 20 s of training on one thread."""
    folder, cache = tmp_path / "supervised", tmp_path / "cache"
    assert demvae(["train", "--supervise", "mode", "--output-dir", str(folder), "--max-steps", "800",
                   "--eval-every", "400", "--embed-size", "32", "--encoder-hidden-size", "32",
                   "--decoder-hidden-size", "32", "--num-components", "8", "--latent-size", "4",
                   "--kl-annealing-midpoint", "50", "--kl-annealing-slope", "0.05", "--learning-rate", "0.005",
                   "--num-samples", "0"]) == 0
    output = tmp_path / "evaluation.json"
    assert demvae(["evaluate", str(folder), "--dataset", "synthetic", "--metrics", "control", "--control-samples",
                   "50", "--classifier-cache", str(cache), "--output", str(output), "--no-progress"]) == 0
    evaluation = json.loads(output.read_text())
    assert evaluation["control_accuracy"]["mode"] >= 0.9
    assert evaluation["control_ceiling"]["mode"] >= 0.99
    assert set(evaluation["control_per_label"]) == {f"mode: {m}" for m in MODES}

    model, tokenizer = load_model_and_tokenizer(folder)
    classifier, cached = cached_classifier(*named(synthetic_corpus()["train"]), label_names=MODES, cache_dir=cache)
    assert cached
    blind = control_accuracy(model, tokenizer, classifier, "mode", num_samples=50,
                             sample_latents=lambda label, n, generator: model.sample_prior(n, generator=generator))
    assert blind["macro"] < 0.25  # chance is 1/8

    card = str(render_model_card(model, tokenizer, repo_id="me/m", evaluations=[evaluation]))
    assert "Control accuracy, macro over labels (mode)" in card and "attributes={'mode': 'question'}" in card
