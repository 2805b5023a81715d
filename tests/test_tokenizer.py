import pytest
from datasets import Dataset
from demvae.loading import load_tokenizer
from tokenizers import Tokenizer, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from modeling_demvae import build_tokenizer
from modeling_demvae.data import tokenize_corpus
from modeling_demvae.tokenization_demvae import SPECIAL_TOKENS

TEXTS = ["the cat sat on the mat", "The dog sat", "a cat ran <unk>", "the end"]


def test_special_tokens_take_the_config_default_ids():
    tokenizer = build_tokenizer(TEXTS)
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    ids = (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert ids == (0, 1, 2, 3)


def test_vocabulary_is_most_frequent_first_and_deterministic():
    tokenizer = build_tokenizer(TEXTS)
    vocab = tokenizer.get_vocab()
    # "the" x4 (lower-cased), then "cat" and "sat" x2, alphabetical among equals
    assert vocab["the"] == 4 and vocab["cat"] == 5 and vocab["sat"] == 6
    assert build_tokenizer(list(reversed(TEXTS))).get_vocab() == vocab


def test_encoding_starts_a_prompt_and_maps_unknown_words():
    """A prompt is `<s> words`: with `</s>` appended, generation would continue after the end of the sentence."""
    tokenizer = build_tokenizer(TEXTS)
    ids = tokenizer("the zebra sat")["input_ids"]
    assert ids == [1, tokenizer.convert_tokens_to_ids("the"), 3, tokenizer.convert_tokens_to_ids("sat")]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the <unk> sat"
    assert tokenizer("the end </s>")["input_ids"][-1] == 2  # a whole sentence, as the model was trained on it
    assert tokenizer.decode(tokenizer("a cat ran")["input_ids"], skip_special_tokens=True) == "a cat ran"
    assert tokenizer.convert_ids_to_tokens(tokenizer("<unk>")["input_ids"])[1] == "<unk>"


def test_cap_and_minimum_count():
    capped = build_tokenizer(TEXTS, max_vocab_size=6)
    assert len(capped) == 6 and set(capped.get_vocab()) == set(SPECIAL_TOKENS) | {"the", "cat"}
    frequent = build_tokenizer(TEXTS, min_frequency=2)
    assert set(frequent.get_vocab()) == set(SPECIAL_TOKENS) | {"the", "cat", "sat"}


def test_padding_batches_on_the_left():
    """Batched prompts are left-padded, as generation needs; the model reads either side."""
    tokenizer = build_tokenizer(TEXTS)
    batch = tokenizer(["the cat", "the cat sat on"], padding=True)
    assert batch["input_ids"][0][:2] == [0, 0] and batch["attention_mask"][0] == [0, 0, 1, 1, 1]


def test_decoded_words_are_spaced_and_a_continuation_starts_with_a_space():
    """A text-generation pipeline writes prompt + decode(new tokens): the continuation must bring its space."""
    tokenizer = build_tokenizer(TEXTS)
    prompt = tokenizer("the cat")["input_ids"]
    continuation = tokenizer("sat on the mat", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(prompt + continuation, skip_special_tokens=True) == "the cat sat on the mat"
    assert "the cat" + tokenizer.decode(continuation, skip_special_tokens=True) == "the cat sat on the mat"
    assert tokenizer.batch_decode([[0, 0] + prompt, [1, 2]], skip_special_tokens=True) == ["the cat", ""]


def decoded_with_skip_special_tokens(tokenizer) -> tuple[str, list[str]]:
    """decode and batch_decode (left-padded) of sentences holding `<unk>`, `<s>` and `</s>`."""
    batch = tokenizer(["the zebra sat </s>", "a <unk> cat"], padding=True)["input_ids"]
    assert tokenizer.pad_token_id in batch[1]  # the batch really holds padding (left or, saved before, right)
    return tokenizer.decode(batch[0], skip_special_tokens=True), tokenizer.batch_decode(batch, skip_special_tokens=True)


def test_decoding_keeps_unk_and_hides_sentence_markers(tmp_path):
    """Penn Treebank's text holds `<unk>` as a word: decoded samples show it; `<s>`, `</s>` and padding stay hidden,
    for a new tokenizer, one reloaded, and a folder saved before DEMVAETokenizer existed (as `demvae` loads it)."""
    tokenizer = build_tokenizer(TEXTS)
    tokenizer.save_pretrained(tmp_path / "saved")
    old = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()),
                                  pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    old.save_pretrained(tmp_path / "old")
    for decoder in (tokenizer, AutoTokenizer.from_pretrained(tmp_path / "saved"), load_tokenizer(tmp_path / "old")):
        assert decoded_with_skip_special_tokens(decoder) == ("the <unk> sat", ["the <unk> sat", "a <unk> cat"])
        assert decoder.decode([1, 4, 3, 2]) == "<s> the <unk> </s>"  # without skipping, everything shows


def test_saves_and_loads_with_auto_tokenizer(tmp_path):
    tokenizer = build_tokenizer(TEXTS)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded("The cat sat")["input_ids"] == tokenizer("The cat sat")["input_ids"]
    assert loaded.pad_token == "<pad>" and type(loaded) is type(tokenizer) and loaded.padding_side == "left"


def test_tokenizers_saved_before_keep_their_encoding(tmp_path):
    """Folders saved by older versions (a plain tokenizer adding `<s>` and `</s>`) load and encode as they did; the
    data pipeline gives them the same training sentences as today's tokenizer."""
    tokenizer = build_tokenizer(TEXTS)
    old = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), pad_token="<pad>", bos_token="<s>",
        eos_token="</s>", unk_token="<unk>",
    )
    old.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    old.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded("the cat")["input_ids"] == [1, 4, 5, 2]
    data = Dataset.from_dict({"text": ["the cat sat", "a dog"]})
    assert tokenize_corpus(data, loaded)["input_ids"] == tokenize_corpus(data, tokenizer)["input_ids"]


def test_bad_input():
    with pytest.raises(ValueError, match="empty corpus"):
        build_tokenizer([])
    with pytest.raises(ValueError, match="empty corpus"):
        build_tokenizer(["   ", ""])
    with pytest.raises(ValueError, match="max_vocab_size"):
        build_tokenizer(TEXTS, max_vocab_size=4)
