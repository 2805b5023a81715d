"""Picture a model's latent space and describe each mixture component: a PNG and a markdown report.

The picture is the paper's figure for any model: per mixture group (up to --max-groups panels), samples drawn from
each component (dots), the posterior means of real sentences (crosses) and the component means (numbered
circles), coloured by component (crosses by their most probable component; a legend names every mark), in 2-D (the
latent itself when d = 2, a PCA projection when d > 2, a jittered axis when d = 1). Collapsed components sit on top
of each other; dispersed ones apart. For the categorical family (DCM-VAE) the picture is, per group, a heat map of
each component's distribution p(z_j = v | c = k) over the d variables' V values, beside the data's mean q(z|x):
collapsed components have the same rows.

The report first states, when the sentences carry labels (DailyDialog's act and emotion, the synthetic corpus's
modes), how the argmax codes agree with each, as `demvae evaluate` scores it: homogeneity beside its chance level
(the same clusters against the labels shuffled) and the homogeneity above it, completeness and NMI. It then gives,
per group and component: its share of the data (mean q(c|x), beside the mutual information
I(x; c) that says whether the group tells sentences apart at all), its most characteristic words (largest
contribution to KL(words of the component || all words), counts weighted by q(c|x)), sentences sampled from it
(greedy; the other groups' components drawn from the prior; a repeated one shown once with its count) and the
distinct real sentences whose posterior mode (the mean of q(z|x), or its most probable value) the component gives
the highest density.

A dialog model (`DEMVAEForDialogGeneration`) is inspected through its response VAE, with its dialog corpus's test
responses (default: the corpus it was trained on): the same picture, and a report on its latent actions that lists
--examples test contexts (assistant responses first) and, per group and component, its share of the responses, the
speakers it answers as, its characteristic words (the speaker token left out) and the greedy responses it gives to
those contexts (the group set to the component, the other groups at the policy's choice).

  demvae inspect out/model --dataset synthetic          # -> out/model/inspection/{latent_space.png,components.md}
"""

import argparse
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
from .model_folder import INSPECTION_FILES, checked_model_folder, described_corpus, is_dialog_model, saved_config

POSITIVE = number(int, minimum=1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a folder written by `demvae train` (or save_pretrained), or a Hub id")
    parser.add_argument("--dataset", help="corpus whose test sentences are placed in the picture: 'ptb', "
                        "'daily_dialog', 'synthetic', a folder or a file (default: the corpus the model was trained "
                        "on, as its training summary records it)")
    parser.add_argument("--test-file", help="text file of sentences to place, one per line (overrides --dataset)")
    parser.add_argument("--output-dir", help="where to write latent_space.png and components.md "
                        "(default: MODEL/inspection)")
    parser.add_argument("--max-groups", type=POSITIVE, default=6, help="mixture groups pictured and reported (6)")
    parser.add_argument("--max-sentences", type=POSITIVE, default=2000, help="real sentences placed (2000)")
    parser.add_argument("--samples-per-component", type=POSITIVE, default=200,
                        help="prior samples per component (200)")
    parser.add_argument("--examples", type=POSITIVE, default=5, help="sampled and closest sentences per component (5)")
    parser.add_argument("--top-words", type=POSITIVE, default=10, help="characteristic words per component (10)")
    parser.add_argument("--seed", type=number(int, minimum=0), default=0)
    parser.add_argument("--device", type=device, help="cpu, cuda, cuda:1, ... (default: cuda where there is one)")
    parser.add_argument("--num-threads", type=thread_count, help="CPU threads (default: $OMP_NUM_THREADS, else every "
                                                             "core)")


def run(args) -> int:
    folder = checked_model_folder(args.model)
    output = checked_output_folder(Path(args.model) / "inspection" if args.output_dir is None else args.output_dir,
                                   "--output-dir")
    for name in INSPECTION_FILES:
        checked_output_file(output / name, "--output-dir", replaces=INSPECTION_FILES)
    if folder is not None and not is_dialog_model(folder):
        config = saved_config(folder)
        samples = args.samples_per_component * config.get("num_components", 1) * min(args.max_groups,
                                                                                    config.get("num_groups", 1))
        check_memory(decoding_bytes(config, samples), f"--samples-per-component {args.samples_per_component}")
    if is_dialog_model(folder):
        if args.test_file:
            raise ValueError(f"--test-file holds sentences; {args.model} is a dialog model, inspected with a dialog "
                             "corpus's test split (--dataset: 'smd', 'daily_dialog' or a folder of either).")
        status(f"Inspecting the latent actions of the dialog model {args.model} with "
               f"{described_corpus(args, folder)}")
        from .dialog_inspection import inspect_dialog_command

        return inspect_dialog_command(args, output)
    status(f"Inspecting {args.model} with {described_corpus(args, folder)}")

    from .inspection import inspect_command

    return inspect_command(args, output)
