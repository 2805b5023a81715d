"""Reconstruction BLEU: decode each test sentence greedily from its posterior mode and score against the input.

The posterior mode is the mean of q(z|x) (and the argmax code where the decoder sees codes), exactly what
`model.posterior_latent(posterior, sample=False)` returns. BLEU is NLTK's corpus BLEU with smoothing method 1,
as in the reference code, and sacrebleu's corpus BLEU (default 13a tokenization, applied to the word-tokenized
text) beside it; both on 0-100.

Corpus BLEU is a function of counts summed over the sentences (matched and total n-grams, hypothesis and reference
lengths), so a test set of any size is scored a chunk of sentences at a time (`BleuStatistics`), nothing of a chunk
kept once its counts are added.
"""

import math

from nltk.translate.bleu_score import SmoothingFunction, brevity_penalty, modified_precision
from sacrebleu.metrics import BLEU
from tqdm.auto import tqdm

from .sentences import CHUNK, as_id_lists, chunks_of, decode_sentences, encode_sentences, strip_special

MAX_ORDER = 4  # n-grams of 1 to 4 words, uniform weights: both libraries' default


def nltk_corpus_bleu(matches, totals, hypothesis_length: int, reference_length: int) -> float:
    """`nltk.translate.bleu_score.corpus_bleu` (one reference per hypothesis, smoothing method 1) from its summed
    counts, as NLTK combines them: 0 without a matched word; an order without matches gets epsilon (0.1) matches
    over its total; the brevity penalty of the summed lengths."""
    if matches[0] == 0:
        return 0.0
    epsilon = SmoothingFunction().epsilon
    precisions = [(matched if matched else epsilon) / total for matched, total in zip(matches, totals, strict=True)]
    weight = 1 / MAX_ORDER
    return brevity_penalty(reference_length, hypothesis_length) * math.exp(
        math.fsum(weight * math.log(precision) for precision in precisions))


class BleuStatistics:
    """The counts both corpus BLEUs are computed from, summed over the sentences `update` is given: NLTK's clipped
    n-gram matches and totals (its `modified_precision`, whose total is at least 1 per sentence) and lengths, and
    sacrebleu's (after its own tokenization, read from the `BLEUScore` of each chunk). `scores` is what the two
    libraries' corpus BLEU give for all those sentences at once."""

    def __init__(self):
        # force: the text is already word-tokenized (PTB style), which sacrebleu would otherwise warn about
        self.sacrebleu = BLEU(force=True)
        self.sentences = 0
        self.counts = {library: {"matches": [0] * MAX_ORDER, "totals": [0] * MAX_ORDER, "hypothesis_length": 0,
                                 "reference_length": 0} for library in ("nltk", "sacrebleu")}

    def _add(self, library: str, matches, totals, hypothesis_length: int, reference_length: int) -> None:
        counts = self.counts[library]
        counts["matches"] = [a + b for a, b in zip(counts["matches"], matches, strict=True)]
        counts["totals"] = [a + b for a, b in zip(counts["totals"], totals, strict=True)]
        counts["hypothesis_length"] += hypothesis_length
        counts["reference_length"] += reference_length

    def update(self, references, hypotheses) -> "BleuStatistics":
        """Add sentences: word sequences, one reference per hypothesis; tokens are strings, or ids (compared as
        strings)."""
        if len(references) != len(hypotheses):
            raise ValueError(f"need one reference per hypothesis, got {len(references)} and {len(hypotheses)}.")
        if not references:
            return self
        references = [[str(t) for t in r] for r in references]
        hypotheses = [[str(t) for t in h] for h in hypotheses]
        for reference, hypothesis in zip(references, hypotheses, strict=True):
            precisions = [modified_precision([reference], hypothesis, n) for n in range(1, MAX_ORDER + 1)]
            # one reference: it is the closest one to the hypothesis in length
            self._add("nltk", [p.numerator for p in precisions], [p.denominator for p in precisions],
                      len(hypothesis), len(reference))
        chunk = self.sacrebleu.corpus_score([" ".join(h) for h in hypotheses], [[" ".join(r) for r in references]])
        self._add("sacrebleu", chunk.counts, chunk.totals, chunk.sys_len, chunk.ref_len)
        self.sentences += len(references)
        return self

    def scores(self) -> dict[str, float]:
        """`bleu` (NLTK, smoothing method 1) and `sacrebleu` (its `BLEU.compute_bleu` of the summed counts, with the
        metric's own settings: exponential smoothing), both on 0-100."""
        if not self.sentences:
            raise ValueError("no sentences to score: BLEU needs at least one hypothesis and its reference.")
        nltk, sacre, metric = self.counts["nltk"], self.counts["sacrebleu"], self.sacrebleu
        sacrebleu = BLEU.compute_bleu(list(sacre["matches"]), list(sacre["totals"]), sacre["hypothesis_length"],
                                      sacre["reference_length"], smooth_method=metric.smooth_method,
                                      smooth_value=metric.smooth_value, effective_order=metric.effective_order,
                                      max_ngram_order=metric.max_ngram_order)
        return {"bleu": 100.0 * nltk_corpus_bleu(**nltk), "sacrebleu": float(sacrebleu.score)}


def bleu_scores(references, hypotheses) -> dict[str, float]:
    """Corpus BLEU of word sequences (one reference per hypothesis): `bleu` (NLTK, smoothing method 1) and
    `sacrebleu`, both on 0-100. Tokens are strings, or ids (compared as strings)."""
    return BleuStatistics().update(references, hypotheses).scores()


def reconstruct(model, sentences, *, batch_size: int = 256, **generation_kwargs) -> list[list[int]]:
    """Greedy reconstructions (word ids, no special tokens) of sentences from their posterior mode."""
    posterior = encode_sentences(model, sentences, batch_size=batch_size)
    latent = model.posterior_latent(posterior, sample=False)
    return decode_sentences(model, latent, batch_size=batch_size, **generation_kwargs)


def reconstruction_bleu(model, sentences, *, tokenizer=None, batch_size: int = 256, chunk_size: int = CHUNK,
                        progress: bool = False) -> dict[str, float]:
    """`bleu_scores` of greedy reconstructions against the sentences' own words, `chunk_size` sentences at a time
    (a sequence: a list, or `ColumnRows` that reads each chunk from Arrow). With a `tokenizer`, ids are turned back
    into words first (matters for sacrebleu's tokenization only)."""
    statistics = BleuStatistics()
    with tqdm(total=len(sentences), desc="BLEU", unit=" sentences", disable=not progress) as bar:
        for chunk in chunks_of(sentences, chunk_size):
            chunk = as_id_lists(chunk)
            hypotheses = reconstruct(model, chunk, batch_size=batch_size)
            references = [strip_special(s, model.config) for s in chunk]
            if tokenizer is not None:
                references = [tokenizer.convert_ids_to_tokens(r) for r in references]
                hypotheses = [tokenizer.convert_ids_to_tokens(h) for h in hypotheses]
            statistics.update(references, hypotheses)
            bar.update(len(chunk))
    return statistics.scores()


__all__ = ["BleuStatistics", "bleu_scores", "nltk_corpus_bleu", "reconstruct", "reconstruction_bleu"]
