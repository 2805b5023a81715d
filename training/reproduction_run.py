"""One run of `demvae reproduce`: train a preset (resuming), evaluate it (resuming), picture it, card it and write
its record; and the pieces beside the runs: the rPPL ceiling of a corpus, the learning curves of runs still training,
the homogeneity of older records scored again. Each step runs as a `demvae` subcommand (`subcommands`) and leaves a
marker with the settings it ran with, so that a finished step is skipped and a stale one redone."""

import json
import time
from pathlib import Path

from .budgets import BUDGETS, DATASETS, DIALOG_TABLES, LABELLED_TABLES, Run, corpus_table, run_settings
from .console import log_line
from .evaluate import progress_file, remove_progress, write_json
from .learning_curve import LEARNING_CURVE, read_curve
from .model_folder import EVALUATION_FILE, RUN_SUMMARY
from .precision import cpu_model_name
from .reproduction_report import ceiling_path
from .subcommands import command_environment, options, run_command


def is_done(run: Run, budget: str, results_dir: Path) -> bool:
    """A record exists for the run, made with the budget's current settings (and its card, where the budget
    renders one)."""
    path = Path(results_dir) / budget / f"{run.name}.json"
    card = Path(results_dir) / budget / run.name / "README.md"
    return (path.is_file() and json.loads(path.read_text())["settings"] == run_settings(run, budget)
            and (not BUDGETS[budget].cards or card.is_file()))


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
                     "--seed", str(run.seed), "--no-progress", "--resume", *options(settings["evaluate"])],
                    log, env)
        write_json(evaluated, {"settings": settings,
                               **step_minutes(json.loads(evaluation_file.read_text()).get("seconds"), start)})
    evaluation = json.loads(evaluation_file.read_text())
    config = json.loads((model_dir / "config.json").read_text())
    pictures = results_dir / budget / run.name
    if is_inspected(config):
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
                                       evaluation=evaluation["settings"].get("mixed_precision", "no")),
        "settings": settings,
    }
    if settings["train"].get("learning_curve_every"):
        record["curve"] = read_curve(model_dir)
    write_json(results_dir / budget / f"{run.name}.json", record)
    return record


def is_inspected(config: dict) -> bool:
    """Whether `demvae inspect` describes the model (its config.json): a mixture prior's latent space, or a dialog
    model's latent actions (reported for DI-VAE's too, pictured where the response VAE has a mixture prior)."""
    return config.get("model_type") == "demvae_dialog" or config["variant"] == "dem"


def rescore_evaluation(run: Run, budget: str, *, work_dir: Path, results_dir: Path, threads: int,
                       data_dir: str | None) -> bool:
    """A finished run's evaluation scored again from its model for what its record predates, merged into the record
    (and the model's evaluation.json and cards): the homogeneity's chance level (a record keeps the scores, not the
    clusters it needs) or a dialog model's actions in use. The model is checked by its homogeneity, which must be the
    record's. False when there is nothing to do: no record, nothing it lacks, or no model."""
    record_path, model_dir = Path(results_dir) / budget / f"{run.name}.json", work_dir / budget / run.name
    if not record_path.is_file() or not (model_dir / "config.json").is_file():
        return False
    record = json.loads(record_path.read_text())
    evaluation = record["evaluation"]
    dialog = run.table in DIALOG_TABLES  # a dialog model's evaluation has no metric choice: it is scored whole
    lacking = "actions_in_use" not in evaluation if dialog else "homogeneity_chance" not in evaluation
    if "homogeneity" not in evaluation or not lacking:
        return False
    scores = model_dir / "homogeneity.json"
    run_command(["evaluate", str(model_dir), "--dataset", run.dataset, "--output", str(scores), "--seed",
                 str(run.seed), "--no-progress", *options(run_settings(run, budget)["evaluate"]),
                 *([] if dialog else ["--metrics", "homogeneity"])],
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
    Nothing for a dialog table (its models are not scored by rPPL), or while no model of the corpus has finished
    training."""
    if table in DIALOG_TABLES:
        return
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
