"""Word-level tokenizer: the paper's vocabulary is the most frequent training words, whitespace-separated.

Encoding adds `<s>` only, as a prompt needs (a sentence's `</s>` is added by the data pipeline,
`data.tokenize_corpus`), and batches are padded on the left, as batched generation needs.
"""

from collections.abc import Iterable, Sequence
from itertools import islice

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3: the DEMVAEConfig defaults


class DEMVAETokenizer(PreTrainedTokenizerFast):
    """A word-level tokenizer whose decoded words are joined with spaces. Text that continues a sentence (ids that
    do not start at `<s>`, such as a prompt's generated continuation) starts with a space, so that a prompt and its
    decoded continuation joined as text-generation pipelines join them read as words.

    `skip_special_tokens=True` hides `<s>`, `</s>` and padding but keeps `<unk>`: it stands for a word of the text
    (Penn Treebank comes with its rare words already replaced by `<unk>`), not for markup."""

    def _decode(self, token_ids, skip_special_tokens=False, **kwargs):
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        first = next((i for i in ids if i != self.pad_token_id), self.bos_token_id)
        if skip_special_tokens:  # filtered here: the backend's own skipping would drop `<unk>` too
            hidden = set(self.all_special_ids) - {self.unk_token_id}
            ids = [i for i in ids if i not in hidden]
        text = super()._decode(ids, skip_special_tokens=False, **kwargs)
        return " " + text if text and first != self.bos_token_id else text


def counted_words(backend: Tokenizer, texts: Iterable[str], *, min_frequency: int = 1,
                  batch_size: int = 10_000) -> list[str]:
    """The words of `texts` as `backend` normalizes and splits them, seen at least `min_frequency` times, the most
    frequent first (ties alphabetically): one streaming pass of the tokenizers library's trainer, which counts in
    Rust on every core and holds the distinct words only, never the texts. `backend` is left as it was."""
    counter = Tokenizer.from_str(backend.to_str())
    trainer = trainers.WordLevelTrainer(vocab_size=2**31 - 1, min_frequency=min_frequency, show_progress=False)
    texts = iter(texts)
    counter.train_from_iterator(iter(lambda: list(islice(texts, batch_size)), []), trainer=trainer)
    ranks = counter.get_vocab()  # the trainer's ids: the words by rank
    return sorted(ranks, key=ranks.get)


def build_tokenizer(
    texts: Iterable[str],
    *,
    max_vocab_size: int = 10_000,
    min_frequency: int = 1,
    lowercase: bool = True,
    model_max_length: int = 40,
    split_punctuation: bool = False,
    extra_special_tokens: Sequence[str] = (),
    word_counter=counted_words,
) -> DEMVAETokenizer:
    """Build a word-level tokenizer from training texts.

    The vocabulary holds the four special tokens and the most frequent words (ties broken alphabetically, so
    the same corpus always gives the same ids), at most `max_vocab_size` entries in all, each seen at least
    `min_frequency` times. Encoding adds `<s>` (a sentence's `</s>` is text like any word: "... </s>"); unknown
    words become `<unk>`; batches are padded on the left.

    Words are whitespace-separated, as in the corpora that come tokenized (Penn Treebank, DailyDialog);
    `split_punctuation` also splits runs of punctuation off words (`\\w+|[^\\w\\s]+`: "where's" -> "where ' s"),
    for raw text such as SMD's. `extra_special_tokens` (the dialog speakers) take the ids after the four special
    tokens, are never split, lower-cased or counted as words, and `skip_special_tokens` hides them.
    """
    if max_vocab_size <= len(SPECIAL_TOKENS) + len(extra_special_tokens):
        raise ValueError(f"max_vocab_size must exceed the {len(SPECIAL_TOKENS) + len(extra_special_tokens)} special "
                         f"tokens, got {max_vocab_size}.")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}.")
    backend = Tokenizer(models.WordLevel({UNK: 0}, unk_token=UNK))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace() if split_punctuation else pre_tokenizers.WhitespaceSplit()
    specials = (*SPECIAL_TOKENS, *extra_special_tokens)
    words = word_counter(backend, texts, min_frequency=min_frequency)
    if not words:
        seen = "" if min_frequency == 1 else f" {min_frequency} times or more"
        raise ValueError(f"cannot build a vocabulary from an empty corpus: no word found{seen} in the texts.")
    words = [word for word in words if word not in specials]
    vocab = {token: i for i, token in enumerate(specials + tuple(words[: max_vocab_size - len(specials)]))}
    backend.model = models.WordLevel(vocab, unk_token=UNK)
    return DEMVAETokenizer(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        add_bos_token=True,  # the post-processor that tokenizer.json keeps: `<s> $A`
        add_eos_token=False,
        padding_side="left",
        model_max_length=model_max_length,
        **({"extra_special_tokens": list(extra_special_tokens)} if extra_special_tokens else {}),
    )


__all__ = ["DEMVAETokenizer", "build_tokenizer", "counted_words", "SPECIAL_TOKENS"]
