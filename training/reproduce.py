"""Reproduce the paper's comparison: train each preset, evaluate it, picture it, and tabulate everything.

Runs the spec's Penn Treebank table (VAE, DI-VAE, semi-VAE, GM-VAE, DGM-VAE, the mixture ones with and without
the MI term, RNNLM), then the DailyDialog one (DI-VAE, GM-VAE, DGM-VAE with and without MI), then generation by
label on DailyDialog (the categorical DCM-VAE without labels, and supervised on act and emotion against CM-VAE, its
beta = 0 twin; DGM-VAE + MI with its components labelled by `demvae label-components`; control accuracy for each),
then the dialog experiment on the Stanford Multi-Domain dialogs (DI-VAE, GM-VAE and DGM-VAE + MI latent actions,
each a dialog model trained in two stages and scored by the dialog metrics: BLEU, policy accuracy, action
consistency, homogeneity with the intent, distinct-1/2, perplexity, entity F1).
GM-VAE and DGM-VAE + MI on Penn Treebank, the supervised DCM-VAE and CM-VAE and the three dialog models run over
three seeds (mode collapse varies from seed to seed); a budget may name its own runs (`full`: the models of the
paper's claims, one seed each). Each run trains with `demvae train`, is scored with `demvae evaluate` and pictured
with `demvae inspect`; its record (training summary, every metric, timings, the exact settings, the learning curve
where logged) goes to RESULTS_DIR/BUDGET/RUN.json as soon as it is done, with its pictures and component report
and, for the `full` and `paper` budgets, its model card in RESULTS_DIR/BUDGET/RUN/, and
benchmarks/results.md is rewritten from all the records there. The set is producible in pieces: finished runs are
skipped (unless their budget's settings changed); an interrupted one resumes its training from the last checkpoint
and its evaluation from the last finished part.

Budgets: `paper` is the reference protocol (spec sections 5 and 6), for a GPU. `full` is the reference models and
evaluation on a CPU, one thread a run (days: start it in the background, see
benchmarks/README.md). `cpu` takes 20 to 30 minutes a run on one CPU core beside a second run (`--jobs 2`); `smoke`
checks the whole pipeline in a minute. `--list-budgets` prints exactly what each changes.

  demvae reproduce --budget cpu                                  # everything, skipping what is done
  demvae reproduce --budget cpu --runs ptb-gm-vae ptb-dgm-vae-mi --jobs 2
  nohup demvae reproduce --budget full > ~/demvae-full.log 2>&1 &    # models in ~/demvae-runs; rerun to resume
  demvae reproduce --budget cpu --report-only                    # rewrite results.md from the records
  demvae reproduce --budget cpu --rescore                        # what older records lack, from their models
"""

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import subcommands
from .budgets import BUDGETS, TABLES, Run, all_runs
from .checks import checked_output_file, checked_output_folder, number, thread_count
from .console import log_line
from .reproduction_report import write_report
from .reproduction_run import curves_in_training, is_done, measure_ceiling, rescore_evaluation, train_and_evaluate
from .subcommands import stopping_on_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="see --list-budgets (default: cpu)")
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES), default=list(TABLES),
                        help="which tables to produce (default: all, in this order: Penn Treebank, DailyDialog, "
                             "DailyDialog's generation by label, SMD's dialog latent actions)")
    parser.add_argument("--runs", nargs="+", metavar="PRESET", help="only these presets (e.g. ptb-gm-vae)")
    parser.add_argument("--jobs", type=number(int, minimum=1), default=1,
                        help="runs trained side by side, the CPU cores shared among them (default: 1)")
    parser.add_argument("--num-threads", type=thread_count,
                        help="CPU threads per run (default: the budget's, `full`: 1; else the cores divided by "
                             "--jobs)")
    parser.add_argument("--work-dir",
                        help="where the models, checkpoints and logs go (default: $DEMVAE_WORK_DIR, else the "
                             "budget's: ~/demvae-runs for `full`, runs/reproduce otherwise; not committed)")
    parser.add_argument("--results-dir", default="benchmarks/reproduction",
                        help="where each run's record JSON and pictures go (default: benchmarks/reproduction in the "
                             "current folder)")
    parser.add_argument("--report", default="benchmarks/results.md",
                        help="the markdown tables (default: benchmarks/results.md in the current folder)")
    parser.add_argument("--data-dir", help="folder holding ptb/, daily_dialog/ and smd/ (default: $DEMVAE_DATA_DIR, "
                                           "else ../shared/data beside the checkout)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the tables from the records (and the complete learning curves of runs still "
                             "training in the work folder); train nothing")
    parser.add_argument("--rescore", action="store_true",
                        help="train nothing: score finished runs whose records predate the homogeneity's chance level "
                             "(or, a dialog model, the actions in use) again from their models in the work folder "
                             "(`demvae evaluate`), merge it into their records (and evaluation.json, cards), then "
                             "rewrite the tables; a record whose model is gone is left as it is")
    parser.add_argument("--list-budgets", action="store_true", help="print what each budget changes and exit")


def list_budgets() -> None:
    for name, spec in BUDGETS.items():
        print(f"{name}: {spec.description}.\n  train: {spec.train or 'the preset'}"
              + "".join(f"\n  train on {table}: {extra}" for table, extra in spec.table_train.items())
              + f"\n  evaluate: {spec.evaluate or 'the defaults'}"
              + "".join(f"\n  evaluate on {table}: {options or 'the defaults'}"
                        for table, options in spec.table_evaluate.items())
              + (f"\n  runs: {', '.join(spec.runs)} (seed 0)" if spec.runs else "")
              + f"\n  rPPL ceiling: {'yes' if spec.ceiling else 'no'}; cards: {'yes' if spec.cards else 'no'}; "
              f"threads per run: {spec.threads or 'the cores / --jobs'}; work dir: {spec.work_dir}")


def run(args) -> int:
    if args.list_budgets:
        list_budgets()
        return 0
    spec = BUDGETS[args.budget]
    report = checked_output_file(args.report, "--report")
    results_dir = checked_output_folder(args.results_dir, "--results-dir")
    work_dir = os.path.expanduser(args.work_dir if args.work_dir is not None else
                                  os.environ.get("DEMVAE_WORK_DIR") or spec.work_dir)
    if not args.report_only:
        checked_output_folder(work_dir, "--work-dir")
    work_dir = Path(work_dir)
    threads = args.num_threads or spec.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    runs = all_runs(tuple(args.tables), args.runs, budget=args.budget)
    places = {"work_dir": work_dir, "results_dir": results_dir, "threads": threads, "data_dir": args.data_dir}
    if args.rescore:
        return rescore(runs, args.budget, report, places)
    pending = [] if args.report_only else [r for r in runs if not is_done(r, args.budget, results_dir)]
    print(f"{len(runs)} run(s) in budget {args.budget!r}: {len(runs) - len(pending) if not args.report_only else 0} "
          f"done, {len(pending)} to do" + (f", {args.jobs} at a time, {threads} thread(s) each, in {work_dir}"
                                           if pending else "") + ".")
    failures, ceiling_lock = [], threading.Lock()

    def in_training() -> dict[str, list[dict]]:
        return {args.budget: curves_in_training(runs, args.budget, work_dir=work_dir, results_dir=results_dir,
                                                threads=threads)}

    def ceiling(table: str) -> None:
        if spec.ceiling and not args.report_only:
            with ceiling_lock:  # once per corpus, whichever run of it finishes first
                try:
                    measure_ceiling(table, args.budget, runs, **places)
                except RuntimeError as error:
                    failures.append(f"{table}-ceiling")
                    log_line(f"{table} ceiling: FAILED\n{error}")

    def one(item: Run):
        start = time.time()
        log_line(f"{item.name}: training and evaluating")
        try:
            train_and_evaluate(item, args.budget, **places)
        except RuntimeError as error:
            if subcommands.STOPPING:  # a signal ended its subcommand: it resumes at the next start
                return
            failures.append(item.name)
            log_line(f"{item.name}: FAILED\n{error}")
            return
        log_line(f"{item.name}: done in {(time.time() - start) / 60:.1f} min")
        ceiling(item.table)
        write_report(report, results_dir, in_training())  # after each run: an interrupted set leaves a current report

    with stopping_on_signals(), ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, pending))
        for table in dict.fromkeys(item.table for item in runs):  # a ceiling still missing, of finished runs
            ceiling(table)
    write_report(report, results_dir, in_training())
    print(f"wrote {report}" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


def rescore(runs: list[Run], budget: str, report: Path, places: dict) -> int:
    """`--rescore`: each finished run whose record lacks the homogeneity's chance level (or, a dialog model, the
    actions in use) scored again from its model; then the tables."""
    rescored, failures = [], []
    for item in runs:
        try:
            if rescore_evaluation(item, budget, **places):
                rescored.append(item.name)
        except RuntimeError as error:
            failures.append(item.name)
            log_line(f"{item.name}: FAILED\n{error}")
    write_report(report, places["results_dir"])
    print(f"rescored {len(rescored)} run(s){': ' * bool(rescored)}{', '.join(rescored)}; wrote "
          f"{report}" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["reproduce", *sys.argv[1:]]))
