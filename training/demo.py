"""Explore a model's components in the browser: a local Gradio app, or a folder that runs as a Hugging Face Space.

Three tabs: Components (pick a component per group, or a label, and see sentences generated from it, its share of
the data, characteristic words and closest real sentences beside the latent picture of its group, the component
marked), Read a sentence (q(c|x) per group, the most probable components, the reconstruction and sentences from the
same components with a new z) and Between two sentences (sentences decoded along the line between their posterior
means); a dialog model's components are its response VAE's, and it gets a fourth tab, Conversation (the policy
p(c|context) of a typed conversation, the response through its action and through an action picked per group).
The real sentences (a dialog model: the test responses) are placed once per model (a progress bar) and kept in
$DEMVAE_CACHE/demo (else ~/.cache/demvae/demo), never in the model folder. Needs Gradio: pip install "demvae[demo]".

With --space-dir, nothing is served: DIR gets app.py, requirements.txt, a README.md with the Space's metadata, the
placed sentences and the package's source, and loads the model by its Hub id (MODEL, or --model-id for a local
folder); `demvae push MODEL REPO --space SPACE` pushes the model and such a Space in one go.

examples:
  demvae demo demvae-output                              # http://127.0.0.1:7860
  demvae demo runs/ptb --dataset ptb --port 8000
  demvae demo your-name/demvae-ptb --dataset ptb --space-dir space/   # then: cd space && python app.py
"""

import argparse
import importlib.util

from .checks import checked_output_folder, number, thread_count
from .console import status
from .model_folder import HUB_ID, checked_model_folder, described_corpus, is_hub_id


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a folder written by `demvae train` (or save_pretrained), or "
                                                       "a Hub model id (namespace/name)")
    parser.add_argument("--dataset", help="corpus whose test sentences are placed: 'ptb', 'daily_dialog', "
                        "'synthetic', a folder or a file; for a dialog model 'smd', 'daily_dialog' or a dialog "
                        "folder (default: the corpus the model was trained on)")
    parser.add_argument("--test-file", help="text file of sentences to place, one per line (overrides --dataset)")
    parser.add_argument("--max-sentences", type=number(int, minimum=1), default=2000,
                        help="real sentences placed in the latent space (2000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1: this machine only)")
    parser.add_argument("--port", type=number(int, minimum=1, maximum=65535), default=7860,
                        help="port to serve on (7860)")
    parser.add_argument("--space-dir", metavar="DIR", help="write a Hugging Face Space here instead of serving")
    parser.add_argument("--model-id", metavar="ID", help="with --space-dir and a local MODEL: the Hub id the Space "
                        "loads (where `demvae push` sent MODEL)")
    parser.add_argument("--num-threads", type=thread_count, help="CPU threads (default: $OMP_NUM_THREADS, else every "
                                                             "core)")


def space_model_id(args) -> str:
    """The Hub id a Space loads: MODEL when it is one, else --model-id (checked as a Hub id)."""
    if args.model_id:
        if not HUB_ID.fullmatch(args.model_id):
            raise ValueError(f"--model-id {args.model_id!r} is not a Hub model id; expected namespace/name.")
        return args.model_id
    if is_hub_id(args.model):
        return args.model
    raise ValueError(f"a Space loads its model from the Hub, and {args.model} is a local folder: give --model-id "
                     "namespace/name (where `demvae push` sent it), or use `demvae push MODEL REPO --space SPACE`.")


def run(args: argparse.Namespace) -> int:
    if args.model_id and not args.space_dir:
        raise ValueError("--model-id names the model a Space loads; it goes with --space-dir.")
    if importlib.util.find_spec("gradio") is None and not args.space_dir:
        raise ValueError('the demo needs Gradio, which is not installed: pip install "demvae[demo]" (or gradio).')
    folder = checked_model_folder(args.model)
    space = None
    if args.space_dir:
        model_id, space = space_model_id(args), checked_output_folder(args.space_dir, "--space-dir")
        if (space / "config.json").is_file():
            raise ValueError(f"--space-dir {space} holds a model (config.json); give a folder of its own.")
    status(f"Placing sentences of {described_corpus(args, folder)} for the demo of {args.model}")

    from .demo_launch import serve, write_space_of

    if space is not None:
        write_space_of(args, space, model_id)
        print(f"wrote the Space to {space}; run it with `cd {space} && python app.py`, or push it with `hf upload`")
        return 0
    return serve(args)
