"""Tokenized sentences in, padded batches out: the plumbing every metric shares.

Metrics take a model plus sentences as token id lists (or 1-d tensors) that start with `<s>` and end with `</s>`,
as the tokenizer writes them, so they work on any corpus without knowing how it was loaded.
"""

from collections.abc import Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..data import PaddingCollator
from ..modeling_demvae import DEMVAEPosterior

# sentences at a time for a metric over a whole test set: whole batches of 256 (encoding, decoding) and of 30 (the
# batch MI), so that the chunks give what the whole list would
CHUNK = 7_680


def as_id_lists(sentences: Iterable) -> list[list[int]]:
    """Token id lists from lists, tuples or 1-d tensors; an empty sentence is an error, not a silent skip."""
    ids = [s.tolist() if isinstance(s, torch.Tensor) else list(s) for s in sentences]
    for index, sentence in enumerate(ids):
        if len(sentence) < 2:
            raise ValueError(f"sentence {index} has {len(sentence)} tokens; it needs at least <s> and </s>.")
    return ids


def pad_batch(sentences: Sequence[Sequence[int]], pad_token_id: int, device=None):
    """Right-padded (B, L) input_ids and attention_mask, padded as in training."""
    batch = PaddingCollator(pad_token_id=pad_token_id)([{"input_ids": s} for s in sentences])
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def length_sorted_batches(sentences: Sequence[Sequence[int]], max_tokens: int, rows_per_sentence: int = 1):
    """Index lists of similar-length sentences, each batch holding at most `max_tokens` padded decoder tokens
    (rows_per_sentence rows per sentence; always at least one sentence)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens}.")
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    batches, start = [], 0
    while start < len(order):
        per_batch = max(1, max_tokens // (rows_per_sentence * len(sentences[order[start]])))
        batches.append(order[start : start + per_batch])
        start += per_batch
    return batches


def chunks_of(sentences: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    """Consecutive slices of `size` sentences, the last possibly shorter: a large test set a part at a time (a
    `ColumnRows` reads just that part from Arrow)."""
    if size < 1:
        raise ValueError(f"the chunk size must be a positive integer, got {size}.")
    for start in range(0, len(sentences), size):
        yield sentences[start : start + size]


def strip_special(ids: Sequence[int], config) -> list[int]:
    """The words of a sentence: drop a leading `<s>`, cut at the first `</s>` and drop padding."""
    ids = list(ids)
    if ids and ids[0] == config.bos_token_id:
        ids = ids[1:]
    if config.eos_token_id in ids:
        ids = ids[: ids.index(config.eos_token_id)]
    return [i for i in ids if i != config.pad_token_id]


@torch.no_grad()
def encode_sentences(model, sentences, *, batch_size: int = 256, progress: bool = False) -> DEMVAEPosterior:
    """q(z, c|x) for every sentence, in the given order: the model's `encode`, batched and concatenated."""
    sentences = as_id_lists(sentences)
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in tqdm(range(0, len(sentences), batch_size), desc="encode", disable=not progress):
            input_ids, attention_mask = pad_batch(
                sentences[start : start + batch_size], model.config.pad_token_id, model.device
            )
            parts.append(model.encode(input_ids, attention_mask, check_vocabulary=False))
    finally:
        model.train(was_training)
    return DEMVAEPosterior(**{name: torch.cat([part[name] for part in parts]) for name in parts[0].keys()})


@torch.no_grad()
def decode_sentences(model, latent: torch.Tensor, *, batch_size: int = 256, progress: bool = False,
                     **generation_kwargs) -> list[list[int]]:
    """Greedy (by default) sentences from decoder latents, as word id lists without `<s>`, `</s>` or padding."""
    was_training = model.training
    model.eval()
    sentences = []
    try:
        for start in tqdm(range(0, latent.shape[0], batch_size), desc="decode", disable=not progress):
            output = model.generate(latent=latent[start : start + batch_size], **generation_kwargs)
            sentences.extend(strip_special(row, model.config) for row in output.tolist())
    finally:
        model.train(was_training)
    return sentences


__all__ = ["CHUNK", "as_id_lists", "chunks_of", "pad_batch", "length_sorted_batches", "strip_special",
           "encode_sentences", "decode_sentences"]
