"""The paper's evaluation (spec section 6) as functions: a model plus tokenized sentences in, numbers out.

Sentences are token id lists (or 1-d tensors) with `<s>` and `</s>`, as the package's tokenizer writes them.
"""

from .likelihood import importance_weighted_nll, sentence_log_likelihoods
from .sentences import decode_sentences, encode_sentences, strip_special

__all__ = [
    "importance_weighted_nll",
    "sentence_log_likelihoods",
    "decode_sentences",
    "encode_sentences",
    "strip_special",
]
