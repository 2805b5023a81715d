"""`demvae evaluate`: the JSON's keys and values against the metric functions called directly; errors in one line."""

import json
import re

import pytest
import torch
from conftest import save_tiny_model, write_dialog_corpus
from demvae import evaluation
from demvae.cli import main
from transformers import PreTrainedTokenizerFast

from modeling_demvae import DEMVAEForGeneration, data, metrics

FLOAT32 = ["--mixed-precision", "no"]  # the comparisons below recompute in float32, whatever the CPU


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    corpus = write_dialog_corpus(root / "corpus")
    return save_tiny_model(root / "model", corpus), corpus


def test_evaluate_writes_every_key_consistent_with_the_metric_functions(saved, tmp_path, capsys):
    model_dir, corpus = saved
    output = tmp_path / "eval.json"
    code = main(["evaluate", str(model_dir), "--dataset", str(corpus), "--nll-samples", "7", "--rppl-samples", "40",
                 "--rppl-max-epochs", "2", "--output", str(output), "--seed", "3", "--no-progress",
                 *FLOAT32])
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
    clusters = metrics.combined_cluster_ids(posterior.component_probs)
    for label in ("act", "emotion"):  # the chance level of the model's own clusters, seeded with --seed
        chance = metrics.homogeneity_chance(clusters, split[label], seed=3)
        assert results["homogeneity_chance"][label] == pytest.approx(chance)
        assert results["homogeneity_adjusted"][label] == pytest.approx(results["homogeneity"][label] - chance)
    assert "homogeneity_chance (emotion)" in printed and "homogeneity_adjusted (act)" in printed
    assert results["mi"] == pytest.approx(metrics.mutual_information(posterior.component_probs).tolist())


def test_bleu_and_the_posterior_metrics_stream_through_the_test_set_in_chunks(saved, tmp_path, monkeypatch):
    """Test sentences 4 at a time (the last chunk shorter): BLEU, the collapse diagnostics and homogeneity equal the
    functions applied to the whole test set at once."""
    model_dir, corpus = saved
    monkeypatch.setattr(evaluation, "TEST_CHUNK", 4)
    seen = {"reconstructed": [], "encoded": []}

    def spy(function, name):
        def counted(model, sentences, **kwargs):
            seen[name].append(len(sentences))
            return function(model, sentences, **kwargs)
        return counted

    monkeypatch.setattr(metrics.bleu, "reconstruct", spy(metrics.bleu.reconstruct, "reconstructed"))
    monkeypatch.setattr(metrics, "encode_sentences", spy(metrics.encode_sentences, "encoded"))
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "bleu", "homogeneity", "collapse",
                 "--seed", "3", "--output", str(output), "--no-progress", *FLOAT32]) == 0
    results = json.loads(output.read_text())
    model = DEMVAEForGeneration.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    split = data.tokenize_corpus(data.load_corpus(str(corpus))["test"], tokenizer, max_length=12)
    test = split["input_ids"][:]
    assert seen["reconstructed"] == seen["encoded"] == [4, 4, 4, 4, 2] and len(test) == 18
    monkeypatch.undo()
    whole_bleu = metrics.reconstruction_bleu(model, test, tokenizer=tokenizer, chunk_size=len(test))
    assert {key: results[key] for key in whole_bleu} == pytest.approx(whole_bleu, rel=1e-12)
    posterior = metrics.encode_sentences(model, test)
    collapse = metrics.collapse_diagnostics(model, posterior)
    for key in ("mi", "batch_mi", "active_components", "component_spread", "dispersion"):
        assert results[key] == pytest.approx(collapse[key], rel=1e-6), key
    agreement = metrics.label_agreement(posterior.component_probs, {c: split[c][:] for c in ("act", "emotion")},
                                        seed=3)
    for label, scores in agreement.items():
        for key, value in scores.items():
            assert results[key][label] == pytest.approx(value, rel=1e-9), (key, label)


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
    assert "demvae evaluate: error: no model at " in capsys.readouterr().err
    assert main(["evaluate", str(model_dir)]) == 2  # a model saved without a run summary: no corpus recorded
    assert "no sentences to read: give --dataset or --test-file" in capsys.readouterr().err
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


def test_the_ceiling_trains_on_the_corpus_real_sentences(saved, tmp_path, capsys):
    model_dir, corpus = saved
    output = tmp_path / "ceiling.json"
    assert main(["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "ceiling", "--rppl-samples", "12",
                 "--rppl-max-epochs", "2", "--seed", "1", "--output", str(output), "--no-progress", *FLOAT32]) == 0
    results = json.loads(output.read_text())
    assert set(results) == {"ceiling", "seconds", "settings"}  # nothing about the model itself
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    splits = {name: data.tokenize_corpus(split, tokenizer, max_length=12)["input_ids"]
              for name, split in data.load_corpus(str(corpus)).items()}
    direct = metrics.reverse_perplexity_ceiling(splits["train"], splits["validation"], splits["test"], num_train=12,
                                                num_valid=1, vocab_size=len(tokenizer), max_epochs=2, seed=1)
    assert results["ceiling"] == pytest.approx(direct)
    assert len(splits["train"]) == 18 and results["ceiling"]["rppl_train_samples"] == 12  # 12 of the 18
    assert results["ceiling"]["rppl_valid_samples"] == 1
    test_file = tmp_path / "test.txt"
    test_file.write_text("the cat sat\n")
    capsys.readouterr()
    assert main(["evaluate", str(model_dir), "--test-file", str(test_file), "--metrics", "ceiling"]) == 2
    assert "the ceiling needs real training and validation sentences" in capsys.readouterr().err


def interrupt_once(monkeypatch, owner, name: str, *, at_call: int) -> list[dict]:
    """Make `owner.name` raise KeyboardInterrupt (as a kill would stop it) at its `at_call`-th call, the first time
    only; returns the keyword arguments of every call."""
    calls, direct, raised = [], getattr(owner, name), []

    def wrapper(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == at_call and not raised:
            raised.append(True)
            raise KeyboardInterrupt
        return direct(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_an_interrupted_evaluation_resumes_with_the_numbers_of_an_uninterrupted_one(saved, tmp_path, monkeypatch,
                                                                                    capsys):
    """The NLL in chunks, each seeded with seed + chunk: a resumed evaluation computes only the missing ones."""
    from demvae import evaluation

    model_dir, corpus = saved
    monkeypatch.setattr(evaluation, "NLL_CHUNK", 5)
    run = ["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "nll", "collapse", "--nll-samples",
           "4", "--seed", "2", "--no-progress", *FLOAT32]
    direct = metrics.sentence_log_likelihoods
    calls = interrupt_once(monkeypatch, metrics, "sentence_log_likelihoods", at_call=3)  # in the third chunk
    output = tmp_path / "resumed.json"
    assert main([*run, "--output", str(output)]) == 130  # Ctrl-C: one line and the shell's code, as for train
    partial = json.loads((tmp_path / "resumed.json.partial").read_text())
    assert len(partial["nll_chunks"]) == 2 and partial["finished"] == [] and not output.exists()
    assert partial["seconds"] > 0  # the time of the kept chunks
    calls.clear()
    capsys.readouterr()
    assert main([*run, "--output", str(output), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "Resuming the evaluation" in printed and "NLL: chunk 2 of 4" not in printed  # a line per chunk computed
    assert "NLL: chunk 3 of 4 (15 of 18 sentences)" in printed and "NLL: chunk 4 of 4 (18 of 18 sentences)" in printed
    assert re.search(r"^\[\d\d:\d\d:\d\d\] NLL: chunk 3 of 4 \(15 of 18 sentences\); \d+ min so far$", printed, re.M)
    assert not (tmp_path / "resumed.json.partial").exists()
    assert [call["seed"] for call in calls] == [4, 5]  # the 18 test sentences: chunks 2 and 3 (seeds 2 + 2, 2 + 3)
    monkeypatch.setattr(metrics, "sentence_log_likelihoods", direct)
    assert main([*run, "--output", str(tmp_path / "whole.json")]) == 0
    resumed, whole = (json.loads((tmp_path / name).read_text()) for name in ("resumed.json", "whole.json"))
    assert resumed.pop("seconds") > partial["seconds"] and whole.pop("seconds") > 0  # the earlier start counted
    assert resumed == whole

    model = DEMVAEForGeneration.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    test = data.tokenize_corpus(data.load_corpus(str(corpus))["test"], tokenizer, max_length=12)["input_ids"]
    log_likelihoods = [direct(model, test[start:start + 5], num_samples=4, seed=2 + start // 5)["log_likelihood"]
                       for start in range(0, len(test), 5)]
    assert whole["nll"] == pytest.approx(-sum(ll.sum().item() for ll in log_likelihoods) / len(test))
    assert whole["num_sentences"] == len(test) == 18


def test_an_evaluation_interrupted_in_the_language_model_continues_from_its_last_epoch(saved, tmp_path,
                                                                                       monkeypatch, capsys):
    from modeling_demvae.metrics import reverse_ppl

    model_dir, corpus = saved
    run = ["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "rppl", "--rppl-samples", "40",
           "--rppl-max-epochs", "3", "--no-progress"]
    assert main([*run, "--output", str(tmp_path / "whole.json")]) == 0
    # called for the validation after each epoch, then for the test set: interrupted in the second epoch
    calls = interrupt_once(monkeypatch, reverse_ppl, "language_model_perplexity", at_call=2)
    output = tmp_path / "resumed.json"
    assert main([*run, "--output", str(output)]) == 130  # Ctrl-C: one line and the shell's code, as for train
    checkpoint = tmp_path / "resumed.json.partial.rppl.pt"
    assert len(torch.load(checkpoint, weights_only=True)["history"]) == 1
    first_start = json.loads((tmp_path / "resumed.json.partial").read_text())["seconds"]  # saved after the epoch
    assert first_start > 0
    calls.clear()
    capsys.readouterr()
    assert main([*run, "--output", str(output), "--resume"]) == 0
    assert len(calls) == 3  # epochs 2 and 3, then the test set
    epochs = [line for line in capsys.readouterr().out.splitlines() if "rPPL language model: epoch" in line]
    assert [line.split("epoch ")[1].split(",")[0] for line in epochs] == ["2", "3"]  # a line per epoch trained
    assert not checkpoint.exists()
    resumed, whole = (json.loads((tmp_path / name).read_text()) for name in ("resumed.json", "whole.json"))
    assert resumed.pop("seconds") > first_start and whole.pop("seconds") > 0
    assert resumed == whole and whole["rppl_epochs"] == 3


def test_an_evaluation_resumed_from_an_untimed_progress_file_says_its_time_is_unknown(saved, tmp_path, monkeypatch):
    """A progress file from before evaluations were timed: the earlier starts' time is not known, so neither is
    the total (null), rather than this start's time passed off as the whole."""
    from demvae import evaluation

    model_dir, corpus = saved
    monkeypatch.setattr(evaluation, "NLL_CHUNK", 5)
    run = ["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "nll", "--nll-samples", "2",
           "--no-progress", *FLOAT32]
    interrupt_once(monkeypatch, metrics, "sentence_log_likelihoods", at_call=2)
    output = tmp_path / "old.json"
    assert main([*run, "--output", str(output)]) == 130
    partial = tmp_path / "old.json.partial"
    state = json.loads(partial.read_text())
    del state["seconds"]
    partial.write_text(json.dumps(state))
    assert main([*run, "--output", str(output), "--resume"]) == 0
    assert json.loads(output.read_text())["seconds"] is None
