"""Fine-tuning: start from a saved model on a new corpus, keeping its tokenizer (optionally with new words added)
and its place on the KL-annealing schedule."""

import json
import re
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast
from transformers.utils import cached_file

from modeling_demvae import DEMVAEConfig, DEMVAETokenizer

from .loading import load_model_and_tokenizer
from .model_folder import RUN_SUMMARY

# Settings that shape the weights: a fine-tuned model keeps its own.
ARCHITECTURE_FIELDS = ("vocab_size", "embed_size", "encoder_hidden_size", "bidirectional_encoder",
                       "decoder_hidden_size", "num_groups", "num_components", "latent_size", "prior_family",
                       "categorical_size", "variant", "concat_latent_to_inputs", "tie_word_embeddings")


def extended_tokenizer(tokenizer: PreTrainedTokenizerFast, texts, *, max_vocab_size: int, min_frequency: int = 1):
    """A copy of a word-level tokenizer with the most frequent unknown words of `texts` appended to its vocabulary
    (ids after the existing ones, so every old id keeps its meaning), up to `max_vocab_size` entries in all."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = backend["model"]["vocab"]
    normalize = tokenizer.backend_tokenizer.normalizer
    counts = Counter(word for text in texts
                     for word in (normalize.normalize_str(text) if normalize else text).split() if word not in vocab)
    room = max(0, max_vocab_size - len(vocab))
    new_words = sorted((w for w, n in counts.items() if n >= min_frequency), key=lambda w: (-counts[w], w))[:room]
    for word in new_words:
        vocab[word] = len(vocab)
    return DEMVAETokenizer(
        tokenizer_object=Tokenizer.from_str(json.dumps(backend)),
        pad_token=tokenizer.pad_token, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token,
        unk_token=tokenizer.unk_token, model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
    )


def load_for_finetuning(source, texts, settings: dict, *, explicit=(), extend_vocabulary: bool = False,
                        max_vocab_size: int = 10_000, min_frequency: int = 1):
    """The saved model and tokenizer at `source`, with the non-architecture `settings` (loss switches, annealing,
    dropout, ...) applied. An architecture setting in `explicit` (given on the command line) that differs from the
    saved model's is an error; from presets or defaults it is ignored."""
    model, tokenizer = load_model_and_tokenizer(source)
    for name in ARCHITECTURE_FIELDS:
        if name in explicit and name in settings and settings[name] != getattr(model.config, name):
            raise ValueError(f"--{name.replace('_', '-')} {settings[name]} differs from the model at {source} "
                             f"({getattr(model.config, name)}); fine-tuning keeps the architecture, drop the option.")
    updates = {k: v for k, v in settings.items() if k not in ARCHITECTURE_FIELDS}
    model.config = DEMVAEConfig.from_dict({**model.config.to_dict(), **updates})  # validates the new values
    if extend_vocabulary:
        tokenizer = extended_tokenizer(tokenizer, texts, max_vocab_size=max_vocab_size, min_frequency=min_frequency)
        if len(tokenizer) > model.config.vocab_size:
            model.resize_token_embeddings(len(tokenizer))  # every embedding: new rows at the old rows' mean
    return model, tokenizer


def base_kl_annealing_step(source) -> int | None:
    """Where the base model's run left the KL-annealing schedule, read from the run summary saved beside it (in a
    folder or on the Hub); None, full weight, for a model without one (e.g. pushed: a finished model)."""
    path = cached_file(source, RUN_SUMMARY, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False)
    if path is None:
        return None
    summary = json.loads(Path(path).read_text(encoding="utf-8"))
    return summary.get("kl_annealing_step", summary.get("step"))  # older summaries: runs that started at step 0


def base_model_origin(source) -> dict[str, str]:
    """How a fine-tuned model names its base: {"base_model": Hub id} when it came from the Hub (by id, or from a
    folder of the Hub cache), else {"base_model_folder": the folder's name}; run summaries and cards are shared,
    the paths of the machine that trained the model are not."""
    path = Path(source)
    if not path.is_dir():
        return {"base_model": str(source)}
    path = path.resolve()
    if path.parent.name == "snapshots" and (cached := re.fullmatch(r"models--(.+)", path.parent.parent.name)):
        return {"base_model": cached.group(1).replace("--", "/")}
    return {"base_model_folder": path.name}


__all__ = ["ARCHITECTURE_FIELDS", "base_kl_annealing_step", "base_model_origin", "extended_tokenizer",
           "load_for_finetuning"]
