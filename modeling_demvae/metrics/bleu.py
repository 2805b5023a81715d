"""Reconstruction BLEU: decode each test sentence greedily from its posterior mode and score against the input.

The posterior mode is the mean of q(z|x) (and the argmax code where the decoder sees codes), exactly what
`model.posterior_latent(posterior, sample=False)` returns. BLEU is NLTK's corpus BLEU with smoothing method 1,
as in the reference code, and sacrebleu's corpus BLEU (default 13a tokenization, applied to the word-tokenized
text) beside it; both on 0-100.
"""

from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
from sacrebleu import corpus_bleu as sacre_corpus_bleu

from .sentences import as_id_lists, decode_sentences, encode_sentences, strip_special


def bleu_scores(references, hypotheses) -> dict[str, float]:
    """Corpus BLEU of word sequences (one reference per hypothesis): `bleu` (NLTK, smoothing method 1) and
    `sacrebleu`, both on 0-100. Tokens are strings, or ids (compared as strings)."""
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"need one reference per hypothesis, got {len(references)} and {len(hypotheses)}.")
    references = [[str(t) for t in r] for r in references]
    hypotheses = [[str(t) for t in h] for h in hypotheses]
    nltk = corpus_bleu([[r] for r in references], hypotheses, smoothing_function=SmoothingFunction().method1)
    # force: the text is already word-tokenized (PTB style), which sacrebleu would otherwise warn about
    sacre = sacre_corpus_bleu([" ".join(h) for h in hypotheses], [[" ".join(r) for r in references]], force=True)
    return {"bleu": 100.0 * float(nltk), "sacrebleu": float(sacre.score)}


def reconstruct(model, sentences, *, batch_size: int = 256, **generation_kwargs) -> list[list[int]]:
    """Greedy reconstructions (word ids, no special tokens) of sentences from their posterior mode."""
    posterior = encode_sentences(model, sentences, batch_size=batch_size)
    latent = model.posterior_latent(posterior, sample=False)
    return decode_sentences(model, latent, batch_size=batch_size, **generation_kwargs)


def reconstruction_bleu(model, sentences, *, tokenizer=None, batch_size: int = 256) -> dict[str, float]:
    """`bleu_scores` of greedy reconstructions against the sentences' own words. With a `tokenizer`, ids are
    turned back into words first (matters for sacrebleu's tokenization only)."""
    sentences = as_id_lists(sentences)
    hypotheses = reconstruct(model, sentences, batch_size=batch_size)
    references = [strip_special(s, model.config) for s in sentences]
    if tokenizer is not None:
        references = [tokenizer.convert_ids_to_tokens(r) for r in references]
        hypotheses = [tokenizer.convert_ids_to_tokens(h) for h in hypotheses]
    return bleu_scores(references, hypotheses)


__all__ = ["bleu_scores", "reconstruct", "reconstruction_bleu"]
