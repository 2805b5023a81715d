"""wKL: how far the word distribution of generated sentences is from that of the real training set.

    wKL = KL( p_generated || p_train ) = sum_w p_generated(w) log( p_generated(w) / p_train(w) )

the direction of the reference script. Words are counted without `<s>`, `</s>` and padding (`<unk>` counts: it
is a word of the PTB text). Unseen words: both distributions get additive smoothing over the union of the words
seen in either corpus, p(w) = (n(w) + alpha) / (N + alpha |V|), so a word missing from one side costs a finite
amount instead of being skipped (the reference code skipped generated words unseen in training) or making the
KL infinite. alpha = 0 turns smoothing off; then a generated word never seen in training is an error.
"""

import math
from collections import Counter
from collections.abc import Iterable


def unigram_counts(sentences: Iterable, ignore: Iterable = ()) -> Counter:
    """Word counts of token sequences (ids or strings), leaving out the tokens in `ignore`."""
    ignore = set(ignore)
    counts = Counter()
    for sentence in sentences:
        counts.update(token for token in (sentence.tolist() if hasattr(sentence, "tolist") else sentence)
                      if token not in ignore)
    return counts


def unigram_kl(generated: Iterable, reference: Iterable, *, smoothing: float = 1.0, ignore: Iterable = ()) -> float:
    """KL( unigram(generated) || unigram(reference) ) in nats, additive smoothing `smoothing` over the union of
    words. Sentences are sequences of ids or strings; pass the special ids to leave out in `ignore`."""
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}.")
    generated_counts, reference_counts = unigram_counts(generated, ignore), unigram_counts(reference, ignore)
    if not generated_counts or not reference_counts:
        raise ValueError("wKL needs words on both sides; got an empty generated or reference corpus.")
    vocabulary = generated_counts.keys() | reference_counts.keys()
    if smoothing == 0 and generated_counts.keys() - reference_counts.keys():
        raise ValueError("generated words missing from the reference make the KL infinite; use smoothing > 0.")
    generated_total = sum(generated_counts.values()) + smoothing * len(vocabulary)
    reference_total = sum(reference_counts.values()) + smoothing * len(vocabulary)
    kl = 0.0
    for word in vocabulary:
        p = (generated_counts[word] + smoothing) / generated_total
        if p > 0:
            kl += p * math.log(p / ((reference_counts[word] + smoothing) / reference_total))
    return kl


__all__ = ["unigram_counts", "unigram_kl"]
