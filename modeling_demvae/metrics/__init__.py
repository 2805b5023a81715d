"""The paper's evaluation (spec section 6) as functions: a model plus tokenized sentences in, numbers out.

Sentences are token id lists (or 1-d tensors) with `<s>` and `</s>`, as the package's tokenizer writes them.
A dialog model's metrics (`dialog.py`, `entities.py`) take a tokenized dialog split instead. `demvae evaluate` calls
these; `hf_evaluate.py` wraps those that fit the `evaluate` library's interface.
"""

from .bleu import BleuStatistics, bleu_scores, reconstruct, reconstruction_bleu
from .clustering import cluster_agreement, cluster_scores, combined_cluster_ids, homogeneity_chance, label_agreement
from .collapse import (
    CollapseStatistics,
    active_components,
    batch_mutual_information,
    collapse_diagnostics,
    collapse_report,
    component_distances,
    component_separation,
    component_spread,
    mutual_information,
    separation_of,
    spread_of,
)
from .dialog import dialog_records, dialog_scores, distinct_n
from .entities import EntityMatcher, entity_scores
from .likelihood import importance_weighted_nll, nll_summary, sentence_log_likelihoods
from .reverse_ppl import (
    RPPL_PRESETS,
    LSTMLanguageModel,
    language_model_perplexity,
    reverse_perplexity,
    reverse_perplexity_ceiling,
    reverse_perplexity_from_samples,
    sample_sentences,
    train_language_model,
)
from .sentences import CHUNK, chunks_of, decode_sentences, encode_sentences, strip_special
from .unigram import unigram_counts, unigram_kl

__all__ = [
    "CHUNK",
    "RPPL_PRESETS",
    "BleuStatistics",
    "CollapseStatistics",
    "EntityMatcher",
    "LSTMLanguageModel",
    "active_components",
    "batch_mutual_information",
    "bleu_scores",
    "chunks_of",
    "cluster_agreement",
    "cluster_scores",
    "collapse_diagnostics",
    "collapse_report",
    "combined_cluster_ids",
    "component_distances",
    "component_separation",
    "component_spread",
    "decode_sentences",
    "dialog_records",
    "dialog_scores",
    "distinct_n",
    "encode_sentences",
    "entity_scores",
    "homogeneity_chance",
    "importance_weighted_nll",
    "label_agreement",
    "language_model_perplexity",
    "mutual_information",
    "nll_summary",
    "reconstruct",
    "reconstruction_bleu",
    "reverse_perplexity",
    "reverse_perplexity_ceiling",
    "reverse_perplexity_from_samples",
    "sample_sentences",
    "sentence_log_likelihoods",
    "separation_of",
    "spread_of",
    "strip_special",
    "train_language_model",
    "unigram_counts",
    "unigram_kl",
]
