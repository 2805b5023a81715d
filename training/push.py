"""Push a trained model to the Hugging Face Hub, with a model card that carries its evaluation.

One commit holds the weights (safetensors), config, generation config, tokenizer, the modeling source for
`trust_remote_code=True`, and a README.md model card rendered from the model: usage snippets, greedy samples from
each component, the training configuration, the evaluation's numbers as the card's model-index, and the
latent-space picture of `demvae inspect`. It is the card `demvae train`, `label-components` and `evaluate` keep in
MODEL/README.md, rendered again for the Hub id. The numbers are those of MODEL/evaluation.json (what `demvae
evaluate MODEL` writes), or of each --eval-json. Log in first with `hf auth login` (or set HF_TOKEN). MODEL is
only read: a failed push changes nothing on disk.

example:
  demvae evaluate runs/ptb --dataset ptb          # runs/ptb/evaluation.json, and runs/ptb/README.md with its numbers
  demvae inspect runs/ptb --dataset ptb
  demvae push runs/ptb your-name/demvae-ptb
  demvae push runs/ptb your-name/demvae-ptb --eval-json ptb-test.json --eval-json ptb-valid.json   # other numbers
  demvae push runs/ptb your-name/demvae-ptb --space your-name/demvae-ptb-explorer   # and the demo as a Space

With --space, the component explorer of `demvae demo` follows the model as a Gradio Space that loads it by its Hub
id, with the test sentences of the model's corpus (or --space-test-file) placed beside it.
"""

import sys

from .checks import number
from .console import status
from .model_folder import checked_model_folder, described_corpus


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="folder written by `demvae train` (the save_pretrained layout)")
    parser.add_argument("repo_id", metavar="REPO_ID",
                        help="Hub repository 'namespace/name' (or 'name' in your namespace); created when missing")
    parser.add_argument("--private", action="store_true", default=None,
                        help="create the repository as private (an existing repository keeps its visibility)")
    parser.add_argument("--revision", metavar="BRANCH",
                        help="branch to commit to, created from main when missing (default: main)")
    parser.add_argument("--eval-json", action="append", default=[], metavar="FILE",
                        help="a `demvae evaluate` JSON whose numbers go into the card; repeat for several test sets "
                             "(default: MODEL/evaluation.json, written by `demvae evaluate MODEL`, when it exists)")
    parser.add_argument("--latent-image", metavar="PNG", help="latent-space picture shown in the card (default: "
                        "MODEL/inspection/latent_space.png, written by `demvae inspect MODEL`, when it exists)")
    parser.add_argument("--dataset", action="append", default=[], dest="datasets", metavar="ID",
                        help="Hub id of a dataset the model was trained on, for the card's metadata; repeatable")
    parser.add_argument("--base-model", metavar="ID", help="Hub id of the model this one was fine-tuned from "
                        "(default: the one `demvae train --init-from` recorded, when it came from the Hub)")
    parser.add_argument("--license", metavar="ID", help="license of the weights for the card, e.g. apache-2.0")
    parser.add_argument("--commit-message", metavar="TEXT", help="commit message (default: 'Upload <variant> ...')")
    parser.add_argument("--space", metavar="SPACE_ID", help="also push the component explorer (`demvae demo`) as a "
                        "Gradio Space here, loading the pushed model; needs gradio (pip install \"demvae[demo]\")")
    parser.add_argument("--space-test-file", metavar="FILE", help="with --space: the sentences the Space places, one "
                        "per line (default: the test sentences of the corpus the model was trained on)")
    parser.add_argument("--space-max-sentences", type=number(int, minimum=1), default=2000,
                        help="with --space: real sentences placed (2000)")


def space_arguments(args):
    """What `demvae demo --space-dir` reads, from push's --space options; the corpus checked before any push."""
    import argparse
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ValueError('--space writes the demo, which needs Gradio: pip install "demvae[demo]" (or gradio).')
    space_args = argparse.Namespace(model=args.model, dataset=None, test_file=args.space_test_file,
                                    max_sentences=args.space_max_sentences, num_threads=None)
    described_corpus(space_args, checked_model_folder(args.model))
    return space_args


def run(args) -> int:
    folder = checked_model_folder(args.model)
    if folder is None:
        raise FileNotFoundError(f"push sends a local model folder; {args.model} is none (a Hub id?).")
    if args.space_test_file and not args.space:
        raise ValueError("--space-test-file gives the sentences of a Space; it goes with --space SPACE_ID.")
    space_args = space_arguments(args) if args.space else None
    status(f"Pushing {args.model} to the Hub repository {args.repo_id}")

    from .hub import HubPushError, push_folder
    from .model_card import load_evaluation

    evaluations = [load_evaluation(path) for path in args.eval_json] or None  # None: MODEL/evaluation.json
    try:
        commit = push_folder(
            args.model, args.repo_id, evaluations=evaluations, latent_image=args.latent_image,
            private=args.private, revision=args.revision, commit_message=args.commit_message,
            datasets=args.datasets, base_model=args.base_model, license=args.license,
        )
    except HubPushError as error:
        print(f"demvae push: error: {error}", file=sys.stderr)
        return 1
    print(f"pushed {args.model} to {commit.commit_url}")
    return push_space_of(args, space_args, commit.repo_url.repo_id) if args.space else 0


def push_space_of(args, space_args, model_id: str) -> int:
    """The demo written for the pushed `model_id` into a temporary folder, and pushed as the Space --space."""
    import tempfile
    from pathlib import Path

    from .demo_launch import write_space_of
    from .hub import HubPushError, push_space

    status(f"Pushing the component explorer of {model_id} to the Space {args.space}")
    with tempfile.TemporaryDirectory(prefix="demvae-space-") as space:
        write_space_of(space_args, Path(space), model_id)
        try:
            commit = push_space(space, args.space, private=args.private)
        except HubPushError as error:
            print(f"demvae push: error: {error}", file=sys.stderr)
            return 1
    print(f"pushed the Space to {commit.commit_url}")
    return 0
