"""Reproduce the paper's comparison: train each preset, evaluate it, picture it, and tabulate everything.

Runs the spec's Penn Treebank table (VAE, DI-VAE, semi-VAE, GM-VAE, DGM-VAE, the mixture ones with and without
the MI term, RNNLM) and then the DailyDialog one (DI-VAE, GM-VAE, DGM-VAE with and without MI), GM-VAE and
DGM-VAE + MI on Penn Treebank over three seeds (mode collapse varies from seed to seed). Each run trains with
`demvae train`, is scored with `demvae evaluate` and pictured with `demvae inspect`; its record (training summary,
every metric, timings, the exact settings) goes to RESULTS_DIR/BUDGET/RUN.json as soon as it is done, and
benchmarks/results.md is rewritten from all the records there. The set is producible in pieces: finished runs are
skipped (unless their budget's settings changed), interrupted ones resume from their last checkpoint.

Budgets: `paper` is the reference protocol (spec sections 5 and 6), for a GPU. `cpu` takes 20 to 30 minutes a run
on one CPU core beside a second run (`--jobs 2`); `smoke` checks the whole pipeline in a minute. `--list-budgets`
prints exactly what each changes.

  demvae reproduce --budget cpu                                  # everything, skipping what is done
  demvae reproduce --budget cpu --runs ptb-gm-vae ptb-dgm-vae-mi --jobs 2
  demvae reproduce --budget cpu --report-only                    # rewrite results.md from the records
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modeling_demvae import DEMVAEConfig

from .checks import checked_output_file, checked_output_folder, number
from .evaluate import write_json
from .loading import RUN_SUMMARY
from .precision import cpu_model_name
from .train import MODEL_FIELDS, PRESET_DIR

SEEDED_RUNS = {"ptb-gm-vae": (0, 1, 2), "ptb-dgm-vae-mi": (0, 1, 2)}  # the comparison the paper is about
TABLES = {
    "ptb": ("Penn Treebank", ["ptb-vae", "ptb-di-vae", "ptb-semi-vae", "ptb-semi-vae-mi", "ptb-gm-vae",
                              "ptb-gm-vae-mi", "ptb-dgm-vae", "ptb-dgm-vae-mi", "ptb-rnnlm"]),
    "dailydialog": ("DailyDialog", ["dailydialog-di-vae", "dailydialog-gm-vae", "dailydialog-gm-vae-mi",
                                    "dailydialog-dgm-vae", "dailydialog-dgm-vae-mi"]),
}
DATASETS = {"ptb": "ptb", "dailydialog": "daily_dialog"}


@dataclass(frozen=True)
class Budget:
    """What a budget changes: training settings over the preset's, and `demvae evaluate` options."""

    description: str
    train: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)


BUDGETS = {
    "paper": Budget("the reference protocol: the presets as they are (spec section 5), NLL with 500 samples and "
                    "rPPL with 40,000 + 3,000 samples on the whole test set (spec section 6)"),
    "cpu": Budget(
        "20 to 30 minutes a run on one CPU core beside a second run (`--jobs 2`: two models in 20 to 30 minutes on "
        "two cores): a model half the reference width, one posterior sample, 2,000 "
        "steps with the KL annealing compressed to match, validation every 250 steps; "
        "evaluation on the first 1,000 test sentences with 50 importance samples, rPPL and wKL from 2,000 + 200 "
        "samples and a language model trained for at most 8 epochs",
        train={"embed_size": 256, "encoder_hidden_size": 256, "decoder_hidden_size": 256,
               "num_posterior_samples": 1, "max_steps": 2000, "eval_every": 250,
               "kl_annealing_midpoint": 700, "kl_annealing_slope": 0.008, "lr_decay_patience": 2,
               "early_stopping_patience": 4},
        evaluate={"max_sentences": 1000, "nll_samples": 50, "rppl_preset": "quick", "rppl_samples": 2000,
                  "rppl_max_epochs": 8},
    ),
    "smoke": Budget(
        "a pipeline check, not a result: a tiny model, 30 steps, 50 test sentences",
        train={"embed_size": 32, "encoder_hidden_size": 32, "decoder_hidden_size": 32, "vocab_size": 2000,
               "num_posterior_samples": 1, "max_steps": 30, "eval_every": 15},
        evaluate={"max_sentences": 50, "nll_samples": 5, "rppl_preset": "smoke", "rppl_max_epochs": 2},
    ),
}


@dataclass(frozen=True)
class Run:
    """One model to train and evaluate: a preset of configuration/ with a seed."""

    table: str
    preset: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.preset}-seed{self.seed}"

    @property
    def dataset(self) -> str:
        return DATASETS[self.table]


def all_runs(tables=tuple(TABLES), presets=None) -> list[Run]:
    """The runs of the chosen tables in table order, restricted to `presets` when given (unknown ones: an error)."""
    known = [preset for table in tables for preset in TABLES[table][1]]
    if presets:
        unknown = sorted(set(presets) - set(known))
        if unknown:
            raise ValueError(f"unknown run(s) {unknown}; the tables {list(tables)} have: {', '.join(known)}.")
    runs = [Run(table, preset, seed) for table in tables for preset in TABLES[table][1]
            if not presets or preset in presets for seed in SEEDED_RUNS.get(preset, (0,))]
    return sorted(runs, key=lambda run: (tables.index(run.table), run.seed))  # a whole table first, then more seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="see --list-budgets (default: cpu)")
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES), default=list(TABLES),
                        help="which tables to produce (default: both, Penn Treebank first)")
    parser.add_argument("--runs", nargs="+", metavar="PRESET", help="only these presets (e.g. ptb-gm-vae)")
    parser.add_argument("--jobs", type=number(int, minimum=1), default=1,
                        help="runs trained side by side, the CPU cores shared among them (default: 1)")
    parser.add_argument("--work-dir", default="runs/reproduce",
                        help="where the models and checkpoints go (default: runs/reproduce, not committed)")
    parser.add_argument("--results-dir", default="benchmarks/reproduction",
                        help="where each run's record JSON and pictures go (default: benchmarks/reproduction in the "
                             "current folder)")
    parser.add_argument("--report", default="benchmarks/results.md",
                        help="the markdown tables (default: benchmarks/results.md in the current folder)")
    parser.add_argument("--data-dir", help="folder holding ptb/ and daily_dialog/ (default: $DEMVAE_DATA_DIR, "
                                           "else ../shared/data beside the checkout)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the tables from the records; train nothing")
    parser.add_argument("--list-budgets", action="store_true", help="print what each budget changes and exit")


# ----- one run -----


def run_command(arguments: list[str], log: Path, env: dict) -> None:
    """`demvae ARGUMENTS` in a fresh process, its output appended to `log`; a failure raises with the log's end."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ demvae {' '.join(arguments)}\n")
        handle.flush()
        code = subprocess.call([sys.executable, "-m", "demvae", *arguments], stdout=handle,
                               stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"`demvae {arguments[0]}` failed (exit {code}); the end of {log}:\n" + "\n".join(tail))


def options(settings: dict) -> list[str]:
    """--key value pairs for a subcommand."""
    return [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def run_settings(run: Run, budget: str) -> dict:
    """Everything the run's result depends on, recorded beside the result: a change makes the run stale."""
    spec = BUDGETS[budget]
    return {"preset": run.preset, "seed": run.seed, "budget": budget, "train": spec.train,
            "evaluate": spec.evaluate, "preset_settings": json.loads((preset_path(run.preset)).read_text())}


def preset_path(preset: str) -> Path:
    return PRESET_DIR / f"{preset}.json"


def train_and_evaluate(run: Run, budget: str, *, work_dir: Path, results_dir: Path, threads: int,
                       data_dir: str | None) -> dict:
    """Train (resuming), evaluate and picture one run; returns its record, also written to RESULTS_DIR/RUN.json."""
    model_dir = work_dir / budget / run.name
    model_dir.mkdir(parents=True, exist_ok=True)
    log = model_dir / "reproduce.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    if data_dir:
        env["DEMVAE_DATA_DIR"] = str(Path(data_dir).resolve())
    settings = run_settings(run, budget)
    preset = model_dir / "preset.json"
    preset.write_text(json.dumps({**settings["preset_settings"], **settings["train"]}, indent=2) + "\n")

    trained = model_dir / "reproduce_training.json"
    if not trained.is_file() or json.loads(trained.read_text())["settings"] != settings:
        start = time.time()
        again = "--resume"  # an interrupted run continues; a stale one starts over (and resumes if interrupted)
        if trained.is_file():
            trained.unlink()
            again = "--overwrite"
        run_command(["train", "--config", str(preset), "--seed", str(run.seed), "--output-dir", str(model_dir),
                     again, "--report-to", "none", "--num-samples", "0"], log, env)
        write_json(trained, {"settings": settings, "minutes": (time.time() - start) / 60})
    training = json.loads(trained.read_text())

    start = time.time()
    evaluation_file = model_dir / "evaluation.json"
    run_command(["evaluate", str(model_dir), "--dataset", run.dataset, "--output", str(evaluation_file),
                 "--seed", str(run.seed), "--no-progress", *options(BUDGETS[budget].evaluate)], log, env)
    evaluation = json.loads(evaluation_file.read_text())
    evaluation_minutes = (time.time() - start) / 60
    config = json.loads((model_dir / "config.json").read_text())
    pictures = results_dir / budget / run.name
    if config["variant"] == "dem":  # the mixture prior's latent space
        run_command(["inspect", str(model_dir), "--dataset", run.dataset, "--output-dir", str(pictures),
                     "--seed", str(run.seed)], log, env)
    summary = json.loads((model_dir / RUN_SUMMARY).read_text())
    record = {
        "run": run.name, "table": run.table, "preset": run.preset, "seed": run.seed, "budget": budget,
        "training": {"best_step": summary["step"], "validation": summary["validation"],
                     "minutes": training["minutes"]},
        "evaluation": evaluation, "evaluation_minutes": evaluation_minutes,
        "machine": machine_description(threads), "settings": settings,
    }
    write_json(results_dir / budget / f"{run.name}.json", record)
    return record


def machine_description(threads: int) -> str:
    """CPU model (or GPU) and threads per run: timings mean little without it."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{cpu_model_name()}, {threads} thread(s)"


# ----- the tables -----

# (header, how to read it from a record, decimals); lower is better for rPPL, wKL and NLL
COLUMNS = {
    "ptb": [("rPPL", "rppl", 1), ("BLEU", "bleu", 2), ("wKL", "wkl", 3), ("NLL", "nll", 2),
            ("I(x;c)", "mi", 2), ("exp I(x;c) per group", "active_components", 2), ("spread", "component_spread", 2),
            ("L_d", "dispersion", 3)],
    "dailydialog": [("rPPL", "rppl", 1), ("BLEU", "bleu", 2), ("wKL", "wkl", 3), ("NLL", "nll", 2),
                    ("act homogeneity", "homogeneity_act", 3), ("emotion homogeneity", "homogeneity_emotion", 3),
                    ("I(x;c)", "mi", 2), ("spread", "component_spread", 2), ("L_d", "dispersion", 3)],
}
COMPARISON = ("ptb-dgm-vae-mi", "ptb-gm-vae")  # the paper's claim: dispersion prevents the collapse
CLAIMS = [("rppl", "rPPL", -1), ("bleu", "BLEU", +1), ("mi", "I(x;c)", +1), ("component_spread", "spread", +1)]


def record_metrics(record: dict) -> dict[str, float]:
    """The numbers the tables show: per-group lists summarised (I(x;c) summed over groups as in the spec, the
    effective number of components and the spread averaged), homogeneity per label."""
    evaluation, values = record["evaluation"], {}
    for key in ("rppl", "bleu", "wkl", "nll", "dispersion"):
        if isinstance(evaluation.get(key), (int, float)):
            values[key] = float(evaluation[key])
    if evaluation.get("mi"):
        values["mi"] = sum(evaluation["mi"])
    for key in ("active_components", "component_spread"):
        if evaluation.get(key):
            values[key] = statistics.fmean(evaluation[key])
    for label, score in (evaluation.get("homogeneity") or {}).items():
        values[f"homogeneity_{label}"] = score
    values["minutes"] = record["training"]["minutes"] + record["evaluation_minutes"]
    return values


def summarise(values: list[float], decimals: int) -> str:
    """One seed: the value; several: mean ± sample standard deviation."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{statistics.fmean(values):.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def model_name(preset: str) -> str:
    """The paper's name of a preset's model, e.g. 'ptb-dgm-vae-mi' -> 'DGM-VAE + MI'."""
    settings = json.loads(preset_path(preset).read_text())
    return DEMVAEConfig(**{key: value for key, value in settings.items() if key in MODEL_FIELDS}).paper_name


def load_records(results_dir: Path, budget: str) -> list[dict]:
    folder = Path(results_dir) / budget
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def format_table(table: str, records: list[dict]) -> list[str]:
    columns = COLUMNS[table]
    lines = ["| model | seeds | " + " | ".join(header for header, _, _ in columns) + " | minutes |",
             "| --- | --- |" + " ---: |" * (len(columns) + 1)]
    for preset in TABLES[table][1]:
        runs = [record for record in records if record["preset"] == preset]
        if not runs:
            continue
        metrics = [record_metrics(record) for record in runs]
        cells = [summarise([m[key] for m in metrics if key in m], decimals) for _, key, decimals in columns]
        seeds = ", ".join(str(record["seed"]) for record in runs)
        minutes = summarise([m["minutes"] for m in metrics], 0)
        lines.append(f"| {model_name(preset)} | {seeds} | " + " | ".join(cells) + f" | {minutes} |")
    return lines


def format_claims(records: list[dict]) -> list[str]:
    """Whether DGM-VAE + MI beats GM-VAE on each claimed measure, as means over their seeds."""
    better, worse = ([record_metrics(r) for r in records if r["preset"] == preset] for preset in COMPARISON)
    if not better or not worse:
        return []
    lines = [f"{model_name(COMPARISON[0])} ({len(better)} seeds) against {model_name(COMPARISON[1])} "
             f"({len(worse)} seeds), means:", ""]
    for key, header, sign in CLAIMS:
        a, b = statistics.fmean(m[key] for m in better), statistics.fmean(m[key] for m in worse)
        verdict = "better" if sign * (a - b) > 0 else "not better"
        lines.append(f"- {header}: {a:.2f} against {b:.2f} ({verdict}; {'lower' if sign < 0 else 'higher'} is "
                     "better)")
    return lines


def write_report(path: Path, results_dir: Path) -> None:
    """benchmarks/results.md from every record in the results folder, one section per budget."""
    lines = ["# Reproduction of the paper's comparison", "",
             "Written by `demvae reproduce` (`training/reproduce.py`, installed as `demvae.reproduce`) from the "
             f"records in `{display_path(results_dir)}/BUDGET/`; latent-space pictures and component reports beside "
             "them. Rerun a missing or stale model with the same command: finished runs are skipped.", "",
             "Lower is better for rPPL, wKL and NLL (nats per sentence); BLEU is 0-100. I(x;c) is the mutual "
             "information between sentences and components on the test sentences, summed over groups (0 when "
             "every group collapsed); exp I(x;c) is the effective number of components a group tells apart (1 to "
             "K); spread is the mean distance between a group's component means in pooled standard deviations; "
             "L_d is the dispersion term. Several seeds: mean ± standard deviation. Compare models within a budget "
             "only: with a few thousand greedy samples (the `cpu` budget) rPPL is dominated by the test words that no "
             "sample contains, so its absolute values are far above the paper's. The RNNLM has no latent, so its "
             "samples are drawn word by word (greedy decoding would repeat one sentence): its rPPL and wKL measure "
             "sampled text against the other models' greedy text and are not comparable with theirs."]
    for budget, spec in BUDGETS.items():
        records = load_records(results_dir, budget)
        if not records:
            continue
        machines = sorted({record["machine"] for record in records})
        lines += ["", f"## Budget `{budget}`", "", f"{spec.description[0].upper()}{spec.description[1:]}.",
                  f"Measured on: {'; '.join(machines)}."]
        for table, (title, _) in TABLES.items():
            table_records = [record for record in records if record["table"] == table]
            lines += ["", f"### {title}"]
            if table_records:
                lines += ["", *format_table(table, table_records)]
            missing = [run.name for run in all_runs((table,)) if run.name not in {r["run"] for r in table_records}]
            if missing:
                lines += ["", f"Not run yet: {', '.join(missing)}."]
        if claims := format_claims(records):
            lines += ["", "### Dispersion against mode collapse", "", *claims]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def display_path(path: Path) -> str:
    """A path as the reader of the report sees it: relative to the current folder when inside it."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


# ----- the command -----


def is_done(run: Run, budget: str, results_dir: Path) -> bool:
    """A record exists for the run, made with the budget's current settings."""
    path = Path(results_dir) / budget / f"{run.name}.json"
    return path.is_file() and json.loads(path.read_text())["settings"] == run_settings(run, budget)


def run(args) -> int:
    if args.list_budgets:
        for name, spec in BUDGETS.items():
            print(f"{name}: {spec.description}.\n  train: {spec.train or 'the preset'}\n  "
                  f"evaluate: {spec.evaluate or 'the defaults'}")
        return 0
    results_dir, report = Path(args.results_dir), Path(args.report)
    checked_output_file(report, "--report")
    checked_output_folder(results_dir, "--results-dir")
    if not args.report_only:
        checked_output_folder(args.work_dir, "--work-dir")
    runs = all_runs(tuple(args.tables), args.runs)
    pending = [] if args.report_only else [r for r in runs if not is_done(r, args.budget, results_dir)]
    print(f"{len(runs)} run(s) in budget {args.budget!r}: {len(runs) - len(pending) if not args.report_only else 0} "
          f"done, {len(pending)} to do" + (f", {args.jobs} at a time" if pending else "") + ".")
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    failures = []

    def one(item: Run):
        start = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {item.name}: training and evaluating", flush=True)
        try:
            train_and_evaluate(item, args.budget, work_dir=Path(args.work_dir), results_dir=results_dir,
                               threads=threads, data_dir=args.data_dir)
        except RuntimeError as error:
            failures.append(item.name)
            print(f"[{time.strftime('%H:%M:%S')}] {item.name}: FAILED\n{error}", flush=True)
            return
        write_report(report, results_dir)  # after each run, so an interrupted set leaves a current table
        print(f"[{time.strftime('%H:%M:%S')}] {item.name}: done in {(time.time() - start) / 60:.1f} min", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, pending))
    write_report(report, results_dir)
    print(f"wrote {report}" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["reproduce", *sys.argv[1:]]))
