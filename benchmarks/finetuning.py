"""Fine-tuning on a corpus the model has never seen, as the README's recipe does it: Penn Treebank, then DailyDialog.

A small PTB model (the reference settings at --size units, --steps steps) is fine-tuned on DailyDialog's utterances
with `demvae train --init-from` for as many steps: as the README says (the KL annealing goes on where the PTB run
left it), with a restarted warm-up (--kl-annealing-start 0, what fine-tuning did before), and at full KL weight
(--no-kl-annealing). A model trained from scratch on DailyDialog for as many steps is the baseline. Every model is
scored by the importance-weighted NLL (and the ELBO) of DailyDialog's validation utterances, in nats per sentence,
on the same token sequences: the fine-tuned models keep the PTB tokenizer (the recipe as written, without
--extend-vocabulary), so the model from scratch is trained with that tokenizer too (its own would spell out the
words PTB reads as <unk>, and its NLL would not be comparable).

  OMP_NUM_THREADS=1 python benchmarks/finetuning.py     # about 15 minutes on one core; prints a table, writes JSON
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from datasets import DatasetDict
from demvae.arguments import TrainingArguments
from demvae.cli import main as demvae
from demvae.model_folder import training_summary
from demvae.trainer import DEMVAETrainer
from transformers import PreTrainedTokenizerFast

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration
from modeling_demvae.data import default_data_dir, load_corpus, tokenize_corpus
from modeling_demvae.metrics.likelihood import importance_weighted_nll

FINE_TUNINGS = {  # name -> options added to the README's recipe
    "fine-tuned as the README says": [],
    "fine-tuned, warm-up restarted (--kl-annealing-start 0)": ["--kl-annealing-start", "0"],
    "fine-tuned at full KL weight (--no-kl-annealing)": ["--no-kl-annealing"],
}


def train_once(output_dir: Path, train) -> None:
    """Run `train()` unless `output_dir` holds a finished model already (rerunning the benchmark rescores them)."""
    if not (output_dir / "training_summary.json").is_file() and train() not in (None, 0):
        raise SystemExit(f"training {output_dir} failed")


def train_from_scratch(output_dir: Path, like: Path, tokenizer, corpus: DatasetDict) -> None:
    """A fresh model with the architecture and schedule of the base model of `like` (a fine-tuned model), trained
    with its tokenizer and training arguments: the same steps, the same sentences, a KL warm-up from step 0."""
    config = DEMVAEConfig.from_pretrained(like)
    data = tokenize_corpus(corpus, tokenizer, max_length=config.max_sentence_length)
    arguments = {**training_summary(like)["training_arguments"], "output_dir": str(output_dir), "kl_annealing_start": 0}
    torch.manual_seed(arguments["seed"])
    DEMVAETrainer(DEMVAEForGeneration(config), tokenizer, data["train"], data["validation"],
                  TrainingArguments(**arguments)).train()


def kl_weights(folder: Path) -> tuple[float, float]:
    """The KL weight of a run's first step and the one it reached, from its summary."""
    config, summary = DEMVAEConfig.from_pretrained(folder), training_summary(folder)
    start = summary["training_arguments"].get("kl_annealing_start", 0)
    return 1.0 if start is None else config.kl_weight(start), summary["kl_weight"]


def score(folder: Path, tokenizer, valid, nll_samples: int) -> dict:
    """Importance-weighted NLL and ELBO, and the validation terms of `demvae train` (zkl, mi: how much the latent
    carries), on the same validation sentences."""
    model = DEMVAEForGeneration.from_pretrained(folder)
    nll = importance_weighted_nll(model, valid["input_ids"][:], num_samples=nll_samples)
    with tempfile.TemporaryDirectory() as scratch:
        terms = DEMVAETrainer(model, tokenizer, valid, valid, TrainingArguments(output_dir=scratch,
                              report_to="none")).evaluate()
    first, last = kl_weights(folder)
    return {"nll": nll["nll"], "elbo": nll["elbo"], "ppl": nll["ppl"], "zkl": terms["zkl"], "mi": terms["mi"],
            "kl_weight_first": first, "kl_weight_last": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(default_data_dir()), help="folder holding ptb/ and daily_dialog/")
    parser.add_argument("--output-dir", default="finetuning-runs", help="where the models are trained")
    parser.add_argument("--size", type=int, default=64, help="embedding and GRU units (64)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every model (300)")
    parser.add_argument("--kl-annealing-midpoint", type=int, help="of the PTB model (default: the reference 2500)")
    parser.add_argument("--kl-annealing-slope", type=float, help="of the PTB model (default: the reference 0.0025)")
    parser.add_argument("--nll-samples", type=int, default=20, help="importance samples per sentence (20)")
    parser.add_argument("--json", default="benchmarks/results/finetuning_cpu.json", help="JSON file to write")
    args = parser.parse_args()
    start, out = time.time(), Path(args.output_dir)
    dialog = load_corpus("daily_dialog", data_dir=args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("train", "validation"):
        files[split] = out / f"daily_dialog_{split}.txt"
        files[split].write_text("\n".join(dialog[split]["text"]) + "\n", encoding="utf-8")
    size = ["--embed-size", str(args.size), "--encoder-hidden-size", str(args.size), "--decoder-hidden-size",
            str(args.size), "--max-steps", str(args.steps), "--num-samples", "0", "--report-to", "none"]
    schedule = [f"--kl-annealing-{name}={value}" for name, value in (
        ("midpoint", args.kl_annealing_midpoint), ("slope", args.kl_annealing_slope)) if value is not None]
    train_once(out / "ptb", lambda: demvae(["train", "--dataset", "ptb", "--data-dir", args.data_dir, *size,
                                            *schedule, "--output-dir", str(out / "ptb")]))
    for index, options in enumerate(FINE_TUNINGS.values()):
        train_once(out / f"tuned-{index}", lambda options=options, index=index: demvae([
            "train", "--init-from", str(out / "ptb"), "--train-file", str(files["train"]), "--valid-file",
            str(files["validation"]), *size, *options, "--output-dir", str(out / f"tuned-{index}")]))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out / "tuned-0")
    train_once(out / "scratch", lambda: train_from_scratch(
        out / "scratch", out / "tuned-0", tokenizer,
        DatasetDict({split: dialog[split].select_columns("text") for split in files})))

    models = {"PTB model, before fine-tuning": out / "ptb",
              **{name: out / f"tuned-{index}" for index, name in enumerate(FINE_TUNINGS)},
              f"trained from scratch on DailyDialog, {args.steps} steps, the same tokenizer": out / "scratch"}
    valid = tokenize_corpus(DatasetDict({"validation": dialog["validation"].select_columns("text")}), tokenizer,
                            max_length=DEMVAEConfig.from_pretrained(out / "ptb").max_sentence_length)["validation"]
    rows = [{"model": name, **score(folder, tokenizer, valid, args.nll_samples)} for name, folder in models.items()]
    settings = {key: value for key, value in vars(args).items() if key not in ("data_dir", "output_dir", "json")}
    result = {"rows": rows, "settings": {**settings, "validation_sentences": len(valid),
                                         "seconds": round(time.time() - start)}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print("| model | KL weight, first and last step | NLL | -ELBO | zkl | mi |\n|" + " --- |" + " ---: |" * 5)
    for row in rows:
        print(f"| {row['model']} | {row['kl_weight_first']:.3g} to {row['kl_weight_last']:.3g} | {row['nll']:.1f} "
              f"| {-row['elbo']:.1f} | {row['zkl']:.1f} | {row['mi']:.2f} |")


if __name__ == "__main__":
    main()
