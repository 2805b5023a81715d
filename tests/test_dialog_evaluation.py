"""`demvae evaluate` and `demvae inspect` on a dialog model, its card, and the text-generation pipeline with chat
messages: a tiny untrained model saved with its tokenizer, its corpus a small one in SMD's layout written here."""

import json
import re
import shutil

import pytest
import torch
from demvae import dialog_evaluation
from demvae.cli import main as demvae
from demvae.loading import load_model_and_tokenizer
from demvae.model_folder import DIALOG_MODEL_TYPE
from dialog_helpers import tiny_dialog_model, write_smd_folder
from huggingface_hub import ModelCard
from transformers import pipeline

from modeling_demvae import DEMVAEDialogConfig
from modeling_demvae.dialog_data import build_dialog_tokenizer, load_dialog_corpus, tokenize_dialogs
from modeling_demvae.metrics.dialog import dialog_records, dialog_scores, word_splitter
from modeling_demvae.metrics.entities import EntityMatcher


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A dialog model folder whose training summary records its corpus, as `demvae train` writes it."""
    root = tmp_path_factory.mktemp("dialog")
    corpus = write_smd_folder(root / "smd")
    tokenizer = build_dialog_tokenizer(load_dialog_corpus(str(corpus))["train"])
    folder = root / "model"
    tiny_dialog_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "training_summary.json").write_text(json.dumps({"data": {"sources": {"dataset": str(corpus)}}}))
    return folder, corpus


def copied(saved, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    return folder


def test_evaluate_measures_every_test_response_into_the_json_and_the_card(saved, tmp_path, capsys):
    folder, corpus = copied(saved, tmp_path), saved[1]
    assert demvae(["evaluate", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder / 'evaluation.json'}\nwrote the model card {folder / 'README.md'}" in out
    evaluation = json.loads((folder / "evaluation.json").read_text())

    model, tokenizer = load_model_and_tokenizer(folder)
    test = tokenize_dialogs(load_dialog_corpus(str(corpus))["test"], tokenizer)
    entities = EntityMatcher.from_file(corpus / "kvret_entities.json", word_splitter(tokenizer))
    expected = dialog_scores(dialog_records(model, tokenizer, test), labels={"intent": test["intent"]},
                             num_components=3, entities=entities)
    assert evaluation["settings"]["test_responses"] == len(test) == 6 * 3  # 6 dialogs of 4 turns: none dropped
    assert {key: evaluation[key] for key in expected} == json.loads(json.dumps(expected))
    assert set(evaluation["entity_f1"]) == {"all", "assistant", "user"}

    card = ModelCard.load(folder / "README.md")
    values = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert values[("policy_accuracy", None)] == evaluation["policy_accuracy"]
    assert values[("entity_f1", "user")] == evaluation["entity_f1"]["user"]
    assert values[("homogeneity_above_chance", "intent")] == evaluation["homogeneity_adjusted"]["intent"]
    assert f"| Action consistency (generated response reads back as its action) | " \
           f"{evaluation['action_consistency']:.4g} |" in card.text
    assert "DEM-VAE dialog model" in card.text and "`response_config.num_components` | `3`" in card.text
    assert "dialog" in card.data.tags
    assert model.config.paper_name == "DGM-VAE + MI latent actions"  # what `demvae push` names in its commit


def test_the_card_s_usage_snippet_answers_a_chat_with_and_without_component(saved, tmp_path, capsys):
    folder = copied(saved, tmp_path)
    assert demvae(["evaluate", str(folder), "--no-progress", "--max-sentences", "4"]) == 0
    snippet = re.search(r"```python\n(from transformers import AutoTokenizer\n.*?)```", (folder / "README.md")
                        .read_text(), re.DOTALL).group(1)
    assert "component=[k] * 2" in snippet and "apply_chat_template" in snippet
    capsys.readouterr()
    exec(snippet, {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[[") and [line.split()[0] for line in printed[1:]] == ["0", "1", "2"]


def test_a_dialog_model_refuses_the_sentence_model_s_options(saved, capsys):
    folder = saved[0]
    for option in (["--metrics", "nll"], ["--test-file", "t.txt"]):
        assert demvae(["evaluate", str(folder), *option]) == 2
        error = capsys.readouterr().err
        assert f"{option[0]} applies to sentence models" in error and "policy accuracy" in error
    assert demvae(["inspect", str(folder), "--test-file", "t.txt"]) == 2
    assert "--test-file holds sentences" in capsys.readouterr().err
    assert DEMVAEDialogConfig.model_type == DIALOG_MODEL_TYPE


def test_an_interrupted_evaluation_resumes_to_the_same_numbers(saved, tmp_path, monkeypatch, capsys):
    folder = copied(saved, tmp_path)
    monkeypatch.setattr(dialog_evaluation, "DIALOG_CHUNK", 5)
    assert demvae(["evaluate", str(folder), "--no-progress"]) == 0
    whole = json.loads((folder / "evaluation.json").read_text())
    calls, records = [], dialog_evaluation.dialog_records

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return records(*args, **kwargs)

    monkeypatch.setattr(dialog_evaluation, "dialog_records", interrupted)
    assert demvae(["evaluate", str(folder), "--no-progress"]) == 130
    progress = json.loads((folder / "evaluation.json.partial").read_text())
    assert len(progress["dialog_chunks"]) == 2
    monkeypatch.setattr(dialog_evaluation, "dialog_records", records)
    capsys.readouterr()
    assert demvae(["evaluate", str(folder), "--no-progress", "--resume"]) == 0
    assert "2 dialog chunk(s) done" in capsys.readouterr().out
    resumed = json.loads((folder / "evaluation.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    assert not (folder / "evaluation.json.partial").exists()


def test_inspect_reports_each_action_s_words_and_responses(saved, tmp_path):
    folder = copied(saved, tmp_path)
    assert demvae(["inspect", str(folder), "--examples", "2", "--samples-per-component", "10"]) == 0
    report = (folder / "inspection" / "components.md").read_text()
    assert (folder / "inspection" / "latent_space.png").is_file()
    assert report.count("### Component") == 2 * 3 and report.count("- characteristic words: ") == 6
    blocks = report.split("- responses through it:\n")[1:]
    assert len(blocks) == 6 and all(re.match(r"  1\. .+\n  2\. .+\n", block) for block in blocks)
    assert "| intent |" in report and "speakers: " in report

    model, tokenizer = load_model_and_tokenizer(folder)
    test = tokenize_dialogs(load_dialog_corpus(str(saved[1]))["test"], tokenizer)
    first = test[test["speaker"].index("assistant")]  # the first example: the driver's request, then the answer
    context = torch.tensor(first["context_ids"]).unsqueeze(0)  # (1, 1 turn, tokens)
    policy = model.policy(context).argmax(-1)
    ids = model.generate(torch.tensor([first["input_ids"][:2]]), context_input_ids=context,
                         component=[1, policy[0, 1].item()])  # group 0 set to component 1, group 1 the policy's
    expected = tokenizer.decode(ids[0, 2:], skip_special_tokens=True).strip() or "(empty)"
    assert blocks[1].startswith(f"  1. {expected}\n")


def test_the_text_generation_pipeline_answers_chat_messages(saved):
    model, tokenizer = load_model_and_tokenizer(saved[0])
    chat = [{"role": "user", "content": "what is the weather in paris"}]
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    answers = []
    for options in ({}, {"component": [2, 2]}):  # the policy's action, then another: component= passes through
        answer = generator(chat, max_new_tokens=5, **options)[0]["generated_text"]
        assert answer[:-1] == chat and answer[-1]["role"] == "assistant"
        ids = model.generate(**inputs, max_new_tokens=5, **options)
        expected = tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert answer[-1]["content"] == expected and expected.startswith(" ")  # a continuation's mark
        answers.append(expected)
    assert answers[0] != answers[1]
