"""Name the components of a model trained without labels: map each to its majority label, for generate(attributes=).

Every labelled sentence of the split is assigned its argmax component of q(c_g|x). For each label column, the group
whose assignments say most about the label (the highest homogeneity; group 0 when G = 1) is chosen, and each of its
components gets the label most of its sentences carry (components no sentence picked get none). The mapping is
written into the model folder's config.json as an unsupervised attribute (atomically: a temporary file, then a
rename), after which `model.generate(attributes={"act": "question"})` draws from the components labelled so, and
`demvae evaluate --metrics control` measures how well that works. The model card, README.md in the folder, is
written again with the labels.

examples:
  demvae label-components runs/dailydialog --dataset daily_dialog --labels act emotion
  demvae label-components demvae-output --dataset synthetic --labels mode --split validation
"""

import argparse

from .checks import checked_output_folder, number, thread_count
from .console import status
from .model_folder import checked_model_folder, described_corpus
from .model_source import constant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="A model folder written by `demvae train` (or save_pretrained); "
                                                       "its config.json receives the mapping.")
    parser.add_argument("--dataset",
                        help="The labelled corpus: 'daily_dialog', 'synthetic', or a corpus folder or file with label "
                             "columns (see `demvae train --help`); default: the corpus the model was trained on, as "
                             "its training summary records it.")
    parser.add_argument("--labels", nargs="+", required=True, metavar="COLUMN",
                        help=f"Label columns to map (e.g. {' '.join(constant('data', 'LABEL_COLUMNS')[:2])}).")
    parser.add_argument("--split", default="train", choices=("train", "validation", "test"),
                        help="The split whose sentences are assigned (default: train).")
    parser.add_argument("--text-column", default="text", help="Column holding the sentences in jsonl/csv/Hub data.")
    parser.add_argument("--data-dir", help="Folder holding daily_dialog/ (default: $DEMVAE_DATA_DIR).")
    parser.add_argument("--max-sentences", type=number(int, minimum=1), help="Use the split's first N sentences.")
    parser.add_argument("--num-threads", type=thread_count,
                        help="CPU threads (default: $OMP_NUM_THREADS, else every core).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")


def run(args: argparse.Namespace) -> int:
    folder = checked_model_folder(str(args.model))
    if folder is None:
        raise ValueError(f"{args.model} is not a local model folder; label-components writes into config.json, so "
                         "download the model first (e.g. save_pretrained into a folder).")
    try:
        checked_output_folder(folder, "MODEL")
    except ValueError:
        raise ValueError(f"{args.model} is read-only, and label-components writes the labels into its config.json; "
                         "copy the model into a folder you can write and label that.") from None
    status(f"Labelling the components of {args.model} by {', '.join(args.labels)} on {described_corpus(args, folder)}")

    from .component_labels import label_components

    return label_components(args, folder)
