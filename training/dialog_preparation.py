"""What a dialog run is made of: the dialog corpus (SMD, DailyDialog's dialogs, or a folder of either's files) as
responses in context, its tokenizer (words, the speakers, the chat template), and a `DEMVAEForDialogGeneration`
whose response VAE is a new sentence DEM-VAE of the run's model settings, or a saved sentence model (--init-from)
with its tokenizer, as fine-tuning starts from one."""

from pathlib import Path

import torch

from modeling_demvae import DEMVAEDialogConfig, DEMVAEForDialogGeneration
from modeling_demvae.dialog_data import (
    CHAT_TEMPLATE,
    CONTEXT_TURNS,
    SPEAKER_TOKENS,
    build_dialog_tokenizer,
    load_dialog_corpus,
    tokenize_dialogs,
)

from .finetuning import load_for_finetuning
from .train import DIALOG_FIELDS, MODEL_FIELDS

SHARED_FIELDS = ("initializer_range", "tie_word_embeddings")  # settings of the response VAE and the context side


def dialog_config(settings: dict, vocab_size: int) -> DEMVAEDialogConfig:
    """The dialog model's config: the response VAE from the model settings, the context side from the dialog
    settings (and the settings both have)."""
    response = {k: v for k, v in settings.items() if k in MODEL_FIELDS and k != "vocab_size"}
    context_side = {k: v for k, v in settings.items() if k in (*DIALOG_FIELDS, *SHARED_FIELDS)}
    return DEMVAEDialogConfig(response_config={**response, "vocab_size": vocab_size}, **context_side)


def with_speakers(model, tokenizer):
    """A sentence model's tokenizer as a dialog tokenizer: the speaker tokens added (as special tokens, the
    embeddings grown) where it lacks them, and the chat template. Its words stay as they were split."""
    if tokenizer.add_special_tokens({"additional_special_tokens": list(SPEAKER_TOKENS.values())}):
        model.resize_token_embeddings(len(tokenizer))  # as --extend-vocabulary grows them
    tokenizer.chat_template = CHAT_TEMPLATE
    return model, tokenizer


def build_dialog_run(args, settings: dict, with_validation_split):
    """The tokenized dialog splits (responses in context, "context_ids"), the dialog model and its tokenizer."""
    corpus = with_validation_split(load_dialog_corpus(settings["dataset"], data_dir=settings.get("data_dir"),
                                                      context_turns=settings.get("context_turns", CONTEXT_TURNS)),
                                   settings)
    max_vocab = settings.get("vocab_size", 10_000)
    config = dialog_config(settings, vocab_size=max_vocab)  # checked before the words are counted
    torch.manual_seed(settings.get("seed", 0))
    if args.init_from:
        explicit = {k for k, v in vars(args).items() if k in MODEL_FIELDS and v is not None}
        response_settings = {k: v for k, v in settings.items() if k in MODEL_FIELDS and k != "vocab_size"}
        sentence_model, tokenizer = with_speakers(*load_for_finetuning(
            args.init_from, corpus["train"]["response"], response_settings, explicit=explicit,
            extend_vocabulary=args.extend_vocabulary, max_vocab_size=max_vocab,
            min_frequency=settings["min_frequency"]))
        context_side = {k: v for k, v in config.to_dict().items() if k in (*DIALOG_FIELDS, *SHARED_FIELDS)}
        model = DEMVAEForDialogGeneration.from_response_vae(sentence_model, **context_side)
    else:
        tokenizer = build_dialog_tokenizer(corpus["train"], max_vocab_size=max_vocab,
                                           model_max_length=config.response_config.max_sentence_length)
        model = DEMVAEForDialogGeneration(dialog_config(settings, vocab_size=len(tokenizer)))
    data = tokenize_dialogs(corpus, tokenizer, max_response_length=model.config.response_config.max_sentence_length,
                            max_utterance_length=model.config.max_utterance_length)
    return model, tokenizer, data


def print_dialog_report(output_dir, state, *, seconds: float) -> None:
    """Where the model is and what each stage selected."""
    print(f"\nBest dialog model (stage 2 from step {state.stage_switch_step}, validation nll + policy_loss "
          f"{-state.best_metric:.3f} at step {state.best_step}) saved in {Path(output_dir).resolve()}; finished "
          f"after {state.step} steps in {seconds:.0f} s.")


__all__ = ["build_dialog_run", "dialog_config", "print_dialog_report"]
