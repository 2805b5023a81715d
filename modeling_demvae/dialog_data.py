"""Dialog corpora as `datasets` splits of responses in context, their tokenization as (turns, tokens), and the
collator that pads tokens and turns.

Every turn after a dialog's first, the user's (SMD's driver) and the assistant's alike, is a response: a row with
its "context" (the previous turns, at most `context_turns`, in transformers' chat format: `{"role": "user" |
"assistant", "content": text}`), its "response" text and its "speaker" role, plus label columns: SMD's dialog
"intent", DailyDialog's "act" and "emotion" of the response; "dialogue" and "turn" say where it comes from.

Text keeps its case in the corpus; the dialog tokenizer lower-cases it, as the sentence corpora are: SMD's drivers
type in lower case and its assistant writes capitals, so case would mark the speaker rather than the words, double
the vocabulary of a small corpus, and part entity mentions ("Dish Parking") from their values ("dish parking").
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict

from .conversation import clipped_turn, context_tensors
from .data import PaddingCollator, _checked_corpus, daily_dialog_split, default_data_dir, sentence_ids
from .tokenization_demvae import build_tokenizer

# speakers are special tokens, not words: never split or lower-cased, ids fixed whatever the corpus (4 and 5), never
# cut from the vocabulary, and hidden by `skip_special_tokens` in decoded responses
SPEAKER_TOKENS = {"user": "<usr>", "assistant": "<sys>"}  # the reference's markers (SMD: driver = user)
SMD_ROLES = {"driver": "user", "assistant": "assistant"}
SMD_FILES = {"train": "kvret_train_public.json", "validation": "kvret_dev_public.json",
             "test": "kvret_test_public.json"}
CONTEXT_TURNS = 30  # the reference's
DIALOG_LABEL_COLUMNS = ("intent", "act", "emotion")  # SMD's dialog intent; DailyDialog's act and emotion
# each turn `<s> <speaker> words </s>`; add_generation_prompt opens the assistant's turn, the response's start
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ('user', 'assistant') -%}"
    "{{ raise_exception('a dialog turn is the user or the assistant speaking, not ' + message['role']) }}"
    "{%- endif -%}"
    "<s> {{ '<usr>' if message['role'] == 'user' else '<sys>' }} {{ message['content'] }} </s> "
    "{%- endfor -%}"
    "{%- if add_generation_prompt %} <s> <sys>{% endif -%}"
)


def dialog_rows(dialogues, *, context_turns: int = CONTEXT_TURNS) -> dict[str, list]:
    """Rows of responses in context from dialogues given as lists of (role, text, labels) turns."""
    rows = {"context": [], "response": [], "speaker": [], "dialogue": [], "turn": []}
    for index, turns in enumerate(dialogues):
        for position in range(1, len(turns)):
            role, text, labels = turns[position]
            rows["context"].append([{"role": r, "content": t} for r, t, _ in turns[max(0, position - context_turns):
                                                                                   position]])
            rows["response"].append(text)
            rows["speaker"].append(role)
            rows["dialogue"].append(index)
            rows["turn"].append(position)
            for name, value in labels.items():
                rows.setdefault(name, []).append(value)
    return rows


def smd_split(path: str | os.PathLike, *, context_turns: int = CONTEXT_TURNS) -> Dataset:
    """One SMD (KVRET) file as responses in context, each with its dialog's "intent"."""
    path = Path(path)
    try:
        dialogues = json.loads(path.read_text(encoding="utf-8"))
        turns = [[(SMD_ROLES[turn["turn"]], turn["data"]["utterance"].strip(),
                   {"intent": dialogue["scenario"]["task"]["intent"]}) for turn in dialogue["dialogue"]]
                 for dialogue in dialogues]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not an SMD (KVRET) file: a JSON list of dialogues with 'dialogue' turns "
                         f"('turn': driver or assistant, 'data': {{'utterance': ...}}) and 'scenario' "
                         f"{{'task': {{'intent': ...}}}} ({type(error).__name__}: {error}).") from None
    return Dataset.from_dict(dialog_rows(turns, context_turns=context_turns))


def daily_dialog_dialogues_split(folder: str | os.PathLike, *, context_turns: int = CONTEXT_TURNS) -> Dataset:
    """One DailyDialog split as responses in context, with the response's "act" and "emotion". Its two speakers
    alternate; the first is the user, as SMD's driver, who opens the dialog."""
    utterances = daily_dialog_split(folder)
    dialogues = {}
    for text, act, emotion, index in zip(utterances["text"], utterances["act"], utterances["emotion"],
                                         utterances["dialogue"]):
        turns = dialogues.setdefault(index, [])
        turns.append(("user" if len(turns) % 2 == 0 else "assistant", text, {"act": act, "emotion": emotion}))
    return Dataset.from_dict(dialog_rows(list(dialogues.values()), context_turns=context_turns))


def dialog_corpus_folder(source: str, *, data_dir=None) -> Path:
    """The folder of a dialog corpus named "smd" or "daily_dialog" (in `data_dir`, default `default_data_dir()`), or
    the folder `source` itself."""
    if str(source) not in ("smd", "daily_dialog"):
        return Path(source).expanduser()
    folder = (Path(data_dir) if data_dir is not None else default_data_dir()) / str(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"dialog corpus {source!r} not found at {folder}; set DEMVAE_DATA_DIR to the "
                                f"folder holding {source}/.")
    return folder


def load_dialog_corpus(source: str = "smd", *, data_dir=None, context_turns: int = CONTEXT_TURNS) -> DatasetDict:
    """A dialog corpus by name ("smd", "daily_dialog": read from `data_dir`, default `default_data_dir()`) or folder
    (SMD's kvret_*_public.json files, or DailyDialog's train/validation/test layout), as train, validation and test
    splits of responses in context. Every response is kept."""
    folder = dialog_corpus_folder(source, data_dir=data_dir)
    if (folder / SMD_FILES["train"]).is_file():
        splits = {name: smd_split(folder / file, context_turns=context_turns)
                  for name, file in SMD_FILES.items() if (folder / file).is_file()}
    elif (folder / "train" / "dialogues.txt").is_file():
        splits = {name: daily_dialog_dialogues_split(folder / name, context_turns=context_turns)
                  for name in ("train", "validation", "test") if (folder / name).is_dir()}
    else:
        raise FileNotFoundError(f"no dialog corpus found at {folder}: it needs SMD's {SMD_FILES['train']} (and the "
                                "dev and test files) or DailyDialog's train/dialogues.txt with its label files.")
    return _checked_corpus(splits, f"dialog corpus {folder}")


def build_dialog_tokenizer(dataset: Dataset, *, max_vocab_size: int = 10_000, lowercase: bool = True,
                           model_max_length: int = 40):
    """A word-level tokenizer for dialogs from a training split: words and punctuation split apart (SMD is raw
    text), the speaker tokens, and a chat template that writes a conversation as the model reads it."""
    first_turns = [context[0]["content"] for context, turn in zip(dataset["context"], dataset["turn"]) if turn == 1]
    texts = [*dataset["response"], *first_turns]  # every turn of every dialog
    tokenizer = build_tokenizer(texts, max_vocab_size=max_vocab_size, lowercase=lowercase,
                                model_max_length=model_max_length, split_punctuation=True,
                                extra_special_tokens=tuple(SPEAKER_TOKENS.values()))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def turn_ids(tokenizer, roles, texts, *, max_length: int) -> list[list[int]]:
    """Each text as `<s> <speaker> words </s>` of at most `max_length` tokens; the sentence pipeline's rule (the
    first words and `</s>` kept) with the speaker token after `<s>`."""
    ids = sentence_ids(tokenizer, texts, max_length=max_length - 1)
    speakers = tokenizer.convert_tokens_to_ids([SPEAKER_TOKENS[role] for role in roles])
    return [[sentence[0], speaker, *sentence[1:]] for sentence, speaker in zip(ids, speakers)]


def tokenize_dialogs(dataset, tokenizer, *, max_response_length: int = 40, max_utterance_length: int = 40):
    """Add "input_ids" (the response, `<s> <speaker> words </s>`, its first words kept), "length" and
    "context_ids" (each context turn `<s> <speaker> words </s>`, cut to `max_utterance_length` keeping its last
    words, as the model cuts a conversation it is given). A Dataset or a DatasetDict; other columns are kept."""

    def encode(batch):
        responses = turn_ids(tokenizer, batch["speaker"], batch["response"], max_length=max_response_length)
        contexts = []
        for context in batch["context"]:
            whole = turn_ids(tokenizer, [turn["role"] for turn in context], [turn["content"] for turn in context],
                             max_length=10**9)
            contexts.append([clipped_turn(turn, max_utterance_length) for turn in whole])
        return {"input_ids": responses, "length": [len(x) for x in responses], "context_ids": contexts}

    return dataset.map(encode, batched=True, desc="Tokenizing dialogs")


@dataclass
class DialogCollator(PaddingCollator):
    """The responses padded as the sentence collator pads them ("input_ids", "attention_mask", "labels"), and their
    contexts as right-padded "context_input_ids" (B, turns, tokens) with "context_attention_mask"."""

    def __call__(self, features: list[dict]):
        batch = super().__call__(features)
        batch["context_input_ids"], batch["context_attention_mask"] = context_tensors(
            [feature["context_ids"] for feature in features], self.pad_token_id)
        return batch


__all__ = ["CHAT_TEMPLATE", "DIALOG_LABEL_COLUMNS", "DialogCollator", "SPEAKER_TOKENS", "build_dialog_tokenizer",
           "daily_dialog_dialogues_split", "dialog_corpus_folder", "dialog_rows", "load_dialog_corpus", "smd_split",
           "tokenize_dialogs"]
