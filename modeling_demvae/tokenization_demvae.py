"""Word-level tokenizer: the paper's vocabulary is the most frequent training words, whitespace-separated.

Encoding adds `<s>` only, as a prompt needs (a sentence's `</s>` is added by the data pipeline,
`data.tokenize_corpus`), and batches are padded on the left, as batched generation needs.
"""

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
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


def build_tokenizer(
    texts: Iterable[str],
    *,
    max_vocab_size: int = 10_000,
    min_frequency: int = 1,
    lowercase: bool = True,
    model_max_length: int = 40,
) -> DEMVAETokenizer:
    """Build a word-level tokenizer from training texts.

    The vocabulary holds the four special tokens and the most frequent words (ties broken alphabetically, so
    the same corpus always gives the same ids), at most `max_vocab_size` entries in all, each seen at least
    `min_frequency` times. Encoding adds `<s>` (a sentence's `</s>` is text like any word: "... </s>"); unknown
    words become `<unk>`; batches are padded on the left.
    """
    if max_vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"max_vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_vocab_size}.")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}.")
    normalizer = normalizers.Lowercase() if lowercase else None
    counts = Counter()
    for text in texts:
        counts.update((normalizer.normalize_str(text) if normalizer else text).split())
    if not counts:
        raise ValueError("cannot build a vocabulary from an empty corpus: no words found in the texts.")
    words = sorted((w for w, n in counts.items() if n >= min_frequency and w not in SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + tuple(words[: max_vocab_size - len(SPECIAL_TOKENS)]))}

    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    if normalizer:
        backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
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
    )


__all__ = ["DEMVAETokenizer", "build_tokenizer", "SPECIAL_TOKENS"]
