"""Evaluating a model as in the paper (spec section 6), metric group by metric group, resumable: what `demvae
evaluate` runs once its options are checked."""

import json
import math
from pathlib import Path

import datasets
import torch
import transformers
from tqdm.auto import tqdm

from modeling_demvae import data, metrics
from modeling_demvae.arrow_rows import ColumnRows, column_array
from modeling_demvae.corpus_cache import prepared_text, tokenized_split
from modeling_demvae.metrics.control import cached_classifier, control_accuracy
from modeling_demvae.metrics.reverse_ppl import RPPL_PRESETS

from .console import log_line
from .evaluate import language_model_checkpoint, progress_file, remove_progress, write_json
from .precision import autocast, resolve_mixed_precision
from .runs import RunClock

NLL_CHUNK = 200  # test sentences per NLL chunk: an interrupted evaluation loses at most one chunk
TEST_CHUNK = metrics.CHUNK  # test sentences in memory at a time for BLEU and the posterior metrics


def load_splits(args) -> dict:
    """The corpus splits to evaluate on: --dataset's, with --test-file / --train-file replacing theirs."""
    splits = dict(prepared_text(args.dataset).splits()) if args.dataset else {}
    if "test" not in splits and "validation" in splits:
        splits["test"] = splits["validation"]
    files = {"test": args.test_file, "train": getattr(args, "train_file", None)}
    for name, path in files.items():
        if path:
            splits[name] = prepared_text(files=(path,)).splits()["train"]
    if "test" not in splits:
        raise ValueError("no test sentences: give --dataset with a test or validation split, or --test-file.")
    return splits


def sentences_of(split, tokenizer, max_length: int, limit: int | None = None):
    """The token ids of a split (its first `limit` rows), read from Arrow as they are needed, and the tokenized
    split with its label columns: tokenized once into the cache when the split is a prepared one."""
    tokenized = tokenized_split(split, tokenizer, max_length=max_length)
    if limit is not None and limit < len(tokenized):
        tokenized = tokenized.select(range(limit))
    return ColumnRows(tokenized, "input_ids"), tokenized


def evaluation_settings(args, config, num_test: int, rppl_samples: tuple[int, int]) -> dict:
    """What the numbers depend on, written beside them; a resumed evaluation must have the same."""
    return {
        "model": args.model, "dataset": args.dataset, "test_file": args.test_file, "train_file": args.train_file,
        "test_sentences": num_test, "nll_samples": args.nll_samples, "rppl_preset": args.rppl_preset,
        "rppl_samples": list(rppl_samples), "rppl_max_epochs": args.rppl_max_epochs,
        "wkl_smoothing": "add-one over the union of words",
        "seed": args.seed, "variant": config.variant, "metrics": sorted(args.metrics),
        "control_samples": args.control_samples,
    }


def rppl_sample_counts(args) -> tuple[int, int]:
    """(training, validation) samples of the rPPL language model: the preset's, or --rppl-samples with its ratio."""
    train_samples, valid_samples = RPPL_PRESETS[args.rppl_preset]
    if args.rppl_samples is not None:
        valid_samples = max(1, round(args.rppl_samples * valid_samples / train_samples))
        train_samples = args.rppl_samples
    return train_samples, valid_samples


def read_progress(path: Path) -> dict:
    """An evaluation's progress file, as `Progress` writes it; one line naming it when it is damaged."""
    try:
        saved = json.loads(path.read_bytes())
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        saved = error
    shape = {"settings": dict, "results": dict, "finished": list, "nll_chunks": list}
    if not isinstance(saved, dict) or not all(isinstance(saved.get(key), kind) for key, kind in shape.items()):
        detail = f" ({saved})" if isinstance(saved, ValueError) else ""
        raise ValueError(f"the evaluation's progress file {path} is damaged{detail}; delete it (and "
                         f"{path.name}.*.pt beside it), or run without --resume to evaluate from the start.")
    return saved


class Progress:
    """The finished parts of an evaluation in OUTPUT.partial (rewritten atomically after each), so that `--resume`
    continues an interrupted one: the NLL chunk by chunk, the rPPL language models epoch by epoch (their
    checkpoints in OUTPUT.partial.NAME.pt), the other metrics one group at a time; with the time they took. A dialog
    model's evaluation keeps its per-response records chunk by chunk ("dialog_chunks")."""

    def __init__(self, path: Path | None, settings: dict, resume: bool):
        self.path = path
        self.state = {"settings": json.loads(json.dumps(settings)), "results": {}, "finished": [], "nll_chunks": [],
                      "dialog_chunks": []}
        saved = read_progress(path) if resume and path and path.is_file() else None
        if saved and saved.get("settings") == self.state["settings"]:
            self.state, self.clock = saved, RunClock(saved.get("seconds"))
            saved.setdefault("dialog_chunks", [])
            done = saved["finished"] + [f"{len(saved[key])} {what} chunk(s)" for key, what in (
                ("nll_chunks", "NLL"), ("dialog_chunks", "dialog")) if saved[key]]
            print(f"Resuming the evaluation of {path}: {', '.join(done) or 'nothing'} done.")
            return
        if saved:
            print(f"{path} was written with other settings; evaluating from the start.")
        self.clock = RunClock()
        if path is not None:  # a new evaluation: its own progress file from the start
            remove_progress(path)
            self.save()

    def checkpoint(self, name: str) -> Path | None:
        """Where a long computation of the evaluation keeps its own state."""
        return None if self.path is None else language_model_checkpoint(self.path, name)

    def save(self) -> None:
        self.state["seconds"] = self.clock.seconds()
        if self.path is not None:
            write_json(self.path, self.state)

    def announce(self, news: str) -> None:
        """One line of what just finished, with the time so far: the log of a long evaluation, bars or none."""
        seconds = self.clock.seconds()
        spent = "time so far unknown" if seconds is None else f"{seconds / 60:.0f} min so far"
        log_line(f"{news}; {spent}")

    def after_epoch(self, name: str):
        """The hook a language model calls after each epoch: the epoch saved and announced."""
        def saved_and_announced(history: list[float]) -> None:
            self.save()
            self.announce(f"{name}: epoch {len(history)}, validation perplexity {history[-1]:.2f}")
        return saved_and_announced

    def run(self, name: str, compute) -> None:
        """`compute()`'s results, once: skipped when a resumed evaluation already has them."""
        if name not in self.state["finished"]:
            self.state["results"].update(compute())
            self.state["finished"].append(name)
            self.save()


def chunked_nll(model, test, args, progress: Progress) -> dict:
    """The importance-weighted NLL over NLL_CHUNK sentences at a time, chunk i seeded with seed + i, each chunk's
    per-sentence estimates kept in the progress file as soon as they exist."""
    chunks, total = progress.state["nll_chunks"], math.ceil(len(test) / NLL_CHUNK)
    for index in range(len(chunks), total):
        result = metrics.sentence_log_likelihoods(
            model, test[index * NLL_CHUNK:(index + 1) * NLL_CHUNK], num_samples=args.nll_samples,
            max_tokens=args.batch_tokens, seed=args.seed + index, progress=not args.no_progress)
        chunks.append({key: value.tolist() for key, value in result.items()})
        progress.save()
        progress.announce(f"NLL: chunk {index + 1} of {total} ({min((index + 1) * NLL_CHUNK, len(test))} of "
                          f"{len(test)} sentences)")
    per_sentence = {key: torch.tensor([v for chunk in chunks for v in chunk[key]], dtype=torch.float64)
                    for key in chunks[0]}
    return metrics.nll_summary(per_sentence, 1 if model.config.variant == "rnnlm" else args.nll_samples)


def evaluate(model, tokenizer, splits: dict, args, progress_path: Path | None = None) -> dict:
    """Every requested metric that applies to the model and the data at hand; the JSON's content. Finished parts
    are kept in `progress_path` (default: a temporary file) and, with `args.resume`, taken from it."""
    config = model.config
    progress = not args.no_progress
    requested = set(args.metrics)
    max_length = config.max_sentence_length
    test, test_split = sentences_of(splits["test"], tokenizer, max_length, args.max_sentences)
    train_samples, valid_samples = rppl_sample_counts(args)
    precision = resolve_mixed_precision(args.mixed_precision, model.device)
    settings = {**evaluation_settings(args, config, len(test), (train_samples, valid_samples)),
                "mixed_precision": precision}  # what the NLL, the samples and the language models run in
    state = Progress(progress_path, settings, getattr(args, "resume", False))
    lm_options = {"vocab_size": config.vocab_size, "pad_token_id": config.pad_token_id,
                  "max_epochs": args.rppl_max_epochs, "seed": args.seed, "device": model.device, "progress": progress}
    if "nll" in requested:
        with autocast(precision, model.device):
            state.run("nll", lambda: chunked_nll(model, test, args, state))
    if "rppl" in requested or ("wkl" in requested and "train" in splits):
        with autocast(precision, model.device):
            state.run("samples", lambda: sample_metrics(model, tokenizer, splits, test, requested,
                                                        (train_samples, valid_samples),
                                                        {**lm_options, "checkpoint": state.checkpoint("rppl"),
                                                         "after_epoch": state.after_epoch("rPPL language model")}))
    if config.variant != "rnnlm" and "bleu" in requested:
        state.run("bleu", lambda: metrics.reconstruction_bleu(model, test, tokenizer=tokenizer,
                                                                   chunk_size=TEST_CHUNK, progress=progress))
    if config.has_discrete_latent and requested & {"homogeneity", "collapse"}:
        state.run("posterior", lambda: posterior_metrics(model, test, test_split, requested, args.labels, progress,
                                                         seed=args.seed))
    attributes = control_attributes(config, splits)
    if "control" in requested and attributes:
        state.run("control", lambda: control_metrics(model, tokenizer, splits, attributes, args))
    elif "control" in requested and config.attributes:
        print(f"control: skipped, the corpus has none of the model's attribute columns {list(config.attributes)} in "
              "its train and test splits.")
    if "ceiling" in requested:
        with autocast(precision, model.device):
            state.run("ceiling", lambda: {"ceiling": metrics.reverse_perplexity_ceiling(
                sentences_of(splits["train"], tokenizer, max_length)[0],
                sentences_of(splits["validation"], tokenizer, max_length)[0], test, num_train=train_samples,
                num_valid=valid_samples, checkpoint=state.checkpoint("ceiling"),
                after_epoch=state.after_epoch("ceiling language model"),
                **lm_options)})
    return {**state.state["results"], "seconds": state.clock.seconds(), "settings": settings}


def sample_metrics(model, tokenizer, splits, test, requested, sample_counts, lm_options) -> dict:
    """rPPL and wKL, from the same prior samples."""
    config, results = model.config, {}
    train_samples, valid_samples = sample_counts
    samples = metrics.sample_sentences(model, train_samples + valid_samples, seed=lm_options["seed"],
                                       progress=lm_options["progress"])  # the same again when resumed
    if "rppl" in requested:
        results.update(metrics.reverse_perplexity_from_samples(samples[:train_samples], samples[train_samples:],
                                                               test, **lm_options))
    if "wkl" in requested and "train" in splits:
        train, _ = sentences_of(splits["train"], tokenizer, config.max_sentence_length)
        special = (config.bos_token_id, config.eos_token_id, config.pad_token_id)
        generated = samples[:train_samples]
        if any(len(sentence) > 2 for sentence in generated):
            results["wkl"] = metrics.unigram_kl(generated, train, ignore=special)
        else:  # a model that ends every sentence at once (untrained): no word distribution to compare
            results["wkl"] = math.nan
    return results


def control_attributes(config, splits) -> list[str]:
    """The model's attributes whose label column the training and test sentences both carry."""
    if "train" not in splits:
        return []
    return [name for name in config.attributes
            if name in splits["train"].column_names and name in splits["test"].column_names]


def named_labels(split, column: str, names: dict) -> tuple[list[str], list[str]]:
    """The labelled sentences of a split and their label names."""
    rows = [(text, names[value]) for text, value in zip(split["text"], split[column], strict=True) if value is not None]
    return [text for text, _ in rows], [label for _, label in rows]


def control_metrics(model, tokenizer, splits, attributes: list[str], args) -> dict:
    """Control accuracy per attribute, with the classifier's macro accuracy on the real test sentences (its
    ceiling: what sentences of the right label would score)."""
    results = {"control_accuracy": {}, "control_per_label": {}, "control_ceiling": {}}
    for name in attributes:
        labels = model.config.attributes[name]["labels"]
        names = data.label_names(name, [v for split in ("train", "test") for v in splits[split][name]])
        unknown = sorted(set(names.values()) - set(labels))
        if unknown:
            raise ValueError(f"the corpus's {name!r} labels {unknown} are not among the model's {labels}.")
        classifier, _ = cached_classifier(*named_labels(splits["train"], name, names), label_names=labels,
                                          cache_dir=args.classifier_cache)
        control = control_accuracy(model, tokenizer, classifier, name, num_samples=args.control_samples,
                                   seed=args.seed)
        results["control_accuracy"][name] = control["macro"]
        results["control_ceiling"][name] = classifier.macro_accuracy(*named_labels(splits["test"], name, names))
        results["control_per_label"].update({f"{name}: {label}": v for label, v in control["per_label"].items()})
    return results


def posterior_statistics(model, test, progress: bool) -> tuple[metrics.CollapseStatistics, torch.Tensor]:
    """The collapse statistics of q(c|x) over the test sentences and each one's combined cluster id, from a chunk of
    sentences at a time: all that is kept per sentence is its id."""
    collapse, clusters = metrics.CollapseStatistics.for_model(model), []
    with tqdm(total=len(test), desc="q(c|x)", unit=" sentences", disable=not progress) as bar:
        for chunk in metrics.chunks_of(test, TEST_CHUNK):
            probs = metrics.encode_sentences(model, chunk).component_probs
            collapse.update(probs)
            clusters.append(metrics.combined_cluster_ids(probs))
            bar.update(len(probs))
    return collapse, torch.cat(clusters)


def posterior_metrics(model, test, test_split, requested, labels, progress: bool, *, seed: int) -> dict:
    """Mode-collapse diagnostics and the components' agreement with the corpus's labels (read from Arrow a batch at
    a time), from q(c|x); the homogeneity's chance level from label shuffles seeded with `seed`."""
    labels = label_columns(test_split.column_names, labels)
    collapse, clusters = posterior_statistics(model, test, progress)
    results = metrics.collapse_report(model, collapse) if "collapse" in requested else {}
    if "homogeneity" in requested and labels:
        scores = metrics.cluster_agreement(clusters, {c: column_array(test_split, c, dtype=None) for c in labels},
                                           seed=seed)
        for key in next(iter(scores.values())):
            results[key] = {label: s[key] for label, s in scores.items()}
    return results


def label_columns(columns, requested, known=data.LABEL_COLUMNS) -> list[str]:
    """The label columns to score: the requested ones (all must exist), else the `known` ones the data has."""
    if requested is None:
        return [c for c in known if c in columns]
    missing = [c for c in requested if c not in columns]
    if missing:
        raise ValueError(f"label column(s) {missing} not in the test data; it has {list(columns)}.")
    return list(requested)


def format_table(results: dict) -> str:
    """Two columns, metric and value; per-group lists shown in full (rounded)."""
    rows = []
    for key, value in results.items():
        if key == "settings":
            continue
        if isinstance(value, dict):
            rows += [(f"{key} ({label})", f"{v:.4f}") for label, v in value.items()]
        elif isinstance(value, list):
            rows.append((key, "[" + ", ".join(f"{v:.2f}" for v in value) + "]"))
        elif isinstance(value, float):
            rows.append((key, f"{value:.4f}"))
        else:
            rows.append((key, str(value)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)




def hide_progress_bars(args) -> None:
    """--no-progress: datasets' and transformers' bars hidden too."""
    if args.no_progress:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def evaluate_command(args) -> int:
    """`demvae evaluate`, its options checked: the splits, the model, every metric, the table and the JSON."""
    from .loading import load_model_and_tokenizer
    from .threads import cpu_threads

    hide_progress_bars(args)
    splits = load_splits(args)
    label_columns(splits["test"].column_names, args.labels)  # fail before the slow part
    if "ceiling" in args.metrics and not {"train", "validation"} <= set(splits):
        raise ValueError("the ceiling needs real training and validation sentences: give --dataset with both "
                         f"splits (this one has {', '.join(sorted(splits))}).")
    with cpu_threads(args.num_threads):
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device or default_device())
        progress = progress_file(args.output)
        results = evaluate(model, tokenizer, splits, args, progress)
    return write_results(args, results, progress)


def write_results(args, results: dict, progress: Path) -> int:
    """The table printed, the JSON written (the progress file then removed), and the card of a model folder whose
    evaluation.json it is written again."""
    from .model_card import write_evaluated_card

    print(format_table(results))
    write_json(args.output, results)
    remove_progress(progress)
    print(f"wrote {args.output}")
    write_evaluated_card(args.model, args.output)
    if any(isinstance(v, float) and not math.isfinite(v) for v in results.values()):
        print("warning: some results are not finite (written as null)")
    return 0


def default_device() -> str:
    """Where a command computes without --device: the GPU where there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"
