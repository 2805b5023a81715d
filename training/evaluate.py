"""Evaluate a trained model as in the paper: NLL, perplexity, rPPL, BLEU, wKL, label homogeneity, mode collapse.

Prints a table and writes the numbers as JSON (--output; default for a model folder: MODEL/evaluation.json, after
which the folder's model card, MODEL/README.md, is written again with them). The test sentences come from
--dataset (its test split, else its validation split) or --test-file; wKL also needs training sentences
(--dataset's train split or --train-file). Label columns of the corpus (DailyDialog: act, emotion; the synthetic
corpus: mode) are scored with homogeneity, completeness and NMI of the argmax components, the homogeneity beside
its chance level (the same clusters against the labels shuffled).

  demvae evaluate out/model --dataset ptb                       # the paper's protocol (rPPL: 40,000 samples)
  demvae evaluate out/model --dataset daily_dialog --labels act emotion --metrics homogeneity collapse
  demvae evaluate out/model --test-file test.txt --train-file train.txt --rppl-preset quick --output eval.json
  demvae evaluate out/model --dataset ptb --metrics ceiling --output ptb-ceiling.json   # real sentences' rPPL
  demvae evaluate out/model --dataset ptb --resume              # continue where an interrupted one stopped
  demvae evaluate out/model --dataset daily_dialog --metrics control --control-samples 200   # generation by label

JSON keys (where measured): elbo, nll, ppl (nats per sentence; per-token perplexity, </s> counted), rppl, bleu and
sacrebleu (0-100), wkl (KL(generated || train) of unigrams, add-one smoothing), homogeneity / completeness / nmi
(label -> score), homogeneity_chance (label -> the mean homogeneity of the same clusters over 20 shuffles of the
labels, seeded with --seed: what the cluster sizes alone score, as small clusters look pure by chance),
homogeneity_adjusted (label -> homogeneity - homogeneity_chance), mi (per group I(x; c) on the test set, nats),
batch_mi (summed over groups, from batches of 30 as in training), active_components (per group exp(I(x; c))),
component_spread (per group: mean distance of component means in pooled standard deviations; for the categorical
family, mean Jensen-Shannon divergence of the components' distributions in bits per variable, the unit named by
component_distance), component_separation (per group: mean distance of each component to its nearest neighbour, same
units; low when some components merged), dispersion (mean L_d), seconds (the evaluation's time over all its starts:
null when it resumed a progress file from before evaluations were timed), and "settings" (its mixed_precision: what
the NLL, the samples and the rPPL language models ran in, auto resolved); beside them details such as
rppl_valid_ppl, unseen_test_token_rate (test tokens never generated: they keep the language model's softmax
probability, not <unk>'s) and mi_total. With --metrics ceiling: ceiling (the rPPL keys of the language model trained
on real sentences). For a model with attributes (`demvae train --supervise`, `demvae label-components`) whose label
columns the corpus has: control_accuracy (attribute -> macro accuracy over its labels of a classifier reading back
the label of --control-samples sentences generated per label), control_per_label ("attribute: label" -> accuracy)
and control_ceiling (attribute -> the classifier's macro accuracy on the real test sentences). The classifier, a
bag-of-n-grams logistic regression trained on the real training sentences with the labels weighted equally, is
cached in --classifier-cache.

A dialog model (`DEMVAEForDialogGeneration`, told by its config.json) is evaluated on every response of its dialog
corpus's test split (--dataset: its own corpus by default; 'smd', 'daily_dialog' or a folder of either): each
response generated from its context through the policy's action (greedy), and JSON keys bleu and sacrebleu (corpus
BLEU of the generated against the gold responses, 0-100, no token dropped), policy_accuracy (the policy's argmax
equals the gold response's posterior c in every group; per group in policy_accuracy_per_group), action_consistency
(the generated response, encoded by the response VAE, has the c it was generated from; per group in
action_consistency_per_group), actions_in_use (exp of the entropy of the gold responses' c per group, the effective
number of components a group uses; per group in actions_in_use_per_group), homogeneity / homogeneity_chance /
homogeneity_adjusted / completeness / nmi of the gold responses' posterior c against the labels (SMD: the dialog's
intent), distinct_1 and distinct_2 of the generated responses, nll and ppl of the gold responses under the stage-2
decoder given their posterior z (as the reference reports the dialog model's perplexity), and entity_f1 /
entity_precision / entity_recall (all responses and per speaker) with SMD's kvret_entities.json.
modeling_demvae/metrics/dialog.py documents each variant.

The evaluation keeps what it has finished in OUTPUT.partial (the NLL in chunks of 200 test sentences, chunk i
seeded with --seed + i; the rPPL language models after each epoch; each other metric group as a whole), so that
--resume loses at most one piece and ends with the numbers of an uninterrupted evaluation (and the time it took,
not counting the lost pieces twice). Each finished piece prints a line with the time so far: the log of an
evaluation that takes hours.
"""

import argparse
import json
from pathlib import Path

from .checks import (
    check_memory,
    checked_output_file,
    checked_output_folder,
    decoding_bytes,
    device,
    number,
    thread_count,
)
from .console import status
from .files import write_text_atomically
from .model_folder import (
    EVALUATION_FILE,
    PROGRESS_SUFFIX,
    checked_model_folder,
    described_corpus,
    is_dialog_model,
    saved_config,
)
from .model_source import constant
from .precision import MIXED_PRECISION

POSITIVE = number(int, minimum=1)
METRIC_NAMES = ("nll", "rppl", "bleu", "wkl", "homogeneity", "collapse", "control", "ceiling")
DEFAULT_METRICS = METRIC_NAMES[:-1]  # the ceiling describes the corpus, not the model
LANGUAGE_MODELS = ("rppl", "ceiling")  # the rPPL language models, checkpointed after each epoch
DIALOG_METRICS = ("BLEU (NLTK and sacrebleu)", "policy accuracy", "action consistency", "homogeneity with the labels",
                  "distinct-1/2", "perplexity of the gold responses", "entity F1 (SMD)")
DECODING_BATCH = 500  # sentences the rPPL and control samples are decoded at a time
BYTES_PER_TOKEN_KEPT = 64  # a generated token in a Python list of ids, with room


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a folder written by `demvae train` (or save_pretrained), or a Hub id")
    parser.add_argument("--dataset", help="'ptb', 'daily_dialog', 'synthetic' (the default corpus of `demvae "
                        "train`), a corpus folder or file (see `demvae train --help`); default: the corpus the model "
                        "was trained on, as its training summary records it")
    parser.add_argument("--test-file", help="text file of test sentences, one per line (overrides --dataset's)")
    parser.add_argument("--train-file", help="text file of training sentences for wKL (overrides --dataset's)")
    parser.add_argument("--labels", nargs="*", help="label columns to score the components against (default: "
                        f"those of {constant('data', 'LABEL_COLUMNS')} the corpus has)")
    parser.add_argument("--metrics", nargs="+", choices=METRIC_NAMES,
                        help="what to measure (default: all that apply to the model, except ceiling: the rPPL "
                             "language model trained on real training sentences instead of samples, as many as "
                             "the rPPL samples, stopped on real validation sentences)")
    parser.add_argument("--nll-samples", type=POSITIVE, default=500, help="importance samples per sentence (500)")
    presets = constant("metrics.reverse_ppl", "RPPL_PRESETS")
    parser.add_argument("--rppl-preset", choices=sorted(presets), default="paper",
                        help="prior samples for rPPL and wKL: " + ", ".join(
                            f"{name} = {train:,} + {valid:,}" for name, (train, valid) in presets.items()))
    parser.add_argument("--rppl-samples", type=POSITIVE, help="training samples for the rPPL language model (overrides "
                        "the preset; validation samples keep the preset's ratio)")
    parser.add_argument("--rppl-max-epochs", type=POSITIVE, default=30,
                        help="epochs at most of the rPPL language model, which stops early on its validation "
                             "perplexity (30)")
    parser.add_argument("--control-samples", type=POSITIVE, default=100,
                        help="sentences generated per label for the control accuracy (100)")
    parser.add_argument("--classifier-cache", default=None,
                        help="folder of the control accuracy's cached classifiers (default: "
                             "$DEMVAE_CACHE/classifiers, else ~/.cache/demvae/classifiers)")
    parser.add_argument("--max-sentences", type=POSITIVE, help="evaluate on the first N test sentences only")
    parser.add_argument("--batch-tokens", type=POSITIVE, default=16384,
                        help="padded tokens per decoder call in the NLL (memory ~ this x vocabulary size floats)")
    parser.add_argument("--device", type=device, help="cpu, cuda, cuda:1, ... (default: cuda where there is one)")
    parser.add_argument("--num-threads", type=thread_count,
                        help="CPU threads (default: $OMP_NUM_THREADS, else every core); long evaluations beside "
                             "other jobs: 1")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="auto",
                        help="precision of the NLL, the prior samples and the rPPL language models: auto (bf16 where "
                             "the CPU or GPU has bf16 arithmetic, else float32), no (float32), bf16, or fp16 (GPUs)")
    parser.add_argument("--output", help="JSON file to write (default: MODEL/evaluation.json for a model folder, "
                        "whose card README.md then shows the numbers; ./evaluation.json for a Hub id); never a "
                        "file another demvae command wrote (a model's, a checkpoint's, a card, a progress file)")
    parser.add_argument("--seed", type=number(int, minimum=0), default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted evaluation with the same settings from OUTPUT.partial, which "
                             "keeps every finished metric, NLL chunk (of 200 sentences) and language-model epoch "
                             "until the end")


def progress_file(output) -> Path:
    """Where an evaluation into `output` keeps its finished parts until it ends."""
    return Path(f"{output}{PROGRESS_SUFFIX}")


def language_model_checkpoint(progress: Path, name: str) -> Path:
    return Path(f"{progress}.{name}.pt")


def remove_progress(progress: Path) -> None:
    """Forget an evaluation's progress: when a new one starts, and once its results are written."""
    for path in (progress, *(language_model_checkpoint(progress, name) for name in LANGUAGE_MODELS)):
        path.unlink(missing_ok=True)


def write_json(path: str, results: dict) -> None:
    """Atomically: a crash leaves the old file or the new one, never half of one."""
    clean = json.loads(json.dumps(results, default=float), parse_constant=lambda c: None)
    write_text_atomically(path, json.dumps(clean, indent=2))


def evaluation_output(model: str, folder: Path | None, output: str | None) -> str:
    """Where `demvae evaluate` writes: --output when given, else MODEL/evaluation.json for a model folder (`folder`,
    as `checked_model_folder` found it; its card then carries the numbers) and ./evaluation.json for a Hub id (None);
    a read-only model folder is refused in one line before any work."""
    if output is not None:
        return output
    if folder is None:
        return EVALUATION_FILE
    try:
        checked_output_folder(folder, "MODEL")
    except ValueError:
        raise ValueError(f"{model} is read-only, and evaluate writes {EVALUATION_FILE} and the model card there; "
                         "give --output FILE to write the evaluation elsewhere.") from None
    return str(folder / EVALUATION_FILE)


def check_control_applies(folder: Path | None, metrics: list[str]) -> None:
    """`--metrics control` asked of a local model without attributes would write an empty result: refused."""
    if "control" not in metrics or folder is None:
        return
    if not saved_config(folder).get("attributes"):
        raise ValueError(f"--metrics control measures generation by label, and the model at {folder} has no "
                         "attributes; train it with --supervise, or name its components with `demvae "
                         "label-components` first.")


def check_sizes_fit(args, config: dict) -> None:
    """The sizes the options ask for, against the memory free, before any work: the NLL's decoder calls (logits for
    --batch-tokens tokens, or for one sentence's --nll-samples), and the rPPL and control samples, decoded
    DECODING_BATCH at a time and kept as token lists."""
    if not config:
        return
    longest, vocabulary = config.get("max_sentence_length", 40), config.get("vocab_size", 10_000)
    tokens = max(args.batch_tokens, args.nll_samples * longest)
    check_memory(4 * tokens * vocabulary, f"--batch-tokens {args.batch_tokens} with --nll-samples {args.nll_samples}")
    rppl = args.rppl_samples or sum(constant("metrics.reverse_ppl", "RPPL_PRESETS")[args.rppl_preset])
    for what, count in ((f"{rppl:,} rPPL samples", rppl), (f"--control-samples {args.control_samples}",
                                                           args.control_samples)):
        check_memory(decoding_bytes(config, min(count, DECODING_BATCH)) + count * BYTES_PER_TOKEN_KEPT * longest,
                     what)


def check_dialog_options(args) -> None:
    """A dialog model is evaluated on its corpus's dialogs with every dialog metric: the sentence model's options
    that would be ignored are refused."""
    for option, value in (("--metrics", args.metrics), ("--test-file", args.test_file),
                          ("--train-file", args.train_file)):
        if value is not None:
            raise ValueError(f"{option} applies to sentence models; {args.model} is a dialog model, evaluated on a "
                             "dialog corpus (--dataset: 'smd', 'daily_dialog' or a folder of either) with all of "
                             f"its metrics: {', '.join(DIALOG_METRICS)}.")


def run(args) -> int:
    folder = checked_model_folder(args.model)
    if is_dialog_model(folder):
        check_dialog_options(args)
        args.output = str(checked_output_file(evaluation_output(args.model, folder, args.output), "--output"))
        status(f"Evaluating the dialog model {args.model} on {described_corpus(args, folder)}")
        from .dialog_evaluation import evaluate_dialog_command

        return evaluate_dialog_command(args)
    if args.metrics is None:  # all that apply to the model; an explicit list must apply
        args.metrics = list(DEFAULT_METRICS)
    else:
        check_control_applies(folder, args.metrics)
    check_sizes_fit(args, saved_config(folder))
    args.output = str(checked_output_file(evaluation_output(args.model, folder, args.output), "--output"))
    status(f"Evaluating {args.model} on {described_corpus(args, folder)}")

    from .evaluation import evaluate_command

    return evaluate_command(args)
