"""How long `demvae reproduce --budget full` takes on this machine: short one-thread measurements, extrapolated.

For each corpus of the budget, at the presets' reference size with the budget's settings (one posterior sample),
it times a few training steps of the trainer, a validation pass over 300 sentences, the importance-weighted NLL
with 500 samples on 5 test sentences, greedy prior samples, and an epoch of the rPPL language model on 640
real sentences; then it extrapolates to the budget: steps x max_steps, the validations (and the learning curve's
extra ones), the NLL per test token over the whole test set, 43,000 samples, and the language model per epoch of
40,000 sentences (it stops early; the table shows 10 epochs, `lm_epoch_hours` the unit). The weights are
untrained: the time of a step does not depend on them, that of greedy sampling and of the NLL somewhat (an
untrained model's sentences run to the length limit, so sampling is an upper bound). SMD's dialog models are left
out: they train in two stages and are scored by the dialog metrics, which this does not time.

    OMP_NUM_THREADS=1 python benchmarks/full_budget_timing.py        # prints a table, writes JSON
"""

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
from demvae.arguments import TrainingArguments
from demvae.budgets import BUDGETS, DATASETS, DIALOG_TABLES, all_runs
from demvae.train import MODEL_FIELDS, load_preset
from demvae.trainer import DEMVAETrainer

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer, metrics
from modeling_demvae.data import load_corpus, tokenize_corpus
from modeling_demvae.metrics.reverse_ppl import RPPL_PRESETS

LM_EPOCHS_SHOWN = 10


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(preset: str, budget, args) -> dict:
    """One corpus: per-unit times of every part of a run."""
    settings = {**load_preset(preset), **budget.train}
    corpus = load_corpus(settings["dataset"])
    tokenizer = build_tokenizer(corpus["train"]["text"], max_vocab_size=settings["vocab_size"],
                                model_max_length=settings["max_sentence_length"])
    torch.manual_seed(0)
    model = DEMVAEForGeneration(DEMVAEConfig(vocab_size=len(tokenizer), **{
        k: v for k, v in settings.items() if k in MODEL_FIELDS and k != "vocab_size"}))
    data = tokenize_corpus(corpus, tokenizer, max_length=settings["max_sentence_length"])
    trainer = DEMVAETrainer(model, tokenizer, data["train"], data["validation"].select(range(300)),
                            TrainingArguments(output_dir=args.scratch, batch_size=settings["batch_size"],
                                              report_to="none"))
    trainer._batches = trainer._train_batches()
    for _ in range(args.warmup):
        trainer._training_step()
    step = timed(lambda: [trainer._training_step() for _ in range(args.steps)]) / args.steps
    validation = timed(trainer.evaluate) / 300
    model.eval()
    test = data["test"]["input_ids"]
    few = random.Random(0).sample(test, args.nll_sentences)
    nll = timed(lambda: metrics.sentence_log_likelihoods(model, few, num_samples=500))
    sampling = timed(lambda: metrics.sample_sentences(model, 200)) / 200
    real = data["train"]["input_ids"][:640]
    lm = timed(lambda: metrics.train_language_model(real, real[:64], vocab_size=len(tokenizer), max_epochs=1))
    return {
        "preset": preset, "step_seconds": step, "validation_seconds_per_sentence": validation,
        "validation_sentences": len(data["validation"]), "test_sentences": len(test),
        "test_tokens": sum(len(s) - 1 for s in test), "nll_seconds_per_token": nll / sum(len(s) - 1 for s in few),
        "sampling_seconds_per_sentence": sampling, "lm_seconds_per_sentence": lm / (640 + 64),
    }


def lm_epoch_hours(unit: dict) -> float:
    """An epoch of the rPPL language model on the paper's 40,000 + 3,000 sentences."""
    return unit["lm_seconds_per_sentence"] * sum(RPPL_PRESETS["paper"]) / 3600


def extrapolate(unit: dict, settings: dict) -> dict:
    """Hours of each part of one run of the budget (`settings`: the preset's with the budget's), from the per-unit
    times."""
    steps, every = settings["max_steps"], settings["eval_every"]
    validations = steps // every
    curve = settings.get("learning_curve_every")
    if curve:  # the curve's points that are not also reference validations
        validations += sum(1 for s in range(curve, settings["learning_curve_until"] + 1, curve) if s % every)
    samples = sum(RPPL_PRESETS["paper"])
    lm_epoch = lm_epoch_hours(unit)
    hours = {
        "training": steps * unit["step_seconds"] / 3600,
        "validations": validations * unit["validation_sentences"] * unit["validation_seconds_per_sentence"] / 3600,
        "nll": unit["test_tokens"] * unit["nll_seconds_per_token"] / 3600,
        "prior_samples": samples * unit["sampling_seconds_per_sentence"] / 3600,
        f"rppl_lm_{LM_EPOCHS_SHOWN}_epochs": LM_EPOCHS_SHOWN * lm_epoch,
    }
    return {"hours": hours, "total_hours": sum(hours.values()), "lm_epoch_hours": lm_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="full")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per corpus (20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--nll-sentences", type=int, default=5, help="test sentences of the NLL timing (5)")
    parser.add_argument("--scratch", default="/tmp/demvae-full-budget-timing", help="the trainer's output folder")
    parser.add_argument("--output", default="benchmarks/results/full_budget_timing_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    budget = BUDGETS[args.budget]
    start, cpu_start = time.perf_counter(), time.process_time()
    # the sentence models only: a dialog model trains in two stages and is scored by other metrics (not timed here)
    runs, units = [run for run in all_runs(budget=args.budget) if run.table not in DIALOG_TABLES], {}
    for run in runs:
        if run.table not in units:  # one measurement per corpus: the models of a table cost the same
            units[run.table] = measure(run.preset, budget, args)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    estimates = {run.name: extrapolate(units[run.table], {**load_preset(run.preset), **budget.train,
                                                          **budget.table_train.get(run.table, {})}) for run in runs}
    ceilings = {table: LM_EPOCHS_SHOWN * lm_epoch_hours(unit) for table, unit in units.items()}
    parts = list(next(iter(estimates.values()))["hours"])
    print(f"{torch.get_num_threads()} thread(s); this process had {cpu / wall:.0%} of a core while measuring "
          "(a shared machine runs slower than an idle one)")
    print(f"{'run':<32}" + "".join(f"{part:>22}" for part in parts) + f"{'total (h)':>12}")
    for name, estimate in estimates.items():
        print(f"{name:<32}" + "".join(f"{estimate['hours'][p]:>22.1f}" for p in parts)
              + f"{estimate['total_hours']:>12.1f}")
    for table, hours in ceilings.items():
        print(f"{table + ' ceiling':<32}{'':>{22 * (len(parts) - 1)}}{hours:>22.1f}{hours:>12.1f}")
    total = sum(e["total_hours"] for e in estimates.values()) + sum(ceilings.values())
    print(f"all: {total:.0f} hours ({total / 24:.1f} days) at the measured speed")
    result = {"budget": args.budget, "threads": torch.get_num_threads(), "cpu_share_while_measuring": cpu / wall,
              "measured": units, "datasets": {table: DATASETS[table] for table in units}, "estimates": estimates,
              "ceiling_hours": ceilings, "total_hours": total, "lm_epochs_assumed": LM_EPOCHS_SHOWN}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
