"""Tiny dialog models and a synthetic dialog corpus in which the type of each response follows from its context."""

import json
import random
from pathlib import Path

import torch
from datasets import Dataset

from modeling_demvae import DEMVAEDialogConfig, DEMVAEForDialogGeneration
from modeling_demvae.dialog_data import build_dialog_tokenizer

SLOTS = {"CITY": "paris rome oslo lima".split(), "PLACE": "bank park mall zoo".split(),
         "EVENT": "lunch dentist meeting yoga".split(), "DAY": "monday friday sunday".split(),
         "SKY": "sunny rainy windy".split(), "MILES": "two five nine".split()}
# the user's request, and the assistant's response of the same type
DIALOG_TYPES = {
    "weather": ("what is the weather in {CITY}", "it will be {SKY} in {CITY} ."),
    "navigate": ("take me to the {PLACE}", "the {PLACE} is {MILES} miles away ."),
    "schedule": ("when is my {EVENT}", "your {EVENT} is on {DAY} ."),
    "thanks": ("thank you so much", "you are welcome , goodbye !"),
}


DIALOG_NAMES = list(DIALOG_TYPES)
SMD_SPEAKERS = {"user": "driver", "assistant": "assistant"}


def fill(template: str, rng: random.Random) -> str:
    return " ".join(rng.choice(SLOTS[word[1:-1]]) if word.startswith("{") else word for word in template.split())


def synthetic_dialogs(num_rows: int, seed: int = 0) -> Dataset:
    """Responses in context (the dialog corpora's columns) with their "type": the context is an optional earlier
    exchange of any type, then the user's request; the response answers the request, so its type follows from the
    context's last turn."""
    rng, names = random.Random(seed), list(DIALOG_TYPES)
    rows = {"context": [], "response": [], "speaker": [], "turn": [], "type": []}
    for _ in range(num_rows):
        context = []
        for _ in range(rng.randrange(2)):
            request, answer = DIALOG_TYPES[rng.choice(names)]
            context += [{"role": "user", "content": fill(request, rng)},
                        {"role": "assistant", "content": fill(answer, rng)}]
        kind = rng.randrange(len(names))
        request, answer = DIALOG_TYPES[names[kind]]
        context.append({"role": "user", "content": fill(request, rng)})
        rows["context"].append(context)
        rows["response"].append(fill(answer, rng))
        rows["speaker"].append("assistant")
        rows["turn"].append(len(context))
        rows["type"].append(kind)
    return Dataset.from_dict(rows)


def synthetic_tokenizer():
    """A dialog tokenizer that knows every word of the synthetic corpus."""
    return build_dialog_tokenizer(synthetic_dialogs(200, seed=123))


def tiny_dialog_config(vocab_size: int, **overrides) -> DEMVAEDialogConfig:
    response = dict(vocab_size=vocab_size, embed_size=16, encoder_hidden_size=16, decoder_hidden_size=16,
                    num_groups=2, num_components=3, latent_size=2, max_sentence_length=12)
    response.update(overrides.pop("response", {}))
    settings = dict(utterance_hidden_size=8, context_hidden_size=16, policy_hidden_size=16, attention_size=8)
    settings.update(overrides)
    return DEMVAEDialogConfig(response_config=response, **settings)


def tiny_dialog_model(vocab_size: int, seed: int = 0, **overrides) -> DEMVAEForDialogGeneration:
    torch.manual_seed(seed)
    return DEMVAEForDialogGeneration(tiny_dialog_config(vocab_size, **overrides))


def stage2_inputs(batch: dict) -> dict:
    return {name: batch[name] for name in ("input_ids", "attention_mask", "context_input_ids",
                                           "context_attention_mask")}


INTENTS = {"weather": "weather", "navigate": "navigate", "schedule": "schedule", "thanks": "navigate"}


def write_smd_folder(folder, *, dialogs_per_split: int = 6, seed: int = 0):
    """A corpus in SMD's layout (kvret_{train,dev,test}_public.json, kvret_entities.json) from the synthetic dialog
    types: each dialog a request and its answer, twice, its intent that of its first request."""
    import json
    from pathlib import Path

    rng, folder = random.Random(seed), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        dialogues = []
        for _ in range(dialogs_per_split):
            kinds = [rng.choice(list(DIALOG_TYPES)) for _ in range(2)]
            turns = []
            for kind in kinds:
                request, answer = DIALOG_TYPES[kind]
                turns += [{"turn": "driver", "data": {"utterance": fill(request, rng)}},
                          {"turn": "assistant", "data": {"utterance": fill(answer, rng).capitalize()}}]
            dialogues.append({"dialogue": turns, "scenario": {"task": {"intent": INTENTS[kinds[0]]}}})
        (folder / f"kvret_{split}_public.json").write_text(json.dumps(dialogues))
    entities = {"location": SLOTS["CITY"], "poi": [{"poi": place, "address": f"{n} main st", "type": "place"}
                                                  for n, place in enumerate(SLOTS["PLACE"], start=1)],
                "date": SLOTS["DAY"], "event": SLOTS["EVENT"], "weather_attribute": SLOTS["SKY"]}
    (folder / "kvret_entities.json").write_text(json.dumps(entities))
    return folder


def write_smd_files(folder, num_rows: dict[str, int] | None = None) -> str:
    """The synthetic dialogs as an SMD folder (kvret_{train,dev,test}_public.json), one dialog per response: what
    `demvae train --dataset FOLDER` reads as a dialog corpus."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = num_rows or {"train": 120, "dev": 24, "test": 24}
    for seed, (name, size) in enumerate(sizes.items()):
        rows = synthetic_dialogs(size, seed=seed)
        dialogs = [{"dialogue": [{"turn": SMD_SPEAKERS[turn["role"]], "data": {"utterance": turn["content"]}}
                                 for turn in context] + [{"turn": "assistant", "data": {"utterance": response}}],
                    "scenario": {"task": {"intent": DIALOG_NAMES[kind]}}}
                   for context, response, kind in zip(rows["context"], rows["response"], rows["type"])]
        (folder / f"kvret_{name}_public.json").write_text(json.dumps(dialogs), encoding="utf-8")
    return str(folder)
