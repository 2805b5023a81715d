"""The dialog evaluation's metrics, each against an independent computation: the per-response records of a tiny
model against a row-by-row computation, BLEU by hand (NLTK and sacrebleu agreeing), entity F1 and distinct-n on hand
examples, the homogeneity and the perplexity from records by hand."""

import json
import math
import re

import numpy as np
import pytest
import torch
from dialog_helpers import synthetic_dialogs, synthetic_tokenizer, tiny_dialog_model
from sklearn.metrics import homogeneity_score

from modeling_demvae.dialog_data import DialogCollator, tokenize_dialogs
from modeling_demvae.metrics.dialog import dialog_records, dialog_scores, distinct_n, word_splitter
from modeling_demvae.metrics.entities import EntityMatcher, entity_scores


def words(text: str) -> list[str]:
    """SMD's words as the dialog tokenizer splits them, by the regular expression it documents."""
    return re.findall(r"\w+|[^\w\s]+", text.lower())


@pytest.fixture(scope="module")
def tokenizer():
    return synthetic_tokenizer()


def records_of(references, hypotheses, **columns) -> dict:
    n = len(references)
    actions = [[0]] * n
    return {"reference": references, "generated": hypotheses, "speaker": ["assistant"] * n, "nll": [1.0] * n,
            "tokens": [2] * n, "gold_components": actions, "policy_components": actions,
            "generated_components": actions, "read_back_components": actions, **columns}


def test_records_equal_a_row_by_row_computation(tokenizer):
    """Batched (4 rows a batch for 11 rows: none dropped), the records equal each response computed alone: the policy's
    argmax, the gold response's posterior c, the greedy response from `<s> <speaker>` and its posterior c read back,
    and the gold response's NLL teacher-forced through the decoding path given its posterior mean."""
    model = tiny_dialog_model(len(tokenizer), seed=1).eval()
    rows = tokenize_dialogs(synthetic_dialogs(11, seed=4), tokenizer)
    records = dialog_records(model, tokenizer, rows, batch_size=4, max_new_tokens=6)
    assert {len(values) for values in records.values()} == {11}
    collate, eos = DialogCollator(pad_token_id=tokenizer.pad_token_id), tokenizer.eos_token_id
    policy_hits = consistent = 0
    for i in range(len(rows)):
        one = collate([rows[i]])
        context = {"context_input_ids": one["context_input_ids"],
                   "context_attention_mask": one["context_attention_mask"]}
        with torch.no_grad():
            policy = model.policy(**context).argmax(-1)[0].tolist()
            posterior = model.response_vae.encode(one["input_ids"])
        gold = posterior.component_probs.argmax(-1)[0].tolist()
        generated = model.generate(one["input_ids"][:, :2], **context, max_new_tokens=6)[0, 2:].tolist()
        new = generated[:generated.index(eos)] if eos in generated else generated
        with torch.no_grad():
            read_back = model.response_vae.encode(torch.tensor([[*one["input_ids"][0, :2].tolist(), *new, eos]]))
            encoded = model.encode_context(**context)
            logits = model(one["input_ids"], latent=model.response_vae.posterior_latent(posterior, sample=False),
                           context_state=encoded.state, context_memory=encoded.memory,
                           context_memory_mask=encoded.memory_mask).logits[0]
        log_probs = logits[:-1].double().log_softmax(-1)
        nll = -sum(log_probs[t, token].item() for t, token in enumerate(one["input_ids"][0, 1:].tolist()))
        assert records["policy_components"][i] == policy and records["gold_components"][i] == gold
        assert records["generated_components"][i] == policy  # greedy: the policy's action
        assert records["read_back_components"][i] == read_back.component_probs.argmax(-1)[0].tolist()
        assert records["generated"][i] == tokenizer.decode(new, skip_special_tokens=True).split()
        assert records["reference"][i] == words(rows["response"][i])
        assert records["nll"][i] == pytest.approx(nll, rel=1e-5)
        assert records["tokens"][i] == len(one["input_ids"][0]) - 1
        policy_hits += policy == gold
        consistent += records["read_back_components"][i] == policy
    scores = dialog_scores(records, num_components=3)
    assert scores["policy_accuracy"] == pytest.approx(policy_hits / 11)
    assert scores["action_consistency"] == pytest.approx(consistent / 11)
    actions = {key: np.array(records[key]) for key in ("policy_components", "gold_components",
                                                       "read_back_components", "generated_components")}
    by_group = np.mean(actions["policy_components"] == actions["gold_components"], axis=0)
    read_back = np.mean(actions["read_back_components"] == actions["generated_components"], axis=0)
    assert scores["policy_accuracy_per_group"] == pytest.approx(by_group.tolist())
    assert scores["action_consistency_per_group"] == pytest.approx(read_back.tolist())
    assert 0 < by_group.mean() < 1 and 0 < read_back.mean() < 1  # untrained: agreeing and disagreeing actions
    assert scores["ppl"] == pytest.approx(math.exp(sum(records["nll"]) / sum(records["tokens"])))
    assert scores["nll"] == pytest.approx(sum(records["nll"]) / 11)


def test_the_tokenizer_s_words_are_the_documented_split(tokenizer):
    text = "Your Dentist's at 7pm, ok?!"
    assert word_splitter(tokenizer)(text) == words(text) == ["your", "dentist", "'", "s", "at", "7pm", ",", "ok", "?!"]


def test_corpus_bleu_by_hand_with_nltk_and_sacrebleu_agreeing():
    """Corpus BLEU sums clipped n-gram matches over the corpus: here 9/11, 6/9, 4/7, 2/5 and the brevity penalty
    exp(1 - 12/11); with a match at every order neither smoothing applies, and NLTK and sacrebleu agree within 0.01
    BLEU points. A response shorter than n words differs: NLTK counts max(1, its n-grams) in the denominator (0/1
    where sacrebleu adds 0/0), so short responses lower NLTK's BLEU only."""
    references = [words("the cat sat on a mat"), words("it is sunny in paris today")]
    hypotheses = [words("the cat sat on the mat"), words("it is sunny in rome")]
    by_hand = 100 * math.exp(1 - 12 / 11) * (9 / 11 * 6 / 9 * 4 / 7 * 2 / 5) ** 0.25
    scores = dialog_scores(records_of(references, hypotheses), num_components=1)
    assert scores["bleu"] == pytest.approx(by_hand, abs=1e-9)
    assert abs(scores["sacrebleu"] - scores["bleu"]) < 0.01

    short = dialog_scores(records_of([*references, ["ok", "."]], [*hypotheses, ["ok"]]), num_components=1)
    brevity = math.exp(1 - 14 / 12)
    assert short["sacrebleu"] == pytest.approx(100 * brevity * (10 / 12 * 6 / 9 * 4 / 7 * 2 / 5) ** 0.25, abs=1e-6)
    assert short["bleu"] == pytest.approx(100 * brevity * (10 / 12 * 6 / 10 * 4 / 8 * 2 / 6) ** 0.25, abs=1e-9)


def test_distinct_n_by_hand():
    sentences = [["a", "b", "a"], ["a", "b"], []]
    assert distinct_n(sentences, 1) == pytest.approx(2 / 5)  # a b a a b
    assert distinct_n(sentences, 2) == pytest.approx(2 / 3)  # (a b) (b a) (a b): none across sentences
    scores = dialog_scores(records_of([["x"]] * 3, sentences), num_components=1)
    assert (scores["distinct_1"], scores["distinct_2"]) == (pytest.approx(0.4), pytest.approx(2 / 3))
    assert distinct_n([[]], 1) == 0.0


def test_entity_f1_on_a_hand_example(tmp_path):
    """Multiword entities match as whole runs, longest first (not "100" inside "conference room 100"); a point of
    interest's name, address and type count; "7 pm" and "100f" are SMD's spellings of 7pm and 100."""
    path = tmp_path / "kvret_entities.json"
    path.write_text(json.dumps({"room": ["conference room 100"], "temperature": [100], "time": ["7pm"],
                                "poi": [{"poi": "Chef Chu's", "address": "593 Arrowhead Way",
                                         "type": "chinese restaurant"}]}))
    matcher = EntityMatcher.from_file(path, words)
    assert matcher.find(words("meet in conference room 100 at 7 pm")) == {"conference room 100", "7pm"}
    assert matcher.find(words("100F at Chef Chu's")) == {"100", "chef chu's"}
    references = [words("The meeting is in conference room 100 at 7pm"), words("Chef Chu's is at 593 Arrowhead Way"),
                  words("you are welcome")]
    hypotheses = [words("your meeting is at 7 pm in conference room 50"),  # 7pm found, the room missed
                  words("chef chu's is a chinese restaurant, 100f"),  # the name found; the type and 100 extra
                  words("it is 7pm")]  # named where nothing was to be named
    true_positives, false_positives, false_negatives = 2, 3, 2
    precision, recall = 2 / (2 + 3), 2 / (2 + 2)
    scores = entity_scores(references, hypotheses, matcher)
    assert scores["precision"] == pytest.approx(precision) and scores["recall"] == pytest.approx(recall)
    assert scores["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert scores["gold_entities"] == true_positives + false_negatives and false_positives == 3
    speakers = {"speaker": ["assistant", "user", "assistant"]}
    by_speaker = dialog_scores(records_of(references, hypotheses, **speakers), num_components=1, entities=matcher)
    assert by_speaker["entity_f1"]["all"] == pytest.approx(scores["f1"])
    assert by_speaker["entity_precision"]["assistant"] == pytest.approx(1 / 2)  # rows 1 and 3: 1 of 2 named
    assert by_speaker["entity_recall"]["user"] == pytest.approx(1 / 2)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an entity list like SMD's kvret_entities.json"):
        EntityMatcher.from_file(tmp_path / "bad.json", words)


def test_homogeneity_of_the_actions_by_hand():
    """The gold actions (two groups) as clusters, c_0 * K + c_1, scored against the intent with scikit-learn; the
    chance level is the mean over 20 seeded shuffles of the labels."""
    gold = [[0, 1], [0, 1], [2, 0], [2, 0], [1, 1], [0, 1]]
    intents = ["weather", "weather", "navigate", "navigate", "schedule", "navigate"]
    records = records_of([["x"]] * 6, [["x"]] * 6, gold_components=gold)
    scores = dialog_scores(records, labels={"intent": intents}, num_components=3, seed=7)
    clusters = [a * 3 + b for a, b in gold]
    expected = homogeneity_score(intents, clusters)
    rng = np.random.default_rng(7)
    chance = np.mean([homogeneity_score(np.array(intents)[rng.permutation(6)], clusters) for _ in range(20)])
    assert scores["homogeneity"]["intent"] == pytest.approx(expected)
    assert scores["homogeneity_chance"]["intent"] == pytest.approx(chance)
    assert scores["homogeneity_adjusted"]["intent"] == pytest.approx(expected - chance)


def test_actions_in_use_by_hand():
    """exp of the entropy of each group's gold actions: one component in use gives 1, four equally used give 4, and a
    quarter/three quarters split gives exp(H(1/4, 3/4))."""
    gold = [[2, 0, 0], [2, 1, 1], [2, 2, 1], [2, 3, 1], [2, 0, 1], [2, 1, 0], [2, 2, 1], [2, 3, 1]] * 3
    scores = dialog_scores(records_of([["x"]] * 24, [["x"]] * 24, gold_components=gold), num_components=4)
    split = math.exp(-(1 / 4 * math.log(1 / 4) + 3 / 4 * math.log(3 / 4)))
    assert scores["actions_in_use_per_group"] == pytest.approx([1.0, 4.0, split])
    assert scores["actions_in_use"] == pytest.approx((1.0 + 4.0 + split) / 3)
