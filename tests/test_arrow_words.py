"""The word-level tokenizer's passes done by Arrow's kernels (`arrow_words`) against the tokenizer itself: the
counts against the tokenizers library's trainer, the ids against `data.sentence_ids`, on texts built to reach
every rule (case, runs of ASCII and Unicode whitespace, non-ASCII letters, special tokens typed inside words)."""

import random

import pyarrow as pa
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from modeling_demvae import build_tokenizer
from modeling_demvae.arrow_words import ArrowWords, SentenceIds, count_words, counted_words, text_batches
from modeling_demvae.data import sentence_ids
from modeling_demvae.tokenization_demvae import counted_words as trainer_counted_words

PIECES = [*"abcAB .'", "  ", "\t", "\x0b", "\x0c", "\x1c", "\x1f", "é", "İ", "ß", "\u00a0", "\u2003", "\u0085", "<s>",
          "</s>", "<S>", "<unk>", "<pad>", "<user>"]


def random_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 25))) for _ in range(count)]


def counting_backend(*, lowercase: bool, split_punctuation: bool) -> Tokenizer:
    """The backend `build_tokenizer` counts with: no special tokens."""
    backend = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace() if split_punctuation else pre_tokenizers.WhitespaceSplit()
    return backend


RULES = [(lowercase, split) for lowercase in (True, False) for split in (False, True)]


@pytest.mark.parametrize(("lowercase", "split_punctuation"), RULES)
def test_words_counted_by_arrow_are_the_tokenizers_trainers(lowercase, split_punctuation):
    texts = random_texts(3000)
    backend = counting_backend(lowercase=lowercase, split_punctuation=split_punctuation)
    for min_frequency in (1, 3):
        expected = trainer_counted_words(backend, texts, min_frequency=min_frequency)
        assert len(expected) > 20
        assert counted_words(backend, texts, min_frequency=min_frequency) == expected
        batches = [pa.array(texts[start: start + 700]) for start in range(0, len(texts), 700)]
        assert counted_words(backend, batches, min_frequency=min_frequency) == expected


@pytest.mark.parametrize(("lowercase", "split_punctuation"), RULES)
def test_sentence_ids_built_by_arrow_are_the_tokenizers(lowercase, split_punctuation):
    texts = random_texts(3000, seed=1)
    tokenizer = build_tokenizer(random_texts(2000, seed=2), max_vocab_size=30, lowercase=lowercase,
                                split_punctuation=split_punctuation, extra_special_tokens=("<user>",))
    plain = ArrowWords(tokenizer.backend_tokenizer).plain(pa.array(texts))
    assert 0 < plain.sum() < len(texts) if not split_punctuation else plain.sum() == 0  # both paths are taken
    for max_length in (2, 3, 7, 40):
        assert SentenceIds(tokenizer, max_length)(pa.array(texts)).to_pylist() == sentence_ids(
            tokenizer, texts, max_length=max_length)


def test_a_batch_without_rows_and_a_plain_batch():
    tokenizer = build_tokenizer(["the cat sat", "a dog"], max_vocab_size=20)
    to_ids = SentenceIds(tokenizer, 4)
    assert to_ids(pa.array([], pa.string())).to_pylist() == []
    assert to_ids(pa.array(["The  cat sat down", " a\tdog ", ""])).to_pylist() == sentence_ids(
        tokenizer, ["The  cat sat down", " a\tdog ", ""], max_length=4)


def test_strings_are_gathered_into_batches_and_arrow_arrays_pass_as_they_are():
    batches = list(text_batches((str(i) for i in range(25)), batch_size=10))
    assert [len(batch) for batch in batches] == [10, 10, 5] and batches[2].to_pylist() == ["20", "21", "22", "23",
                                                                                            "24"]
    given = [pa.array(["a", "b"]), pa.array(["c"])]
    assert list(text_batches(given)) == given


def test_counting_refuses_a_backend_with_special_tokens_and_ids_refuse_a_length_below_two():
    tokenizer = build_tokenizer(["a b"])
    with pytest.raises(ValueError, match="without special tokens"):
        count_words(tokenizer.backend_tokenizer, [pa.array(["a"])])
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        SentenceIds(tokenizer, 1)
