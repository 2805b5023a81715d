"""Reproduce the paper's comparison: train each preset, evaluate it, picture it, and tabulate everything.

Runs the spec's Penn Treebank table (VAE, DI-VAE, semi-VAE, GM-VAE, DGM-VAE, the mixture ones with and without
the MI term, RNNLM), then the DailyDialog one (DI-VAE, GM-VAE, DGM-VAE with and without MI), then generation by
label on DailyDialog (the categorical DCM-VAE without labels, and supervised on act and emotion against CM-VAE, its
beta = 0 twin; DGM-VAE + MI with its components labelled by `demvae label-components`; control accuracy for each).
GM-VAE and DGM-VAE + MI on Penn Treebank and the supervised DCM-VAE and CM-VAE run over three seeds (mode collapse
varies from seed to seed); a budget may name its own runs (`full`: the four models of the paper's claim, one
seed each). Each run trains with `demvae train`, is scored
with `demvae evaluate` and pictured with `demvae inspect`; its record (training summary, every metric, timings, the
exact settings, the learning curve where logged) goes to RESULTS_DIR/BUDGET/RUN.json as soon as it is done, with
its pictures and, for the `full` and `paper` budgets, its model card in RESULTS_DIR/BUDGET/RUN/, and
benchmarks/results.md is rewritten from all the records there. The set is producible in pieces: finished runs are
skipped (unless their budget's settings changed); an interrupted one resumes its training from the last checkpoint
and its evaluation from the last finished part.

Budgets: `paper` is the reference protocol (spec sections 5 and 6), for a GPU. `full` is the reference models and
evaluation on a CPU, one thread a run, 20,000 steps at most (days: start it in the background, see
benchmarks/README.md). `cpu` takes 20 to 30 minutes a run on one CPU core beside a second run (`--jobs 2`); `smoke`
checks the whole pipeline in a minute. `--list-budgets` prints exactly what each changes.

  demvae reproduce --budget cpu                                  # everything, skipping what is done
  demvae reproduce --budget cpu --runs ptb-gm-vae ptb-dgm-vae-mi --jobs 2
  nohup demvae reproduce --budget full > ~/demvae-full.log 2>&1 &    # models in ~/demvae-runs; rerun to resume
  demvae reproduce --budget cpu --report-only                    # rewrite results.md from the records
  demvae reproduce --budget cpu --rescore       # homogeneity's chance level for older records, from their models
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from .budgets import BUDGETS, DATASETS, LABELLED_TABLES, TABLES, Run, all_runs, corpus_table, run_settings
from .checks import checked_output_file, checked_output_folder, number, thread_count
from .console import log_line
from .evaluate import progress_file, remove_progress, write_json
from .learning_curve import LEARNING_CURVE, read_curve
from .model_folder import EVALUATION_FILE, RUN_SUMMARY
from .precision import cpu_model_name
from .reproduction_report import ceiling_path, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="see --list-budgets (default: cpu)")
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES), default=list(TABLES),
                        help="which tables to produce (default: all, in this order: Penn Treebank, DailyDialog, "
                             "DailyDialog's generation by label)")
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
    parser.add_argument("--data-dir", help="folder holding ptb/ and daily_dialog/ (default: $DEMVAE_DATA_DIR, "
                                           "else ../shared/data beside the checkout)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the tables from the records (and the complete learning curves of runs still "
                             "training in the work folder); train nothing")
    parser.add_argument("--rescore", action="store_true",
                        help="train nothing: score the homogeneity of finished runs whose records predate its chance "
                             "level again from their models in the work folder (`demvae evaluate --metrics "
                             "homogeneity`), merge it into their records (and evaluation.json, cards), then rewrite "
                             "the tables; a record whose model is gone is left as it is")
    parser.add_argument("--list-budgets", action="store_true", help="print what each budget changes and exit")


# ----- one run -----


RUNNING: set[subprocess.Popen] = set()  # the subcommands running now, stopped with the command
RUNNING_LOCK = threading.Lock()  # a subcommand starts, or a stop begins: never both at once
STOPPING = False  # a first signal has come: the subcommands are saving where they are, and no new one starts
STOP_GRACE_SECONDS = 300  # for a training step, a validation and a checkpoint at the reference size, with room


def run_command(arguments: list[str], log: Path, env: dict) -> None:
    """`demvae ARGUMENTS` in a fresh process, its output appended to `log`; a failure raises with the log's end."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ demvae {' '.join(arguments)}\n")
        handle.flush()
        with RUNNING_LOCK:  # the worker whose subcommand a signal ended must not start the next run's
            if STOPPING:
                raise RuntimeError(f"`demvae {arguments[0]}` not started: the command is stopping.")
            child = subprocess.Popen([sys.executable, "-m", "demvae", *arguments], stdout=handle,
                                     stderr=subprocess.STDOUT, env=env)
            RUNNING.add(child)
        try:
            code = child.wait()
        finally:
            RUNNING.discard(child)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"`demvae {arguments[0]}` failed (exit {code}); the end of {log}:\n" + "\n".join(tail))


def options(settings: dict) -> list[str]:
    """--key value pairs for a subcommand."""
    return [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def command_environment(threads: int, data_dir: str | None) -> dict:
    """The subcommands' environment: `threads` CPU threads, no progress bars, no network, the corpora's folder."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    if data_dir:
        env["DEMVAE_DATA_DIR"] = str(Path(data_dir).resolve())
    return env


def step_done(marker: Path, settings: dict) -> bool:
    """A step of a run (training, evaluation) finished with these settings: its marker file says so."""
    return marker.is_file() and json.loads(marker.read_text())["settings"] == settings


def step_minutes(seconds: float | None, start: float) -> dict:
    """A step's time for its marker: the step's own count over all its starts (training: its last checkpoint's;
    evaluation: its JSON's), else this start's alone, marked as a lower bound (the step resumed work of a start
    from before steps were timed)."""
    if seconds is None:
        return {"minutes": (time.time() - start) / 60, "every_start": False}
    return {"minutes": seconds / 60, "every_start": True}


def training_seconds(model_dir: Path) -> float | None:
    from .checkpoints import STATE_FILE, latest_checkpoint  # here: `--help` must not wait for torch

    checkpoint = latest_checkpoint(model_dir / "checkpoints")
    return json.loads((checkpoint / STATE_FILE).read_text()).get("seconds") if checkpoint else None


def train_and_evaluate(run: Run, budget: str, *, work_dir: Path, results_dir: Path, threads: int,
                       data_dir: str | None) -> dict:
    """Train (resuming), evaluate (resuming), picture and card one run; returns its record, also written to
    RESULTS_DIR/BUDGET/RUN.json, the last file of the run to appear."""
    model_dir = work_dir / budget / run.name
    model_dir.mkdir(parents=True, exist_ok=True)
    log = model_dir / "reproduce.log"
    env = command_environment(threads, data_dir)
    settings = run_settings(run, budget)
    preset = model_dir / "preset.json"
    preset.write_text(json.dumps({**settings["preset_settings"], **settings["train"]}, indent=2) + "\n")

    trained, evaluated = model_dir / "reproduce_training.json", model_dir / "reproduce_evaluation.json"
    labelled, evaluation_file = model_dir / "reproduce_labels.json", model_dir / "evaluation.json"
    if not step_done(trained, settings):
        for stale in (labelled, evaluated, evaluation_file):  # of an earlier model in this folder
            stale.unlink(missing_ok=True)
        remove_progress(progress_file(evaluation_file))
        start = time.time()
        again = "--resume"  # an interrupted run continues; a stale one starts over (and resumes if interrupted)
        if trained.is_file():
            trained.unlink()
            again = "--overwrite"
        run_command(["train", "--config", str(preset), "--seed", str(run.seed), "--output-dir", str(model_dir),
                     again, "--report-to", "none", "--num-samples", "0"], log, env)
        write_json(trained, {"settings": settings, **step_minutes(training_seconds(model_dir), start)})
    if not step_done(labelled, settings):
        label_components(run, model_dir, log, env)
        write_json(labelled, {"settings": settings})
    if not step_done(evaluated, settings):
        start = time.time()
        run_command(["evaluate", str(model_dir), "--dataset", run.dataset, "--output", str(evaluation_file),
                     "--seed", str(run.seed), "--no-progress", "--resume", *options(BUDGETS[budget].evaluate)],
                    log, env)
        write_json(evaluated, {"settings": settings,
                               **step_minutes(json.loads(evaluation_file.read_text()).get("seconds"), start)})
    evaluation = json.loads(evaluation_file.read_text())
    config = json.loads((model_dir / "config.json").read_text())
    pictures = results_dir / budget / run.name
    if config["variant"] == "dem":  # the mixture prior's latent space
        run_command(["inspect", str(model_dir), "--dataset", run.dataset, "--output-dir", str(pictures),
                     "--seed", str(run.seed)], log, env)
    if BUDGETS[budget].cards:
        write_card(run, model_dir, pictures, evaluation, threads)
    summary = json.loads((model_dir / RUN_SUMMARY).read_text())
    training_time, evaluation_time = (json.loads(marker.read_text()) for marker in (trained, evaluated))
    record = {
        "run": run.name, "table": run.table, "preset": run.preset, "seed": run.seed, "budget": budget,
        "training": {"best_step": summary["step"], "validation": summary["validation"],
                     "minutes": training_time["minutes"]},
        "evaluation": evaluation, "evaluation_minutes": evaluation_time["minutes"],
        "timed_every_start": all(time_.get("every_start", False) for time_ in (training_time, evaluation_time)),
        "machine": machine_description(threads, training=summary["ran"]["mixed_precision"],
                                       evaluation=evaluation["settings"]["mixed_precision"]),
        "settings": settings,
    }
    if settings["train"].get("learning_curve_every"):
        record["curve"] = read_curve(model_dir)
    write_json(results_dir / budget / f"{run.name}.json", record)
    return record


def rescore_homogeneity(run: Run, budget: str, *, work_dir: Path, results_dir: Path, threads: int,
                        data_dir: str | None) -> bool:
    """The homogeneity of a finished run scored again from its model, with its chance level, into its record (and
    the model's evaluation.json and cards): a record keeps the scores, not the clusters that the chance level needs.
    False when there is nothing to do: no record, one without homogeneity or with its chance level, or no model."""
    record_path, model_dir = Path(results_dir) / budget / f"{run.name}.json", work_dir / budget / run.name
    if not record_path.is_file() or not (model_dir / "config.json").is_file():
        return False
    record = json.loads(record_path.read_text())
    evaluation = record["evaluation"]
    if "homogeneity" not in evaluation or "homogeneity_chance" in evaluation:
        return False
    scores = model_dir / "homogeneity.json"
    run_command(["evaluate", str(model_dir), "--dataset", run.dataset, "--output", str(scores), "--seed",
                 str(run.seed), "--no-progress", *options(BUDGETS[budget].evaluate), "--metrics", "homogeneity"],
                model_dir / "reproduce.log", command_environment(threads, data_dir))
    rescored = json.loads(scores.read_text())
    if any(abs(rescored["homogeneity"].get(label, -1.0) - value) > 1e-6
           for label, value in evaluation["homogeneity"].items()):
        raise RuntimeError(f"{model_dir} is not the model of {record_path}: its homogeneity is "
                           f"{rescored['homogeneity']}, the record's {evaluation['homogeneity']}.")
    evaluation.update({key: value for key, value in rescored.items() if key not in ("seconds", "settings")})
    write_json(model_dir / EVALUATION_FILE, evaluation)
    write_json(record_path, record)
    scores.unlink()
    from .model_card import write_model_card
    from .threads import cpu_threads

    with cpu_threads(threads):
        write_model_card(model_dir)
    if BUDGETS[budget].cards:
        write_card(run, model_dir, Path(results_dir) / budget / run.name, evaluation, threads)
    return True


def label_components(run: Run, model_dir: Path, log: Path, env: dict) -> None:
    """In a table that measures control accuracy, name the components of the model by the label columns it was not
    trained on (`demvae label-components`), so that it can generate by label too."""
    config = json.loads((model_dir / "config.json").read_text())
    supervised = {name for name, spec in (config.get("attributes") or {}).items() if spec["supervised"]}
    columns = [column for column in LABELLED_TABLES.get(run.table, ()) if column not in supervised]
    if columns:
        run_command(["label-components", str(model_dir), "--dataset", run.dataset, "--labels", *columns,
                     "--no-progress"], log, env)


def write_card(run: Run, model_dir: Path, pictures: Path, evaluation: dict, threads: int) -> None:
    """The release card of the model, from its evaluation, with samples per component and the latent picture:
    PICTURES/README.md, ready for `demvae push` (which renders it again from the same inputs)."""
    from .loading import load_model_and_tokenizer
    from .model_card import LATENT_IMAGE_NAME, recorded_training_settings, render_model_card
    from .threads import cpu_threads

    with cpu_threads(threads):
        model, tokenizer = load_model_and_tokenizer(model_dir)
        image = LATENT_IMAGE_NAME if (pictures / LATENT_IMAGE_NAME).is_file() else None
        card = render_model_card(model, tokenizer, repo_id=f"demvae-{run.preset}", evaluations=[evaluation],
                                 training_settings=recorded_training_settings(model_dir), latent_image=image)
    pictures.mkdir(parents=True, exist_ok=True)
    card.save(pictures / "README.md")


def ceiling_settings(table: str, budget: str) -> dict:
    return {"table": table, "budget": budget, "dataset": DATASETS[table], "evaluate": BUDGETS[budget].evaluate}


def measure_ceiling(table: str, budget: str, runs: list[Run], *, work_dir: Path, results_dir: Path, threads: int,
                    data_dir: str | None) -> None:
    """The rPPL ceiling of the table's corpus, once per corpus: the rPPL language model trained on real training
    sentences (as many as the budget's rPPL samples) with the vocabulary of a trained model of the corpus (all of its
    presets build the same one), written to RESULTS_DIR/BUDGET/TABLE-ceiling.json for the corpus's first table.
    Nothing while no model of the corpus has finished training."""
    table = corpus_table(table)
    settings = ceiling_settings(table, budget)
    if step_done(ceiling_path(results_dir, budget, table), settings):
        return
    trained = [run for run in runs if corpus_table(run.table) == table
               and (work_dir / budget / run.name / "reproduce_training.json").is_file()]
    if not trained:
        return
    model_dir, output = work_dir / budget / trained[0].name, work_dir / budget / f"{table}-ceiling.json"
    log_line(f"{table}: the rPPL ceiling of real sentences")
    start = time.time()
    run_command(["evaluate", str(model_dir), "--dataset", DATASETS[table], "--metrics", "ceiling", "--output",
                 str(output), "--seed", "0", "--no-progress", "--resume", *options(BUDGETS[budget].evaluate)],
                work_dir / budget / f"{table}-ceiling.log", command_environment(threads, data_dir))
    ceiling = json.loads(output.read_text())
    timing = step_minutes(ceiling.get("seconds"), start)
    write_json(ceiling_path(results_dir, budget, table), {
        "table": table, "budget": budget, "ceiling": ceiling["ceiling"],
        "vocabulary_of": trained[0].name, "minutes": timing["minutes"], "timed_every_start": timing["every_start"],
        "machine": machine_description(threads, evaluation=ceiling["settings"]["mixed_precision"]),
        "settings": settings,
    })


def curves_in_training(runs: list[Run], budget: str, *, work_dir: Path, results_dir: Path,
                       threads: int) -> list[dict]:
    """The learning curves of runs still training whose curve is complete (logged up to `learning_curve_until`
    with the budget's current settings), as records that carry only the curve: the picture is ready hours before
    the runs' records."""
    found = []
    for run in runs:
        settings = run_settings(run, budget)
        until, folder = settings["train"].get("learning_curve_until"), work_dir / budget / run.name
        if not until or is_done(run, budget, results_dir) or not (folder / LEARNING_CURVE).is_file():
            continue
        preset, points = json.loads((folder / "preset.json").read_text()), read_curve(folder)
        current = {key: preset.get(key) for key in settings["train"]} == settings["train"]
        if current and points and points[-1]["step"] >= until:
            found.append({"table": run.table, "preset": run.preset, "curve": points, "settings": settings,
                          "machine": machine_description(threads), "still_training": True})
    return found


PRECISION_NAMES = {"no": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}


def machine_description(threads: int, *, training: str | None = None, evaluation: str | None = None) -> str:
    """CPU model (or GPU), threads per run and the precisions that ran (`mixed_precision` as resolved: no, bf16,
    fp16): timings mean little without them, and numbers in bf16 differ a little from float32."""
    import torch

    machine = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_model_name()}, {threads} thread(s)"
    ran = {part: PRECISION_NAMES[precision] for part, precision in (("training", training),
                                                                     ("evaluation", evaluation)) if precision}
    if len(set(ran.values())) == 1:
        return f"{machine}, {next(iter(ran.values()))}"
    return ", ".join([machine, *(f"{part} in {name}" for part, name in ran.items())])


# ----- the command -----


def stop(signum, frame) -> None:
    """SIGTERM or SIGINT (Ctrl-C): stop the subcommands running now and the command, instead of going on with the
    next run. After SIGTERM each subcommand gets one SIGINT (a Ctrl-C in a terminal has reached them already):
    training stops after the step it is in and saves a checkpoint, so nothing is lost, and an evaluation keeps its
    finished parts. Those still running after STOP_GRACE_SECONDS, or at a second signal, are terminated; every file
    is written atomically, so the next start resumes from the last checkpoint or finished part either way."""
    global STOPPING
    with RUNNING_LOCK:
        children, stopping = list(RUNNING), STOPPING
        STOPPING = True
    if stopping:
        for child in children:
            child.terminate()
    else:
        if signum != signal.SIGINT:
            for child in children:
                child.send_signal(signal.SIGINT)
        if children:
            log_line(f"stopping: the running subcommands save where they are (up to {STOP_GRACE_SECONDS} s; a second "
                     "signal stops them at once).")
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.terminate()
    for child in children:
        child.wait()
    log_line(f"stopped by signal {signum}; the same command resumes.")
    os._exit(128 + signum)


@contextmanager
def stopping_on_signals():
    """`stop` handles SIGTERM and SIGINT while the runs go on (the main thread only: elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def is_done(run: Run, budget: str, results_dir: Path) -> bool:
    """A record exists for the run, made with the budget's current settings (and its card, where the budget
    renders one)."""
    path = Path(results_dir) / budget / f"{run.name}.json"
    card = Path(results_dir) / budget / run.name / "README.md"
    return (path.is_file() and json.loads(path.read_text())["settings"] == run_settings(run, budget)
            and (not BUDGETS[budget].cards or card.is_file()))


def list_budgets() -> None:
    for name, spec in BUDGETS.items():
        print(f"{name}: {spec.description}.\n  train: {spec.train or 'the preset'}"
              + "".join(f"\n  train on {table}: {extra}" for table, extra in spec.table_train.items())
              + f"\n  evaluate: {spec.evaluate or 'the defaults'}"
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
            if STOPPING:  # a signal ended its subcommand: it resumes at the next start
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
    """`--rescore`: the homogeneity of each finished run whose record lacks its chance level, again from its model;
    then the tables."""
    rescored, failures = [], []
    for item in runs:
        try:
            if rescore_homogeneity(item, budget, **places):
                rescored.append(item.name)
        except RuntimeError as error:
            failures.append(item.name)
            log_line(f"{item.name}: FAILED\n{error}")
    write_report(report, places["results_dir"])
    print(f"rescored the homogeneity of {len(rescored)} run(s){': ' * bool(rescored)}{', '.join(rescored)}; wrote "
          f"{report}" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["reproduce", *sys.argv[1:]]))
