import pytest
from transformers import AutoTokenizer

from modeling_demvae import build_tokenizer
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


def test_encoding_adds_sentence_markers_and_maps_unknown_words():
    tokenizer = build_tokenizer(TEXTS)
    ids = tokenizer("the zebra sat")["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2 and ids[2] == 3
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the sat"
    assert tokenizer.decode(tokenizer("a cat ran")["input_ids"], skip_special_tokens=True) == "a cat ran"
    assert tokenizer.convert_ids_to_tokens(tokenizer("<unk>")["input_ids"])[1] == "<unk>"


def test_cap_and_minimum_count():
    capped = build_tokenizer(TEXTS, max_vocab_size=6)
    assert len(capped) == 6 and set(capped.get_vocab()) == set(SPECIAL_TOKENS) | {"the", "cat"}
    frequent = build_tokenizer(TEXTS, min_frequency=2)
    assert set(frequent.get_vocab()) == set(SPECIAL_TOKENS) | {"the", "cat", "sat"}


def test_padding_batches():
    tokenizer = build_tokenizer(TEXTS)
    batch = tokenizer(["the cat", "the cat sat on"], padding=True)
    assert batch["input_ids"][0][-2:] == [0, 0] and batch["attention_mask"][0] == [1, 1, 1, 1, 0, 0]


def test_saves_and_loads_with_auto_tokenizer(tmp_path):
    tokenizer = build_tokenizer(TEXTS)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded("The cat sat")["input_ids"] == tokenizer("The cat sat")["input_ids"]
    assert loaded.pad_token == "<pad>"


def test_bad_input():
    with pytest.raises(ValueError, match="empty corpus"):
        build_tokenizer([])
    with pytest.raises(ValueError, match="empty corpus"):
        build_tokenizer(["   ", ""])
    with pytest.raises(ValueError, match="max_vocab_size"):
        build_tokenizer(TEXTS, max_vocab_size=4)
