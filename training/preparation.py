"""What a training run is made of once its settings are checked: the corpus (with a validation split), its label
columns as attributes, the model and tokenizer (new, or a saved model to fine-tune), and the run itself."""

import time
from dataclasses import replace
from functools import partial

import torch
from transformers.utils import logging as hf_logging

from modeling_demvae import DEMVAEConfig, DEMVAEDialogConfig, DEMVAEForDialogGeneration, DEMVAEForGeneration
from modeling_demvae.corpus_cache import (
    PreparedText,
    cached_tokenizer,
    prepared_text,
    tokenized_corpus,
    training_texts,
)
from modeling_demvae.data import label_names, with_attribute_labels

from .checks import check_memory
from .dialog_preparation import build_dialog_run, dialog_config, print_dialog_report
from .finetuning import base_kl_annealing_step, base_model_origin, load_for_finetuning
from .heap import release_freed_memory
from .model_card import write_model_card
from .reporting import print_report
from .stages import response_vae
from .threads import cpu_threads
from .train import MODEL_FIELDS, data_sources
from .trainer import DEMVAETrainer


def load_training_corpus(args, settings) -> PreparedText:
    """The corpus's text, prepared once into the cache, with a validation split (held out from the training split
    when the source has none)."""
    files = (args.train_file, args.valid_file, args.test_file) if args.train_file else None
    text = prepared_text(None if files else settings["dataset"], files=files, text_column=settings["text_column"],
                         data_dir=settings.get("data_dir"))
    if "validation" not in text.sizes():
        if text.sizes()["train"] < 2:
            raise ValueError(f"the corpus has no validation split and {text.sizes()['train']} training sentence(s); "
                             "give --valid-file, or at least 2 sentences to hold some out.")
        text = text.with_holdout(settings["validation_fraction"], settings.get("seed", 0))
        print(f"No validation split: holding out {text.sizes()['validation']} training sentences for validation.")
    return text


def with_validation_split(corpus, settings):
    """A dialog corpus (a DatasetDict), with a validation split carved from train (`validation_fraction`) when it
    has none."""
    if "validation" not in corpus:
        if len(corpus["train"]) < 2:
            raise ValueError(f"the corpus has no validation split and {len(corpus['train'])} training row(s); "
                             "give a validation split, or at least 2 rows to hold some out.")
        split = corpus["train"].train_test_split(test_size=settings["validation_fraction"],
                                                 seed=settings.get("seed", 0))
        corpus["train"], corpus["validation"] = split["train"], split["test"]
        print(f"No validation split: holding out {len(corpus['validation'])} training rows for validation.")
    return corpus


def supervised_labels(settings, corpus) -> dict[str, dict]:
    """Each --supervise column's labels (value -> name, as `data.label_names` names them), over all splits."""
    labels = {}
    for column in settings.get("supervise") or []:
        missing = [name for name, split in corpus.items() if column not in split.column_names]
        if missing:
            raise ValueError(f"--supervise {column}: the {missing[0]} split has no such column; its columns are "
                             f"{corpus[missing[0]].column_names}.")
        labels[column] = label_names(column, [value for split in corpus.values() for value in split[column]])
    return labels


def supervised_attributes(settings, labels: dict[str, dict]) -> dict:
    """`DEMVAEConfig.attributes` for the --supervise columns: column i tied to group i's component c_i, or, in the
    categorical family, to the i-th categorical variable of group 0 (the reference BMVAE); --supervise-groups and
    --supervise-variables choose others."""
    categorical = settings.get("prior_family") == "categorical"
    if settings.get("supervise_variables") is not None and not categorical:
        raise ValueError("--supervise-variables ties labels to categorical variables of z, which only "
                         "--prior-family categorical has; the Gaussian family ties them to components "
                         "(--supervise-groups).")
    count = len(labels)
    groups = settings.get("supervise_groups") or ([0] * count if categorical else list(range(count)))
    variables = settings.get("supervise_variables") or (list(range(count)) if categorical else [None] * count)
    return {column: {"group": group, "variable": variable, "labels": list(names.values()), "supervised": True}
            for (column, names), group, variable in zip(labels.items(), groups, variables, strict=True)}


def labelled_data(data, settings, labels: dict[str, dict], config):
    """The tokenized splits with the --supervise columns as "attribute_labels", in the order of the model's
    attributes (the training split's thinned to --labelled-fraction)."""
    for name in data if labels else ():
        fraction = settings["labelled_fraction"] if name == "train" else 1.0
        data[name] = with_attribute_labels(data[name], list(config.attributes), labels, labelled_fraction=fraction,
                                           seed=settings.get("seed", 0))
    return data


def build_model(args, settings, labels: dict[str, dict], texts, make_tokenizer):
    """A fresh model and a tokenizer (`make_tokenizer(**build_tokenizer's options)`) built from the training
    sentences (`texts()`), or a saved one to fine-tune."""
    model_settings = {k: v for k, v in settings.items() if k in MODEL_FIELDS}
    if labels:
        model_settings["attributes"] = supervised_attributes(settings, labels)
    max_vocab = model_settings.pop("vocab_size", 10_000)
    if args.init_from:
        explicit = {k for k, v in vars(args).items() if k in MODEL_FIELDS and v is not None}
        return load_for_finetuning(args.init_from, texts(), model_settings, explicit=explicit,
                                   extend_vocabulary=args.extend_vocabulary, max_vocab_size=max_vocab,
                                   min_frequency=settings["min_frequency"])
    tokenizer = make_tokenizer(max_vocab_size=max_vocab, min_frequency=settings["min_frequency"],
                               model_max_length=model_settings.get("max_sentence_length", 40))
    config = DEMVAEConfig(vocab_size=len(tokenizer), **model_settings)
    torch.manual_seed(settings.get("seed", 0))
    return DEMVAEForGeneration(config), tokenizer


BYTES_PER_TRAINED_WEIGHT = 16  # float32: the weight, its gradient and Adam's two moments


def check_model_fits(config, training_args) -> None:
    """Refuse sizes whose model, or whose batch's logits, would not fit in memory, before anything is allocated: the
    model (a sentence or a dialog model) is built on the meta device, which allocates nothing, to count its weights."""
    model_class = DEMVAEForDialogGeneration if isinstance(config, DEMVAEDialogConfig) else DEMVAEForGeneration
    with torch.device("meta"):
        weights = sum(weight.numel() for weight in model_class(config).parameters())
    rows = training_args.batch_size // training_args.gradient_accumulation_steps
    sentences = getattr(config, "response_config", config)
    logits = 3 * 4 * rows * sentences.max_sentence_length * config.vocab_size  # logits, softmax and their gradient
    check_memory(weights * BYTES_PER_TRAINED_WEIGHT + logits,
                 f"training a model of {weights:,} weights (vocabulary of at most {config.vocab_size:,} words) on "
                 f"batches of {rows:,} sentences")


def train_command(args, settings: dict, training_args, *, start: float) -> int:
    """`demvae train`, its settings checked: the model's settings, the corpus, the model, the training, the
    report."""
    hf_logging.disable_progress_bar()  # weight loading/saving bars; training has its own
    origin = base_model_origin(args.init_from) if args.init_from else None
    if args.init_from and "kl_annealing_start" not in settings:
        settings["kl_annealing_start"] = base_kl_annealing_step(args.init_from)
        training_args = replace(training_args, kl_annealing_start=settings["kl_annealing_start"])
    dialog = settings["model_type"] == "demvae_dialog"
    if dialog:
        check_model_fits(dialog_config(settings, vocab_size=settings.get("vocab_size", 10_000)), training_args)
    elif not args.init_from:  # the model's settings, before the corpus is read (fine-tuning checks them on its model)
        check_model_fits(DEMVAEConfig(**{k: v for k, v in settings.items() if k in MODEL_FIELDS}), training_args)
    with cpu_threads(settings.get("num_threads")):
        if dialog:
            model, tokenizer, data = build_dialog_run(args, settings, with_validation_split)
        elif args.streaming:
            from .streaming import StreamingTrainer, streaming_data

            model, tokenizer, data = streaming_data(args, settings, partial(build_model, args, settings, {}))
        else:
            corpus = load_training_corpus(args, settings)
            # the text's splits are opened only to read label columns: mapping a large corpus's text costs memory
            labels = supervised_labels(settings, corpus.splits()) if settings.get("supervise") else {}
            model, tokenizer = build_model(args, settings, labels, partial(training_texts, corpus),
                                           partial(cached_tokenizer, corpus))
            data = labelled_data(tokenized_corpus(corpus, tokenizer, max_length=model.config.max_sentence_length),
                                 settings, labels, model.config)
            release_freed_memory()  # what preparing a large corpus freed: 70 MB at 10M sentences
        trainer = (StreamingTrainer if args.streaming else DEMVAETrainer)(
            model, tokenizer, data["train"], data["validation"], training_args,
            data_sources=data_sources(args, settings), origin=origin)
        if args.init_from and trainer.accelerator.is_main_process:
            step = training_args.kl_annealing_start
            where = ("no annealing" if not response_vae(model).config.kl_annealing else "full weight" if step is None
                     else f"step {step} of the annealing schedule")
            print(f"Fine-tuning {args.init_from}: KL weight {trainer.kl_weight(0):.3g} at the first step ({where}).")
        state = trainer.train()
        if trainer.accelerator.is_main_process:
            if dialog:
                print_dialog_report(training_args.output_dir, state, seconds=time.time() - start)
            else:
                print_report(training_args.output_dir, data, state, training_args.selection_metric,
                             num_samples=args.num_samples, seconds=time.time() - start)
            write_model_card(training_args.output_dir)
    return 0
