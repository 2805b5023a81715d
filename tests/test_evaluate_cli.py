"""`demvae evaluate`: the JSON's keys and values against the metric functions called directly; errors in one line."""

import json

import pytest
from conftest import save_tiny_model, write_dialog_corpus
from demvae.cli import main
from transformers import PreTrainedTokenizerFast

from modeling_demvae import DEMVAEForGeneration, data, metrics


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    corpus = write_dialog_corpus(root / "corpus")
    return save_tiny_model(root / "model", corpus), corpus


def test_evaluate_writes_every_key_consistent_with_the_metric_functions(saved, tmp_path, capsys):
    model_dir, corpus = saved
    output = tmp_path / "eval.json"
    code = main(["evaluate", str(model_dir), "--dataset", str(corpus), "--nll-samples", "7", "--rppl-samples", "40",
                 "--rppl-max-epochs", "2", "--output", str(output), "--seed", "3", "--no-progress"])
    assert code == 0
    results = json.loads(output.read_text())
    for key in ("elbo", "nll", "ppl", "rppl", "bleu", "sacrebleu", "wkl", "homogeneity", "completeness", "nmi",
                "mi", "batch_mi", "active_components", "component_spread", "dispersion", "settings"):
        assert key in results, key
    assert set(results["homogeneity"]) == {"act", "emotion"}
    assert len(results["mi"]) == len(results["active_components"]) == len(results["component_spread"]) == 3
    assert results["settings"]["nll_samples"] == 7 and results["settings"]["rppl_samples"] == [40, 3]
    assert results["rppl_epochs"] <= results["settings"]["rppl_max_epochs"] == 2
    printed = capsys.readouterr().out
    assert "homogeneity (act)" in printed and f"wrote {output}" in printed

    model = DEMVAEForGeneration.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    split = data.tokenize_corpus(data.load_corpus(str(corpus))["test"], tokenizer, max_length=12)
    test = split["input_ids"]
    direct = metrics.importance_weighted_nll(model, test, num_samples=7, seed=3)
    assert results["nll"] == pytest.approx(direct["nll"]) and results["elbo"] == pytest.approx(direct["elbo"])
    assert results["bleu"] == pytest.approx(metrics.reconstruction_bleu(model, test, tokenizer=tokenizer)["bleu"])
    posterior = metrics.encode_sentences(model, test)
    expected = metrics.label_agreement(posterior.component_probs, {"act": split["act"]})["act"]["homogeneity"]
    assert results["homogeneity"]["act"] == pytest.approx(expected)
    assert results["mi"] == pytest.approx(metrics.mutual_information(posterior.component_probs).tolist())


def test_evaluate_with_text_files_and_a_subset_of_metrics(saved, tmp_path):
    model_dir, _ = saved
    test_file = tmp_path / "test.txt"
    test_file.write_text("the cat sat\na big dog ran on the mat\n")
    output = tmp_path / "out.json"
    assert main(["evaluate", str(model_dir), "--test-file", str(test_file), "--metrics", "nll", "collapse",
                 "--nll-samples", "3", "--output", str(output), "--no-progress"]) == 0
    results = json.loads(output.read_text())
    assert {"nll", "ppl", "elbo", "mi", "active_components"} <= set(results)
    assert not {"rppl", "bleu", "wkl", "homogeneity"} & set(results)
    assert results["settings"]["test_sentences"] == 2


def test_evaluate_errors_are_one_line(saved, tmp_path, capsys):
    model_dir, corpus = saved
    assert main(["evaluate", str(tmp_path / "missing"), "--dataset", str(corpus)]) == 2
    assert "demvae evaluate: error: no model found" in capsys.readouterr().err
    assert main(["evaluate", str(model_dir)]) == 2
    assert "no test sentences" in capsys.readouterr().err
    assert main(["evaluate", str(model_dir), "--dataset", str(corpus), "--labels", "topic", "--metrics",
                 "homogeneity", "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "error: label column(s) ['topic'] not in the test data" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:  # argparse checks the range, before any work
        main(["evaluate", str(model_dir), "--dataset", str(corpus), "--nll-samples", "0"])
    assert exit_.value.code == 2
    assert "argument --nll-samples: must be a positive integer, got 0" in capsys.readouterr().err


def test_a_model_that_generates_no_words_gets_an_undefined_wkl_not_an_error(saved, tmp_path, monkeypatch, capsys):
    model_dir, corpus = saved
    monkeypatch.setattr(metrics, "sample_sentences", lambda model, n, **kwargs: [[1, 2]] * n)  # "<s> </s>" only
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "wkl", "--rppl-samples", "5",
                 "--output", str(output), "--no-progress"]) == 0
    assert json.loads(output.read_text())["wkl"] is None
    assert "not finite" in capsys.readouterr().out
