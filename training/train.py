"""Train a DEM-VAE (or one of its baselines); with no arguments, the main job on the built-in synthetic corpus.

Settings are layered: built-in defaults (the main job's small model and short schedule when the corpus is the
synthetic one, else the reference Penn Treebank model and protocol), then a preset (--config NAME or FILE, e.g.
ptb-dgm-vae-mi from configuration/), then the options given here. The output directory receives the best model
in the save_pretrained layout (weights, config, generation config, tokenizer), checkpoints/ for --resume, and at
the end its model card, README.md (the card `demvae push` uploads; `demvae evaluate` adds its numbers); a
folder that holds an earlier run is refused unless --resume (continue it, with its settings) or --overwrite (start
again) says what to do with it. Ctrl-C writes a checkpoint and stops (exit status 130).

examples:
  demvae train                                    # the main job: DGM-VAE on the synthetic corpus, 1-2 minutes
  demvae train --dispersion-weight 0              # the same as a plain GM-VAE, to watch its modes collapse
  demvae train --config ptb-dgm-vae-mi --output-dir runs/ptb
  demvae train --train-file a.txt --valid-file b.txt --num-groups 1 --num-components 8
  demvae train --init-from runs/ptb --dataset new_corpus.txt --output-dir runs/tuned
  accelerate launch --multi_gpu --num_processes 2 -m demvae train --config ptb-dgm-vae-mi
  demvae train --init-from runs/ptb --dataset new_corpus.txt --kl-annealing-start 0   # with a new KL warm-up
  demvae train --config dailydialog-dgm-vae-mi --supervise act emotion   # act tied to group 0's c, emotion to 1's
  demvae train --supervise mode --labelled-fraction 0.1   # the synthetic modes, semi-supervised (10% labelled)
  demvae train --config smd-dgm-vae-mi-dialog     # a dialog model with latent actions on SMD, in two stages
  demvae train --config smd-dgm-vae-mi-dialog --dataset daily_dialog --output-dir runs/dd-dialog
"""

import argparse
import difflib
import json
import os
import re
import time
import types
from dataclasses import fields
from importlib import resources
from pathlib import Path

from .arguments import SELECTION_METRICS, TrainingArguments
from .checks import check_memory, check_number, check_threads, decoding_bytes, number, thread_count
from .console import plural, status
from .model_folder import SPECIAL_IDS, checked_model_folder
from .model_source import config_docstring, config_fields, constant, dialog_config_docstring, dialog_config_fields
from .precision import MIXED_PRECISION
from .runs import check_not_in_use, check_output_dir

PRESET_DIR = Path(str(resources.files("demvae.configuration")))  # the repository's configuration/, installed
DERIVED_FIELDS = (*SPECIAL_IDS, "attributes")  # attributes: from --supervise and the corpus's labels
MODEL_FIELDS = tuple(name for name in config_fields() if name not in DERIVED_FIELDS)
# the dialog model's context side (its response VAE takes the MODEL_FIELDS; fields of both names go to both)
DIALOG_FIELDS = tuple(name for name in dialog_config_fields()
                      if name not in ("response_config", "use_cache") and name not in config_fields())
MODEL_TYPES = ("demvae", "demvae_dialog")  # a sentence model, a dialog model (the configs' model_type)
TRAINING_FIELDS = tuple(f.name for f in fields(TrainingArguments))
DATA_FIELDS = {"dataset": str, "text_column": str, "data_dir": str, "validation_fraction": float, "min_frequency": int,
               "num_threads": int, "supervise": list, "supervise_groups": list, "supervise_variables": list,
               "labelled_fraction": float, "model_type": str}
PRESET_KEYS = (*MODEL_FIELDS, *DIALOG_FIELDS, *TRAINING_FIELDS, *DATA_FIELDS)
SETTING_TYPES = {**{name: config_fields()[name] for name in MODEL_FIELDS},
                 **{name: dialog_config_fields()[name] for name in DIALOG_FIELDS},
                 **{item.name: item.type for item in fields(TrainingArguments)}, **DATA_FIELDS}

# The main job: a model small enough to train in about a minute or two on two CPU cores, on the synthetic corpus;
# ten components for eight sentence types (a type may take two components; homogeneity counts merged types).
MAIN_JOB = {
    "embed_size": 64, "encoder_hidden_size": 64, "decoder_hidden_size": 64,
    "num_groups": 1, "num_components": 10, "latent_size": 8,
    "dispersion_weight": 0.8, "use_mutual_information": True, "dropout": 0.0,
    "kl_annealing_midpoint": 500, "kl_annealing_slope": 0.01, "max_sentence_length": 20,
    "batch_size": 32, "max_steps": 1500, "eval_every": 500, "eval_batch_size": 200, "logging_steps": 50,
    "num_threads": 1,
}
# A dialog model's defaults: the reference SMD run's (main_stanford.py's conditional-training defaults, the response
# VAE of configuration_dialog): a validation every 500 steps (its `ckpt_step`), 100 epochs of SMD's 10,308 responses.
DIALOG_JOB = {
    "dataset": "smd", **constant("configuration_dialog", "REFERENCE_RESPONSE_SETTINGS"),
    "batch_size": 30, "max_grad_norm": 3.0, "dropout": 0.3, "initializer_range": 0.1, "eval_every": 500,
    "max_steps": 34_400, "freeze_step": 6_000, "selection_metric": "loss",
}
CHOICES = {"model_type": {"choices": MODEL_TYPES}, "variant": {"choices": constant("configuration_demvae", "VARIANTS")},
           "prior_family": {"choices": constant("configuration_demvae", "PRIOR_FAMILIES")},
           "mixed_precision": {"choices": MIXED_PRECISION}, "selection_metric": {"choices": tuple(SELECTION_METRICS)},
           "report_to": {"choices": ("auto", "tensorboard", "none")}}
DEFAULTS = {"dataset": "synthetic", "text_column": "text", "validation_fraction": 0.05, "min_frequency": 1,
            "output_dir": "demvae-output", "labelled_fraction": 1.0}


def docstring_arguments(docstring: str | None) -> dict[str, str]:
    """`name: description` entries of a class docstring's Args section, as --help texts."""
    helps, name = {}, None
    for line in (docstring or "").split("Args:", 1)[-1].splitlines():
        if match := re.match(r"^\s{8}(\w+): (.*)", line):
            name, helps[match.group(1)] = match.group(1), match.group(2).strip()
        elif name and line.strip():
            helps[name] += " " + line.strip()
    return helps


def _option_type(annotation):
    """argparse settings for a dataclass annotation: bool -> --x/--no-x, float | int -> float, X | None -> X."""
    if isinstance(annotation, types.UnionType):
        members = [a for a in annotation.__args__ if a is not type(None)]
        annotation = float if float in members else members[0]
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": annotation}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("corpus (default: the built-in synthetic corpus with known modes)")
    data.add_argument("--dataset", metavar="NAME_OR_PATH",
                      help="'synthetic', 'ptb', 'daily_dialog' (from --data-dir), a folder with train/valid/test.txt, "
                           "a .txt/.jsonl/.csv file, or a Hub dataset name; for a dialog model 'smd' (the default), "
                           "'daily_dialog', or a folder of SMD's kvret_*_public.json or DailyDialog's files.")
    data.add_argument("--text-column", help="Column holding the sentences in jsonl/csv/Hub data (default: text).")
    data.add_argument("--train-file", help="Training text, one sentence a line, or a .jsonl/.json/.csv file whose "
                                           "--text-column holds the sentences (replaces --dataset).")
    data.add_argument("--valid-file", help="Validation text for --train-file (the same kinds of file).")
    data.add_argument("--test-file", help="Test text for --train-file (the same kinds of file).")
    data.add_argument("--streaming", action="store_true",
                      help="Read --train-file's plain text in order through a shuffle buffer, tokenized as it is "
                           "read and never copied (for a corpus too large to copy); needs --valid-file, trains on "
                           "one process, without --supervise; --resume reads the epoch again up to the checkpoint. "
                           "Without it the corpus is prepared once into the cache ($DEMVAE_CACHE_DIR, default "
                           "$HF_DATASETS_CACHE/demvae) and reused by the next start.")
    data.add_argument("--shuffle-buffer", type=number(int, minimum=1), metavar="SENTENCES",
                      help="Sentences in --streaming's shuffle buffer (default: 10000).")
    data.add_argument("--data-dir", help="Folder holding ptb/ and daily_dialog/ (default: $DEMVAE_DATA_DIR, else "
                                         "../shared/data beside the checkout).")
    data.add_argument("--validation-fraction", type=float,
                      help="Share of the training text held out for validation when the corpus has no validation "
                           "split (default: 0.05).")
    data.add_argument("--min-frequency", type=int, help="Fewest occurrences for a word to enter the vocabulary.")
    data.add_argument("--supervise", nargs="+", metavar="COLUMN",
                      help="Label columns to train as attributes (DailyDialog: act, emotion; the synthetic corpus: "
                           "mode): the i-th is tied to group i's component c_i (the categorical family: to the i-th "
                           "categorical variable of group 0; see --supervise-groups, --supervise-variables), which "
                           "gets a cross-entropy term toward the label (--attribute-loss-weight); then "
                           "generate(attributes={COLUMN: label}) fixes it.")
    data.add_argument("--supervise-groups", nargs="+", type=number(int, minimum=0), metavar="GROUP",
                      help="The group of each --supervise column (default: 0, 1, ...; the categorical family: 0).")
    data.add_argument("--supervise-variables", nargs="+", type=number(int, minimum=0), metavar="VARIABLE",
                      help="The categorical family: the variable z_j of its group each --supervise column is tied to "
                           "(default: 0, 1, ..., the reference BMVAE's first variables).")
    data.add_argument("--labelled-fraction", type=float,
                      help="Share of the training sentences that keep their labels, chosen with --seed; the others "
                           "train unlabelled (semi-supervised; default 1).")

    model = parser.add_argument_group("model (any DEMVAEConfig field; --vocab-size caps the vocabulary)")
    model.add_argument("--model-type", help="demvae (a sentence model; the default) or demvae_dialog (a dialog model "
                                            "with latent actions, trained in two stages; the default for --dataset "
                                            "smd), whose response VAE takes the options of this group.",
                       **CHOICES["model_type"])
    helps = docstring_arguments(config_docstring())
    for name in MODEL_FIELDS:
        model.add_argument(f"--{name.replace('_', '-')}", dest=name, help=helps.get(name, f"DEMVAEConfig.{name}."),
                           **_option_type(config_fields()[name]), **CHOICES.get(name, {}))
    model.add_argument("--init-from", metavar="MODEL",
                       help="Fine-tune a saved model (folder or Hub id); its tokenizer is kept, unknown words map to "
                            "<unk>. Architecture options may not change. The KL annealing continues where the "
                            "model's run left it (see --kl-annealing-start); the run summary records the base model.")
    model.add_argument("--extend-vocabulary", action="store_true",
                       help="With --init-from: add the new corpus's words (up to --vocab-size in all) to the "
                            "tokenizer and grow the embeddings.")

    dialog = parser.add_argument_group("dialog model (--model-type demvae_dialog: the context side; any "
                                       "DEMVAEDialogConfig field)")
    helps = docstring_arguments(dialog_config_docstring())
    for name in DIALOG_FIELDS:
        dialog.add_argument(f"--{name.replace('_', '-')}", dest=name, help=helps.get(name),
                            **_option_type(dialog_config_fields()[name]))

    training = parser.add_argument_group("training")
    training.add_argument("--config", metavar="PRESET",
                          help=f"A preset name from {PRESET_DIR} (e.g. ptb-dgm-vae-mi) or a JSON file of settings; "
                               "the options given here override it.")
    helps = docstring_arguments(TrainingArguments.__doc__)
    for item in fields(TrainingArguments):
        if item.name in ("resume", "overwrite"):
            training.add_argument(f"--{item.name}", action="store_true", default=None, help=helps[item.name])
            continue
        training.add_argument(f"--{item.name.replace('_', '-')}", dest=item.name, help=helps.get(item.name),
                              **_option_type(item.type), **CHOICES.get(item.name, {}))
    training.add_argument("--num-threads", type=thread_count,
                          help="CPU threads per process (default: $OMP_NUM_THREADS, else the cores divided among "
                               "the local processes; the main job uses 1: its steps are too small to split).")
    training.add_argument("--num-samples", type=number(int, minimum=0), default=3,
                          help="Sentences printed per component after training (default: 3).")


# ----- settings -----


def load_preset(name: str) -> dict:
    """A preset's settings, from a JSON file or a name in configuration/; unknown keys are an error."""
    path = Path(name)
    if not path.is_file():
        path = PRESET_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.json")) if PRESET_DIR.is_dir() else []
        raise FileNotFoundError(f"unknown preset {name!r}: not a JSON file, and {PRESET_DIR} has "
                                f"{', '.join(known) or 'no presets'}.")
    try:
        settings = json.loads(path.read_bytes())
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"preset {path} is not valid JSON: {error}.") from None
    if not isinstance(settings, dict):
        raise ValueError(f"preset {path} holds a JSON {type(settings).__name__}; a preset is one object of "
                         'settings, e.g. {"embed_size": 32}.')
    settings = {key: value for key, value in settings.items() if not key.startswith("_")}  # "_comment" keys
    for key, value in settings.items():
        if key not in PRESET_KEYS:
            close = difflib.get_close_matches(key, PRESET_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see `demvae train --help` for the settings"
            raise ValueError(f"unknown setting {key!r} in preset {path}; {hint}")
        if not _fits(value, SETTING_TYPES[key]):
            raise ValueError(f"setting {key!r} in preset {path} must be {_type_name(SETTING_TYPES[key])}, got "
                             f"{value!r}.")
    return settings


def _fits(value, annotation) -> bool:
    """Whether a JSON value has an annotation's type (an int is a float, a bool is not an int)."""
    if isinstance(annotation, types.UnionType):
        return any(_fits(value, member) for member in annotation.__args__)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    members = annotation.__args__ if isinstance(annotation, types.UnionType) else (annotation,)
    return " or ".join(dict.fromkeys(names[member] for member in members if not (member is int and float in members)))


def check_data_settings(settings: dict) -> None:
    """The corpus and thread settings in range, before any work (the model's and training's check themselves)."""
    check_number("validation_fraction", settings["validation_fraction"], above=0, below=1)
    check_number("min_frequency", settings["min_frequency"], integer=True, minimum=1)
    check_number("labelled_fraction", settings["labelled_fraction"], above=0, maximum=1)
    columns = settings.get("supervise") or []
    for option, what in (("supervise_groups", "group"), ("supervise_variables", "variable")):
        given = settings.get(option)
        if given is not None and len(given) != len(columns):
            raise ValueError(f"--{option.replace('_', '-')} gives {len(given)} {what}(s) for {len(columns)} "
                             f"--supervise column(s); give one {what} per column.")
    if len(set(columns)) != len(columns) or not all(isinstance(column, str) for column in columns):
        raise ValueError(f"--supervise must name distinct label columns, got {columns}.")
    if settings.get("num_threads") is not None:
        check_threads("num_threads", settings["num_threads"])


def check_options_apply(args: argparse.Namespace, settings: dict) -> None:
    """Refuse an option given here that the other settings make do nothing, before any work: a run that silently
    ignored it would not be the run that was asked for."""
    variant = settings.get("variant", "dem")
    dialog = settings["model_type"] == "demvae_dialog"
    rules = {  # option -> (does nothing, why and what to do)
        **{name: (not dialog, "it sets a dialog model; add --model-type demvae_dialog")
           for name in (*DIALOG_FIELDS, "freeze_step")},
        **{name: (dialog, "a dialog model's components are its latent actions, which no label column supervises")
           for name in ("supervise", "supervise_groups", "supervise_variables", "labelled_fraction")},
        "text_column": (dialog, "a dialog corpus has its turns' own columns"),
        "min_frequency": (dialog and not args.init_from, "a dialog model's tokenizer keeps the --vocab-size most "
                          "frequent words of the training dialogs"),
        "labelled_fraction": (not settings.get("supervise"), "it keeps the labels of a share of the --supervise "
                              "columns; add --supervise COLUMN"),
        "dispersion_weight": (variant != "dem", f"the dispersion term is the mixture prior's, which --variant "
                              f"{variant} has none of; use --variant dem"),
        "vocab_size": (args.init_from and not args.extend_vocabulary, "--init-from keeps the model's tokenizer; add "
                       "--extend-vocabulary to grow it up to --vocab-size words"),
        "extend_vocabulary": (not args.init_from, "it grows the tokenizer of the model given by --init-from"),
        "valid_file": (not args.train_file, "it goes with --train-file (a --dataset has its own splits)"),
        "shuffle_buffer": (not args.streaming, "it sizes the shuffle buffer of --streaming"),
        "test_file": (not args.train_file, "it goes with --train-file (a --dataset has its own splits)"),
    }
    for name, (idle, why) in rules.items():
        if getattr(args, name) not in (None, False) and idle:
            raise ValueError(f"--{name.replace('_', '-')} does nothing here: {why}.")


def check_dialog_settings(args: argparse.Namespace, settings: dict) -> None:
    """A dialog run reads a dialog corpus and reaches its stage 2, before any work."""
    if settings["model_type"] != "demvae_dialog":
        return
    if args.train_file:
        raise ValueError("--train-file gives sentences; a dialog model trains on dialogs: --dataset smd, "
                         "daily_dialog, or a folder of SMD's kvret_*_public.json or DailyDialog's files.")
    if settings["dataset"] in ("synthetic", "ptb"):
        raise ValueError(f"--dataset {settings['dataset']} holds sentences, not dialogs; a dialog model trains on "
                         "--dataset smd, daily_dialog, or a folder of SMD's or DailyDialog's files.")
    if settings["freeze_step"] >= settings["max_steps"]:
        raise ValueError(f"--freeze-step {settings['freeze_step']} must be below --max-steps {settings['max_steps']}: "
                         "stage 2 (the context encoder, policy and decoder) starts at freeze_step.")


def check_streaming(args: argparse.Namespace, settings: dict) -> None:
    """Refuse, before any work, what --streaming cannot do (training/streaming.py says why)."""
    table = args.train_file and Path(args.train_file).suffix.lower() in constant("data", "TABLE_SUFFIXES")
    refused = {
        "it reads --train-file's plain text in order; a --dataset is prepared into the cache instead (drop "
        "--streaming)": not args.train_file,
        "it reads plain text, one sentence a line; a .jsonl/.json/.csv file is prepared into the cache instead (drop "
        "--streaming)": table,
        "it cannot hold out validation sentences from a file it reads once in order; give --valid-file":
            args.train_file and not args.valid_file,
        "--supervise needs every label before training starts, which a stream read once cannot give":
            settings.get("supervise"),
        "it trains on one process (the stream is read in order, not sharded)": int(os.environ.get("WORLD_SIZE", 1)) > 1,
    }
    for why, applies in refused.items():
        if args.streaming and applies:
            raise ValueError(f"--streaming: {why}.")


def resolve_settings(args: argparse.Namespace) -> dict:
    """Built-in defaults < the main job (synthetic corpus only) or the dialog model's < preset < command line."""
    given = {key: value for key, value in vars(args).items() if key in PRESET_KEYS and value is not None}
    preset = load_preset(args.config) if args.config else {}
    dataset = given.get("dataset", preset.get("dataset"))
    model_type = given.get("model_type", preset.get("model_type", MODEL_TYPES[dataset == "smd"]))
    if model_type == "demvae_dialog":
        return {**DEFAULTS, **DIALOG_JOB, **preset, **given, "model_type": model_type}
    main_job = MAIN_JOB if dataset in (None, "synthetic") and not args.train_file else {}
    return {**DEFAULTS, **main_job, **preset, **given, "model_type": model_type}


def data_sources(args, settings) -> dict:
    """Where the text came from, recorded with the run (a resume checks the data's hash: paths may move), and read
    by the commands that take the model's corpus when none is given."""
    if args.train_file:
        return {"train_file": args.train_file, "valid_file": args.valid_file, "test_file": args.test_file,
                "init_from": args.init_from}
    return {"dataset": settings["dataset"], "text_column": settings["text_column"], "init_from": args.init_from}


def run(args: argparse.Namespace) -> int:
    start = time.time()
    settings = resolve_settings(args)
    if args.init_from:
        checked_model_folder(str(args.init_from))  # one line for a folder that is not a model, before its summary
    corpus, steps = args.train_file or f"the {settings['dataset']} corpus", settings.get("max_steps",
                                                                                       TrainingArguments.max_steps)
    status(f"{'Fine-tuning ' + args.init_from + ' on' if args.init_from else 'Training a model on'} {corpus}, "
           f"{plural(steps, 'step')} at most, into {settings['output_dir']}")  # before the checks that load torch
    training_args = TrainingArguments(**{k: v for k, v in settings.items() if k in TRAINING_FIELDS})
    check_data_settings(settings)
    check_options_apply(args, settings)
    check_dialog_settings(args, settings)
    check_streaming(args, settings)
    check_memory(decoding_bytes(settings, args.num_samples), f"--num-samples {args.num_samples}")
    check_output_dir(training_args.output_dir, resume=training_args.resume, overwrite=training_args.overwrite)
    if int(os.environ.get("RANK", 0)) == 0:  # of `accelerate launch`'s processes, the main one takes the lock
        check_not_in_use(training_args.output_dir)

    from .preparation import train_command

    return train_command(args, settings, training_args, start=start)
