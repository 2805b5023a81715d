"""Evaluating a dialog model (issue 30) on its corpus's whole test split: what `demvae evaluate` runs on a
`DEMVAEForDialogGeneration` once its options are checked. The metrics are `modeling_demvae.metrics.dialog`'s; the
per-response records are kept in OUTPUT.partial chunk by chunk, so that `--resume` loses at most one chunk."""

import math

import torch

from modeling_demvae.dialog_data import DIALOG_LABEL_COLUMNS, dialog_corpus_folder, load_dialog_corpus, tokenize_dialogs
from modeling_demvae.metrics.dialog import dialog_records, dialog_scores, word_splitter
from modeling_demvae.metrics.entities import ENTITY_FILE, EntityMatcher

from .evaluate import progress_file
from .evaluation import Progress, default_device, hide_progress_bars, label_columns, write_results

DIALOG_CHUNK = 200  # responses per chunk of records: an interrupted evaluation loses at most one chunk
GENERATION = "greedy: the policy's argmax action per group, z at the component's mean, greedy decoding"


def dialog_test_split(model, tokenizer, args):
    """The corpus's test split (else its validation split), its first --max-sentences responses, tokenized as the
    model reads them; and the entity matcher when the corpus folder has SMD's entity list."""
    corpus = load_dialog_corpus(args.dataset, context_turns=model.config.context_turns)
    split = corpus["test"] if "test" in corpus else corpus["validation"]
    if args.max_sentences is not None:
        split = split.select(range(min(args.max_sentences, len(split))))
    split = tokenize_dialogs(split, tokenizer, max_response_length=model.config.response_config.max_sentence_length,
                             max_utterance_length=model.config.max_utterance_length)
    entity_file = dialog_corpus_folder(args.dataset) / ENTITY_FILE
    entities = EntityMatcher.from_file(entity_file, word_splitter(tokenizer)) if entity_file.is_file() else None
    return split, entities


def chunked_records(model, tokenizer, split, progress: Progress, *, show_bars: bool) -> dict[str, list]:
    """`dialog_records` of DIALOG_CHUNK responses at a time, each chunk kept in the progress file once done."""
    chunks, total = progress.state["dialog_chunks"], math.ceil(len(split) / DIALOG_CHUNK)
    for index in range(len(chunks), total):
        rows = split.select(range(index * DIALOG_CHUNK, min((index + 1) * DIALOG_CHUNK, len(split))))
        chunks.append(dialog_records(model, tokenizer, rows, progress=show_bars))
        progress.save()
        progress.announce(f"dialog: chunk {index + 1} of {total} ({min((index + 1) * DIALOG_CHUNK, len(split))} "
                          f"of {len(split)} responses)")
    return {key: [value for chunk in chunks for value in chunk[key]] for key in chunks[0]}


def evaluate_dialog(model, tokenizer, split, args, entities: EntityMatcher | None, progress_path=None) -> dict:
    """The dialog metrics over every response of `split`, with the settings they depend on."""
    labels = label_columns(split.column_names, args.labels, known=DIALOG_LABEL_COLUMNS)
    settings = {"model": args.model, "dataset": args.dataset, "test_responses": len(split), "seed": args.seed,
                "generation": GENERATION, "labels": labels, "entity_file": ENTITY_FILE if entities else None,
                "variant": model.config.response_config.variant}
    progress = Progress(progress_path, settings, args.resume)
    records = chunked_records(model, tokenizer, split, progress, show_bars=not args.no_progress)
    results = dialog_scores(records, labels={column: split[column] for column in labels},
                            num_components=model.config.response_config.num_components, entities=entities,
                            seed=args.seed)
    return {**results, "seconds": progress.clock.seconds(), "settings": settings}


def evaluate_dialog_command(args) -> int:
    """`demvae evaluate` on a dialog model, its options checked: the test split, every metric, the table, the JSON
    and the card."""
    from .loading import load_model_and_tokenizer
    from .threads import cpu_threads

    hide_progress_bars(args)
    with cpu_threads(args.num_threads):
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device or default_device())
        split, entities = dialog_test_split(model, tokenizer, args)
        if entities is None:
            print(f"entity F1: skipped, the corpus folder has no {ENTITY_FILE}.")
        torch.manual_seed(args.seed)
        progress = progress_file(args.output)
        results = evaluate_dialog(model, tokenizer, split, args, entities, progress)
    return write_results(args, results, progress)
