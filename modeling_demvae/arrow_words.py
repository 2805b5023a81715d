"""The word-level tokenizer's two passes over a large corpus, counting its words and turning sentences into ids, done
by Arrow's compute kernels on a batch of texts at a time: ten times the speed of the tokenizers library, which builds
an Encoding (offsets, masks, type ids) per sentence that a word-level corpus never reads.

The kernels give the tokenizer's own result only where its rules are plain: lower-casing (or none), splitting on
ASCII whitespace, and no special token written in the text. Rows outside that (a non-ASCII character, whose
lower-casing and whitespace Unicode defines; a special token such as `<s>` typed in the text, which the tokenizer
matches inside words) and tokenizers with other rules are handed to the tokenizer itself, so the ids are always
the tokenizer's.
"""

import json
from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class ArrowWords:
    """A word-level tokenizer backend (`tokenizers.Tokenizer`) read for Arrow: `plain(texts)` says which rows the
    kernels may take, `words(texts)` splits those rows into words as the backend does."""

    def __init__(self, backend):
        spec = json.loads(backend.to_str())
        normalizer, pre_tokenizer = spec.get("normalizer"), spec.get("pre_tokenizer")
        self.backend = backend
        self.lowercase = normalizer is not None and normalizer.get("type") == "Lowercase"
        self.supported = (spec["model"]["type"] == "WordLevel" and (normalizer is None or self.lowercase)
                          and pre_tokenizer is not None and pre_tokenizer.get("type") == "WhitespaceSplit")
        self.added = [token["content"] for token in spec.get("added_tokens", [])]

    def plain(self, texts: pa.Array) -> np.ndarray:
        """Which rows the kernels give the backend's words for: ASCII, no special token in them (in any case)."""
        if not self.supported:
            return np.zeros(len(texts), dtype=bool)
        plain = pc.string_is_ascii(texts)
        for token in self.added:
            plain = pc.and_(plain, pc.invert(pc.match_substring(texts, token, ignore_case=True)))
        return plain.to_numpy(zero_copy_only=False)

    def words(self, texts: pa.Array) -> pa.ListArray:
        """The words of plain rows: lower-cased if the backend lower-cases, split on runs of ASCII whitespace."""
        split = pc.ascii_split_whitespace(pc.ascii_lower(texts) if self.lowercase else texts)
        flat = pc.list_flatten(split)
        keep = pc.not_equal(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)  # leading/trailing spaces
        if keep.all():
            return split
        rows = pc.list_parent_indices(split).to_numpy()[keep]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)))

    def backend_words(self, texts: Iterable[str]) -> list[str]:
        """The words of any rows, as the backend normalizes and splits them (one row at a time, in Python)."""
        normalizer, pre_tokenizer = self.backend.normalizer, self.backend.pre_tokenizer
        return [word for text in texts
                for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text) if normalizer else text)]


def count_words(backend, batches: Iterable[pa.Array]) -> pa.Table:
    """How often each word occurs in batches of texts, as `backend` (one without special tokens, as the
    tokenizers library's trainer counts with) normalizes and splits them: a table of "word" and "count", in no
    order. Holds the distinct words, never the texts."""
    reader, counts, pending = ArrowWords(backend), None, []
    if reader.added:
        raise ValueError(f"count_words counts with a backend without special tokens; this one has {reader.added}.")
    for texts in batches:
        plain = reader.plain(texts)
        words = pc.list_flatten(reader.words(texts.filter(pa.array(plain))))
        if not plain.all():
            others = texts.filter(pa.array(~plain)).to_pylist()
            words = pa.concat_arrays([words.cast(pa.string()), pa.array(reader.backend_words(others), pa.string())])
        counted = pc.value_counts(words.cast(pa.string()))
        pending.append(pa.table({"word": counted.field("values"), "count": counted.field("counts")}))
        if len(pending) == 64:  # merged now and then: the distinct words, not a table per batch
            counts, pending = _merged([counts, *pending] if counts is not None else pending), []
    return _merged([table for table in [counts, *pending] if table is not None])


def _merged(tables: list) -> pa.Table:
    if not tables:
        return pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    return (pa.concat_tables(tables).group_by("word").aggregate([("count", "sum")])
            .rename_columns(["word", "count"]))


def counted_words(backend, texts: Iterable, *, min_frequency: int = 1) -> list[str]:
    """`tokenization_demvae.counted_words` (the words seen at least `min_frequency` times, the most frequent
    first, ties in byte order as the tokenizers library's trainer ranks them) over strings or Arrow string arrays
    (each a batch of them), counted by Arrow's kernels."""
    return ranked_words(count_words(backend, text_batches(texts)), min_frequency=min_frequency)


def ranked_words(counts: pa.Table, *, min_frequency: int = 1) -> list[str]:
    """The words seen at least `min_frequency` times, the most frequent first, ties in byte order (as the
    tokenizers library's word-level trainer ranks them)."""
    kept = counts.filter(pc.greater_equal(counts["count"], min_frequency))
    return kept.sort_by([("count", "descending"), ("word", "ascending")])["word"].to_pylist()


def text_batches(texts: Iterable, batch_size: int = 10_000) -> Iterator[pa.Array]:
    """Texts as Arrow string arrays: strings gathered `batch_size` at a time, or Arrow arrays (the batches of a
    corpus in the cache) as they come."""
    texts = iter(texts)
    for item in texts:
        yield item if isinstance(item, pa.Array) else pa.array([item, *islice(texts, batch_size - 1)], pa.string())


class SentenceIds:
    """`data.sentence_ids` of a batch of texts as an Arrow list array of int32: `<s> ... </s>`, at most
    `max_length` tokens with `</s>` kept last, unknown words as `<unk>`; the same ids, built for the whole batch
    at once."""

    def __init__(self, tokenizer, max_length: int):
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 (<s> and </s>), got {max_length}.")
        self.tokenizer, self.max_length = tokenizer, max_length
        self.reader = ArrowWords(tokenizer.backend_tokenizer)
        vocab = tokenizer.backend_tokenizer.get_vocab()
        self.words = pa.array(list(vocab), pa.string())
        self.ids = np.fromiter(vocab.values(), dtype=np.int32, count=len(vocab))

    def __call__(self, texts: pa.Array) -> pa.ListArray:
        from .data import sentence_ids

        plain = self.reader.plain(texts)
        rows = self._plain_rows(texts.filter(pa.array(plain)))
        if plain.all():
            return rows
        others = sentence_ids(self.tokenizer, texts.filter(pa.array(~plain)).to_pylist(), max_length=self.max_length)
        order = np.concatenate([np.flatnonzero(plain), np.flatnonzero(~plain)])
        return pa.concat_arrays([rows, pa.array(others, pa.list_(pa.int32()))]).take(pa.array(np.argsort(order)))

    def _plain_rows(self, texts: pa.Array) -> pa.ListArray:
        split = self.reader.words(texts)
        found = pc.index_in(pc.list_flatten(split).cast(pa.string()), value_set=self.words)
        word_ids = np.where(pc.is_null(found).to_numpy(zero_copy_only=False), np.int32(self.tokenizer.unk_token_id),
                            self.ids[pc.fill_null(found, 0).to_numpy(zero_copy_only=False)])
        lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
        kept = np.minimum(lengths, self.max_length - 2)
        starts = np.cumsum(lengths) - lengths  # each row's first word in word_ids
        out_starts = np.cumsum(kept + 2) - (kept + 2)  # and its <s> in the rows built
        within = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)  # each kept word's place in its row
        values = np.empty(int((kept + 2).sum()), dtype=np.int32)
        values[out_starts] = self.tokenizer.bos_token_id
        values[out_starts + kept + 1] = self.tokenizer.eos_token_id
        values[np.repeat(out_starts + 1, kept) + within] = word_ids[np.repeat(starts, kept) + within]
        offsets = np.append(out_starts, len(values)).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


__all__ = ["ArrowWords", "SentenceIds", "count_words", "counted_words", "ranked_words", "text_batches"]
