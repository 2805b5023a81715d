"""`demvae demo` on a dialog model: the Conversation tab's `/respond` (the policy, the response through its action,
the response through a chosen action), and the Components and Read tabs over the response VAE, called through
Gradio's own client against the app served on 127.0.0.1, each answer checked against the model called directly (the
conversation as the data pipeline's context tensors, not the chat template the app goes through)."""

import argparse

import pytest
import torch
from dialog_helpers import synthetic_tokenizer, tiny_dialog_model, write_smd_files

gradio_client = pytest.importorskip("gradio_client", reason="the demo's tests need gradio: pip install -e '.[dev]'")
from demvae.demo_app import explorer_app  # noqa: E402
from demvae.demo_launch import loaded_and_placed  # noqa: E402
from test_demo import decoded, serving  # noqa: E402

from modeling_demvae.conversation import context_tensors  # noqa: E402
from modeling_demvae.dialog_data import SPEAKER_TOKENS, load_dialog_corpus, turn_ids  # noqa: E402

TURNS = ["what is the weather in rome", "it will be sunny in rome .", "take me to the zoo"]


def dialog_args(model_dir, corpus, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{"model": str(model_dir), "dataset": corpus, "test_file": None, "max_sentences": 2000,
                                 "num_threads": 1, **changes})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained dialog model and its tokenizer, saved."""
    folder = tmp_path_factory.mktemp("dialog_model")
    tokenizer = synthetic_tokenizer()
    tiny_dialog_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def smd_corpus(tmp_path_factory):
    return write_smd_files(tmp_path_factory.mktemp("dialog_demo") / "smd", {"train": 12, "dev": 4, "test": 6})


@pytest.fixture(scope="module")
def served(model_dir, smd_corpus, demo_cache):
    """(client, model, tokenizer, placement) of the app served on a free port of 127.0.0.1 for a tiny dialog model."""
    model, tokenizer, placement = loaded_and_placed(dialog_args(model_dir, smd_corpus))
    with serving(explorer_app(model, tokenizer, placement, title="test")) as client:
        yield client, model, tokenizer, placement


def pipeline_inputs(tokenizer, config) -> dict:
    """The conversation's turns as the data pipeline writes them, (1, turns, tokens) ids and mask, and the
    response's start `<s> <assistant>`."""
    turns = turn_ids(tokenizer, ["user", "assistant", "user"], TURNS, max_length=config.max_utterance_length)
    context_input_ids, context_attention_mask = context_tensors([turns], config.pad_token_id)
    start = [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(SPEAKER_TOKENS["assistant"])]
    return {"context_input_ids": context_input_ids, "context_attention_mask": context_attention_mask,
            "input_ids": torch.tensor([start])}


def test_respond_shows_the_policy_and_the_responses_of_its_action_and_of_the_chosen_one(served):
    client, model, tokenizer, _ = served
    bars, action, response, chosen_response = client.predict("\n".join(TURNS), 2, 1, api_name="/respond")
    inputs = pipeline_inputs(tokenizer, model.config)
    policy = model.policy(inputs["context_input_ids"], inputs["context_attention_mask"])[0]
    shown = torch.tensor([row[2] for row in bars["data"]]).view_as(policy)
    torch.testing.assert_close(shown, policy)
    best = policy.argmax(-1)
    assert all(f"group {g}: {k}" in action for g, k in enumerate(best.tolist()))
    expected = model.generate(**inputs, return_dict_in_generate=True)
    assert expected.components[0].tolist() == best.tolist()  # greedy: the policy's argmax action
    assert response == tokenizer.decode(expected.sequences[0], skip_special_tokens=True)
    chosen = model.generate(**inputs, component=[2, 1])
    assert chosen_response == tokenizer.decode(chosen[0], skip_special_tokens=True)
    assert chosen_response != response  # this model answers [2, 1] otherwise than the policy's action


def test_respond_refuses_a_conversation_that_does_not_end_with_the_user(served):
    client = served[0]
    for text, message in (("  ", "type a conversation"), ("\n".join(TURNS[:2]), "end with a user turn")):
        with pytest.raises(gradio_client.exceptions.AppError, match=message):
            client.predict(text, 0, 0, api_name="/respond")


def test_components_tab_generates_from_the_response_vae(served, smd_corpus):
    client, model, tokenizer, placement = served
    responses = load_dialog_corpus(smd_corpus)["test"]  # the test responses, placed by the response VAE
    assert [tokenizer.decode(ids, skip_special_tokens=True) for ids in placement.sentences] == responses["response"]
    with torch.no_grad():
        posterior = model.response_vae.encode(torch.tensor(placement.sentences[:1]))
    torch.testing.assert_close(placement.posterior.component_probs[:1], posterior.component_probs)
    text, facts, _ = client.predict(1, 2, "", 3, False, 1.0, 1.0, 0, api_name="/generate")
    torch.manual_seed(0)
    codes = torch.randint(3, (3, 2))
    codes[:, 1] = 2
    assert text.split("\n") == decoded(tokenizer, model.response_vae.generate(component=codes, num_samples=3))
    assert f"({len(responses)} real sentences placed)" in facts


def test_read_sentence_reads_it_as_an_assistant_response(served):
    client, model, tokenizer, _ = served
    bars, _, reconstruction, _ = client.predict(TURNS[1], 2, 0, api_name="/read_sentence")
    words = tokenizer(TURNS[1], add_special_tokens=False)["input_ids"]
    response = [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(SPEAKER_TOKENS["assistant"]), *words,
                tokenizer.eos_token_id]
    with torch.no_grad():
        posterior = model.response_vae.encode(torch.tensor([response]))
    shown = torch.tensor([row[2] for row in bars["data"]]).view_as(posterior.component_probs[0])
    torch.testing.assert_close(shown, posterior.component_probs[0])
    mean = model.response_vae.generate(latent=posterior.mean)
    assert reconstruction == tokenizer.decode(mean[0], skip_special_tokens=True)


def test_a_dialog_model_refuses_a_test_file(model_dir):
    with pytest.raises(ValueError, match="not --test-file"):
        loaded_and_placed(dialog_args(model_dir, None, test_file="sentences.txt"))
