"""The dialog experiment's evaluation (issue 30): a dialog model and a whole tokenized test split in, numbers out.

Every response of the split is used (batched in order, none dropped). Per response, `dialog_records` keeps:
- the gold response's posterior action c (the argmax of q(c|x) per group under the response VAE) and the policy's
  argmax given the context: their agreement is the policy accuracy;
- the response generated from the context (greedy unless generation options say otherwise; its start `<s>
  <speaker>` given, the speaker being the gold response's) through the policy's action, and the posterior action
  of that response re-encoded by the response VAE (read up to its first `</s>`, a `</s>` added when it has none):
  their agreement is the action consistency;
- the NLL of the gold response under the stage-2 decoder given the gold response's posterior z (its mean) and the
  context, as the reference reports the dialog model's perplexity: tokens after `<s>` (the speaker, the words and
  `</s>`) teacher-forced, the response cut as the data pipeline cuts it (`max_sentence_length`).

`dialog_scores` turns records into the metrics:
- `bleu` / `sacrebleu`: corpus BLEU (0-100) of the generated words against the gold response's words, no token
  dropped. Words are split by the tokenizer's own rule (lower-cased; SMD's punctuation split off) from the gold
  text as written, not mapped to the vocabulary, so a word the vocabulary lacks is a word missed and a generated
  `<unk>` matches nothing. NLTK: `corpus_bleu`, 4-grams, uniform weights, smoothing method 1 (as the reference);
  sacrebleu: its default `corpus_bleu` (13a tokenization of the space-joined words, exponential smoothing of zero
  counts, case kept, and the text is lower case). See `bleu.bleu_scores`. The two agree (within 0.01 points) where
  every n-gram order has a match and every response has at least 4 words; NLTK counts max(1, a response's n-grams)
  in each precision's denominator, so responses shorter than n words (SMD's "ok .") lower its score, and at low
  BLEU the two smooth zero counts differently.
- `policy_accuracy` / `action_consistency`: the share of responses whose action agrees in every group, and per
  group (`*_per_group`).
- `actions_in_use_per_group`: exp of the entropy of the gold responses' actions per group, the effective number of
  components the group uses (1 when every response is in one: that group's policy accuracy and consistency are then
  1 whatever the model does; up to K), and `actions_in_use`, its mean over groups.
- homogeneity, its chance level (labels shuffled 20 times, seeded) and the homogeneity above it, completeness and
  NMI of the gold responses' posterior actions against each label column (SMD: the dialog's intent), as
  `clustering.label_agreement` scores sentences.
- `distinct_1` / `distinct_2`: distinct word uni-/bigrams of all generated responses over their count (Li et al.,
  2016); bigrams do not cross responses.
- `nll` (nats per response, mean) and `ppl` (per-token perplexity, exp of the summed NLL over the tokens counted).
- with an `EntityMatcher` (SMD's `kvret_entities.json`): `entity_f1`, `entity_precision`, `entity_recall`
  (0-1, micro-averaged; see `entities`), over all responses and per speaker.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..dialog_data import DialogCollator
from .bleu import bleu_scores
from .clustering import label_agreement
from .entities import EntityMatcher, entity_scores
from .likelihood import next_token_targets, token_log_losses
from .sentences import encode_sentences


def word_splitter(tokenizer):
    """The tokenizer's rule for words, without its vocabulary: text -> words (normalized, pre-tokenized)."""
    backend = tokenizer.backend_tokenizer

    def split_words(text: str) -> list[str]:
        text = backend.normalizer.normalize_str(text) if backend.normalizer else text
        return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]

    return split_words


def new_tokens(ids: Sequence[int], prompt_length: int, eos_token_id: int) -> list[int]:
    """What a generated sequence adds after its prompt, up to its first `</s>` (after which come only pads)."""
    new = list(ids[prompt_length:])
    return new[:new.index(eos_token_id)] if eos_token_id in new else new


def response_words(ids: Sequence[int], tokenizer, prompt_length: int) -> list[str]:
    """The words of a generated sequence: its new tokens, special ones (`<s>`, a speaker) dropped as
    `decode(skip_special_tokens=True)` drops them, `<unk>` kept."""
    hidden = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    return tokenizer.convert_ids_to_tokens([token for token in new_tokens(ids, prompt_length, tokenizer.eos_token_id)
                                            if token not in hidden])


def as_response(ids: Sequence[int], prompt_length: int, config) -> list[int]:
    """A generated sequence as the response VAE reads one: the prompt, the new tokens, and `</s>`."""
    return [*ids[:prompt_length], *new_tokens(ids, prompt_length, config.eos_token_id), config.eos_token_id]


@torch.no_grad()
def batch_records(model, tokenizer, batch: dict, split_words, texts, **generation_kwargs) -> dict[str, list]:
    """The records of one collated batch (see the module's docstring)."""
    response = model.config.response_config
    ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
    context = {"context_input_ids": batch["context_input_ids"].to(model.device),
               "context_attention_mask": batch["context_attention_mask"].to(model.device)}
    out = model(input_ids=ids, attention_mask=mask, **context)
    nll = token_log_losses(out.logits[:, :-1], next_token_targets(ids, mask)).double().sum(-1)
    prompt = ids[:, :2]  # `<s> <speaker>`: the collator right-pads, and every response has both
    generation_kwargs.setdefault("max_new_tokens", response.max_sentence_length - prompt.shape[1])
    generated = model.generate(prompt, **context, return_dict_in_generate=True, **generation_kwargs)
    sequences = generated.sequences.tolist()
    read_back = encode_sentences(model.response_vae, [as_response(row, prompt.shape[1], response)
                                                      for row in sequences]).component_probs.argmax(-1)
    return {
        "gold_components": out.components.tolist(),
        "policy_components": out.policy_logits.argmax(-1).tolist(),
        "generated_components": generated.components.tolist(),
        "read_back_components": read_back.tolist(),
        "generated": [response_words(row, tokenizer, prompt.shape[1]) for row in sequences],
        "reference": [split_words(text) for text in texts],
        "nll": nll.tolist(),
        "tokens": (mask.sum(1) - 1).tolist(),
    }


def dialog_records(model, tokenizer, rows, *, batch_size: int = 64, progress: bool = False,
                   **generation_kwargs) -> dict[str, list]:
    """Per response of `rows` (a split as `tokenize_dialogs` writes it: "input_ids", "context_ids", "response",
    "speaker"), in order: the actions, the generated and gold words, the gold response's NLL and tokens counted.
    `generation_kwargs` go to `generate` (greedy by default; `do_sample=True` samples the policy's action too)."""
    if len(rows) == 0:
        raise ValueError("no responses to evaluate: the split is empty.")
    collate = DialogCollator(pad_token_id=model.config.pad_token_id)
    split_words = word_splitter(tokenizer)
    records = {"speaker": list(rows["speaker"])}
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(rows), batch_size), desc="dialog evaluation", disable=not progress):
            chunk = rows.select(range(start, min(start + batch_size, len(rows))))
            batch = collate([chunk[i] for i in range(len(chunk))])
            for key, values in batch_records(model, tokenizer, batch, split_words, chunk["response"],
                                             **generation_kwargs).items():
                records.setdefault(key, []).extend(values)
    finally:
        model.train(was_training)
    return records


def action_agreement(predicted, target) -> tuple[float, list[float]]:
    """(share of rows whose (G,) actions agree in every group, the share per group) of two (N, G) action lists."""
    equal = torch.as_tensor(predicted) == torch.as_tensor(target)
    return equal.all(-1).double().mean().item(), equal.double().mean(0).tolist()


def actions_in_use(actions) -> list[float]:
    """Per group of (N, G) actions, exp of the entropy of their distribution over the components: the effective
    number of components in use."""
    actions, used = torch.as_tensor(actions), []
    for group in actions.T:
        shares = torch.bincount(group).double() / len(group)
        shares = shares[shares > 0]
        used.append(float(torch.exp(-(shares * shares.log()).sum())))
    return used


def distinct_n(sentences: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of the sentences (n-grams within a sentence); 0 when there are none."""
    grams = [tuple(sentence[i:i + n]) for sentence in sentences for i in range(len(sentence) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def dialog_scores(records: dict[str, list], *, labels: dict[str, list] | None = None, num_components: int,
                  entities: EntityMatcher | None = None, seed: int = 0) -> dict:
    """The dialog metrics of `dialog_records`' records (see the module's docstring); `labels` (column -> one label
    per response) are scored against the gold posterior actions."""
    results = {**bleu_scores(records["reference"], records["generated"])}
    for name, (predicted, target) in {"policy_accuracy": ("policy_components", "gold_components"),
                                      "action_consistency": ("read_back_components", "generated_components")}.items():
        results[name], results[f"{name}_per_group"] = action_agreement(records[predicted], records[target])
    results["actions_in_use_per_group"] = actions_in_use(records["gold_components"])
    results["actions_in_use"] = sum(results["actions_in_use_per_group"]) / len(results["actions_in_use_per_group"])
    if labels:
        actions = F.one_hot(torch.as_tensor(records["gold_components"]), num_components)
        agreement = label_agreement(actions, labels, seed=seed)
        for key in next(iter(agreement.values())):
            results[key] = {label: scores[key] for label, scores in agreement.items()}
    results.update({f"distinct_{n}": distinct_n(records["generated"], n) for n in (1, 2)})
    total_nll, total_tokens = sum(records["nll"]), sum(records["tokens"])
    results["nll"] = total_nll / len(records["nll"])
    results["ppl"] = float(torch.tensor(total_nll / total_tokens, dtype=torch.float64).exp())
    if entities is not None:
        groups = {"all": range(len(records["speaker"]))}
        for speaker in sorted(set(records["speaker"])):
            groups[speaker] = [i for i, s in enumerate(records["speaker"]) if s == speaker]
        scores = {group: entity_scores([records["reference"][i] for i in rows], [records["generated"][i] for i in rows],
                                       entities) for group, rows in groups.items()}
        for key in ("f1", "precision", "recall"):
            results[f"entity_{key}"] = {group: score[key] for group, score in scores.items()}
    return results


__all__ = ["action_agreement", "actions_in_use", "as_response", "new_tokens", "dialog_records", "dialog_scores",
           "distinct_n", "response_words", "word_splitter"]
