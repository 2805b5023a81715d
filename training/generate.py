"""Generate sentences from a trained model: from one mixture component, by label, or from the whole prior.

examples:
  demvae generate demvae-output --component 3 --num-samples 5
  demvae generate runs/ptb --component 0,4,1,2,0,3,1,1,0,2,4,4,0,1,3,2,2,0,1,4   # one index per group
  demvae generate runs/dailydialog --attributes act=question emotion=happiness   # by label (see label-components)
  demvae generate runs/ptb --num-samples 10 --do-sample --top-p 0.9 --seed 1
"""

import argparse

from .checks import check_memory, decoding_bytes, number, thread_count
from .console import plural, status
from .model_folder import checked_model_folder, saved_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="A folder written by `demvae train` (or save_pretrained), "
                                                       "or a Hub model id (namespace/name).")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--component", help="The component to sample z from: an index in [0, K) for one group, or "
                                            "G comma-separated indices; default: the whole mixture.")
    choice.add_argument("--attributes", nargs="+", metavar="NAME=LABEL",
                        help="Labels to generate, e.g. act=question: the model's attributes from `demvae train "
                             "--supervise` or `demvae label-components` (the error lists those it has).")
    parser.add_argument("--num-samples", type=number(int, minimum=1), default=5,
                        help="Sentences to generate (default: 5).")
    parser.add_argument("--seed", type=number(int, minimum=0), default=0,
                        help="Seed of the latent draws and sampling (default: 0).")
    parser.add_argument("--do-sample", action="store_true",
                        help="Sample words instead of greedy decoding (the paper's samples are greedy).")
    parser.add_argument("--temperature", type=number(float, above=0), help="Softmax temperature when sampling.")
    parser.add_argument("--top-k", type=number(int, minimum=1), help="Sample among the k most likely words.")
    parser.add_argument("--top-p", type=number(float, above=0, maximum=1),
                        help="Sample among the smallest set of words with this much mass, in (0, 1].")
    parser.add_argument("--num-beams", type=number(int, minimum=1), help="Beam search with this many beams.")
    parser.add_argument("--max-new-tokens", type=number(int, minimum=1),
                        help="Longest sentence in tokens (default: the model's max_sentence_length - 1).")
    parser.add_argument("--num-threads", type=thread_count,
                        help="CPU threads (default: $OMP_NUM_THREADS, else every core).")


def parse_component(text: str | None):
    """"3" -> 3, "1,0,4" -> [1, 0, 4]; the model checks the range and the number of groups."""
    if text is None:
        return None
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--component must be an integer or comma-separated integers, got {text!r}.") from None
    return indices[0] if len(indices) == 1 else indices


def parse_attributes(pairs: list[str] | None) -> dict | None:
    """["act=question", "emotion=no emotion"] -> {"act": "question", "emotion": "no emotion"}; the model checks the
    names and labels."""
    if pairs is None:
        return None
    attributes = {}
    for pair in pairs:
        name, sep, label = pair.partition("=")
        if not sep or not name.strip() or not label.strip():
            raise ValueError(f"--attributes takes NAME=LABEL pairs such as act=question, got {pair!r}.")
        if name.strip() in attributes:
            raise ValueError(f"--attributes names {name.strip()!r} twice; give one label per attribute.")
        attributes[name.strip()] = label.strip()
    return attributes


SAMPLING_OPTIONS = ("temperature", "top_k", "top_p")  # shape the distribution words are sampled from


def run(args: argparse.Namespace) -> int:
    idle = [name for name in SAMPLING_OPTIONS if getattr(args, name) is not None]
    if idle and not args.do_sample:
        raise ValueError(f"--{idle[0].replace('_', '-')} only shapes sampling, which greedy decoding does not do; "
                         "add --do-sample, or leave it out.")
    component, attributes = parse_component(args.component), parse_attributes(args.attributes)
    folder = checked_model_folder(args.model)
    if folder is not None:
        check_memory(decoding_bytes(saved_config(folder), args.num_samples * (args.num_beams or 1)),
                     f"--num-samples {args.num_samples}{f' x --num-beams {args.num_beams}' * bool(args.num_beams)}")
    what = (f"component {args.component}" if component is not None else
            ", ".join(f"{k}={v}" for k, v in attributes.items()) if attributes else "the whole mixture")
    status(f"Generating {plural(args.num_samples, 'sentence')} from {what} of {args.model}")

    import torch

    from .loading import load_model_and_tokenizer
    from .threads import cpu_threads

    options = {name: getattr(args, name) for name in ("temperature", "top_k", "top_p", "num_beams", "max_new_tokens")
               if getattr(args, name) is not None}
    with cpu_threads(args.num_threads):
        model, tokenizer = load_model_and_tokenizer(args.model)
        torch.manual_seed(args.seed)
        output = model.generate(component=component, attributes=attributes, num_samples=args.num_samples,
                                do_sample=args.do_sample, **options)
    for sentence in tokenizer.batch_decode(output, skip_special_tokens=True):
        print(sentence)
    return 0
