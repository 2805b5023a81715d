"""Dialog corpora: SMD and DailyDialog as responses in context, their tokenization and the collator."""

import json

import pytest
import torch
from conftest import write_dialog_corpus
from datasets import Dataset
from dialog_helpers import synthetic_tokenizer

from modeling_demvae.conversation import split_conversations
from modeling_demvae.dialog_data import DialogCollator, load_dialog_corpus, tokenize_dialogs
from modeling_demvae.tokenization_demvae import SPECIAL_TOKENS


def test_smd_every_turn_after_the_first_is_a_response(data_dir):
    folder = data_dir / "smd"
    if not (folder / "kvret_train_public.json").is_file():
        pytest.skip(f"SMD not found at {folder}")
    corpus = load_dialog_corpus("smd", data_dir=data_dir)
    for split, file in (("train", "train"), ("validation", "dev"), ("test", "test")):
        dialogues = json.loads((folder / f"kvret_{file}_public.json").read_text())
        rows = corpus[split]
        assert len(rows) == sum(max(len(d["dialogue"]) - 1, 0) for d in dialogues)  # 10,308 / 1,265 / 1,325
    assert len(corpus["train"]) == 10308
    first = json.loads((folder / "kvret_train_public.json").read_text())[0]
    turns = first["dialogue"]
    row = corpus["train"][len(turns) - 2]  # the first dialogue's last response
    assert row["context"] == [{"role": {"driver": "user", "assistant": "assistant"}[t["turn"]],
                               "content": t["data"]["utterance"].strip()} for t in turns[:-1]]
    assert row["response"] == turns[-1]["data"]["utterance"].strip()
    assert (row["speaker"], row["intent"], row["dialogue"]) == ("assistant", first["scenario"]["task"]["intent"], 0)
    assert set(corpus["train"]["speaker"]) == {"user", "assistant"}
    assert set(corpus["test"]["intent"]) == {"navigate", "schedule", "weather"}


def test_daily_dialog_dialogues_alternate_speakers(tmp_path):
    folder = write_dialog_corpus(tmp_path / "dd", num_dialogues=4)
    corpus = load_dialog_corpus(str(folder), context_turns=1)
    dialogues = (folder / "train" / "dialogues.txt").read_text().splitlines()
    acts = (folder / "train" / "dialogues_act.txt").read_text().splitlines()
    train = corpus["train"]
    assert len(train) == 4 * 2 and set(corpus) == {"train", "validation", "test"}
    utterances = [u.strip() for u in dialogues[0].split("__eou__")][:3]
    assert train[0]["context"] == [{"role": "user", "content": utterances[0]}]
    assert (train[0]["response"], train[0]["speaker"], train[0]["act"]) == (utterances[1], "assistant",
                                                                              int(acts[0].split()[1]))
    assert train[1]["context"] == [{"role": "assistant", "content": utterances[1]}]  # context_turns=1
    assert train[1]["speaker"] == "user"


def test_tokenization_marks_speakers_and_cuts_turns():
    tokenizer = synthetic_tokenizer()
    assert tokenizer.convert_tokens_to_ids([*SPECIAL_TOKENS, "<usr>", "<sys>"]) == list(range(6))
    rows = Dataset.from_dict({
        "context": [[{"role": "user", "content": "Take me to the PARK, you are welcome!"},
                     {"role": "assistant", "content": "the zoo is five miles away ."}]],
        "response": ["take me to the bank and the park and the zoo please"], "speaker": ["user"]})
    row = tokenize_dialogs(rows, tokenizer, max_response_length=6, max_utterance_length=7)[0]
    words = tokenizer.convert_ids_to_tokens
    # lower-cased, punctuation split off, the markers and the last words kept
    assert words(row["context_ids"][0]) == ["<s>", "<usr>", "you", "are", "welcome", "!", "</s>"]
    assert words(row["context_ids"][1]) == ["<s>", "<sys>", "five", "miles", "away", ".", "</s>"]
    assert words(row["input_ids"]) == ["<s>", "<usr>", "take", "me", "to", "</s>"]  # a response keeps its start
    assert row["length"] == 6
    chat = tokenizer.apply_chat_template(rows[0]["context"], add_generation_prompt=True, return_dict=True)["input_ids"]
    config = type("Limits", (), dict(bos_token_id=1, eos_token_id=2, pad_token_id=0, context_turns=30,
                                     max_utterance_length=7))
    context_ids, context_mask, prompt, _ = split_conversations(torch.tensor([chat]), None, config)
    assert [turn[mask.bool()].tolist() for turn, mask in zip(context_ids[0], context_mask[0])] == row["context_ids"]
    assert words(prompt[0].tolist()) == ["<s>", "<sys>"]


def test_collator_pads_tokens_and_turns():
    features = [{"input_ids": [1, 5, 9, 2], "context_ids": [[1, 4, 7, 2]]},
                {"input_ids": [1, 4, 2], "context_ids": [[1, 4, 8, 9, 10, 2], [1, 5, 2]]}]
    batch = DialogCollator(pad_token_id=0)(features)
    assert batch["context_input_ids"].tolist() == [[[1, 4, 7, 2, 0, 0], [0] * 6],
                                                   [[1, 4, 8, 9, 10, 2], [1, 5, 2, 0, 0, 0]]]
    assert torch.equal(batch["context_attention_mask"], batch["context_input_ids"].ne(0).long())
    assert batch["input_ids"].tolist() == [[1, 5, 9, 2], [1, 4, 2, 0]]
    assert batch["labels"].tolist() == [[1, 5, 9, 2], [1, 4, 2, -100]]
