"""benchmarks/results.md from the records of `demvae reproduce`: one section per budget, a table per corpus (with
the rPPL ceiling of real sentences where measured), the paper's claim checked per corpus, and the learning curve
of GM-VAE against DGM-VAE + MI drawn from the records, with the step where GM-VAE's components collapse."""

import json
import os
import statistics
from pathlib import Path

from .budgets import BUDGETS, COMPARISONS, TABLES, all_runs, corpus_table, model_name, run_settings
from .evaluate import write_json
from .files import write_text_atomically

# each DailyDialog label's homogeneity, and beside it the homogeneity above its chance level
HOMOGENEITY_COLUMNS = [column for label in ("act", "emotion") for column in (
    (f"{label} homogeneity", f"homogeneity_{label}", 3), (f"{label} above chance", f"homogeneity_adjusted_{label}", 3))]
# (header, how to read it from a record, decimals); lower is better for rPPL, wKL and NLL
COLUMNS = {
    "ptb": [("rPPL", "rppl", 1), ("BLEU", "bleu", 2), ("wKL", "wkl", 3), ("NLL", "nll", 2),
            ("I(x;c)", "mi", 2), ("exp I(x;c) per group", "active_components", 2), ("spread", "component_spread", 2),
            ("L_d", "dispersion", 3)],
    "dailydialog": [("rPPL", "rppl", 1), ("BLEU", "bleu", 2), ("wKL", "wkl", 3), ("NLL", "nll", 2),
                    *HOMOGENEITY_COLUMNS, ("I(x;c)", "mi", 2), ("spread", "component_spread", 2),
                    ("L_d", "dispersion", 3)],
    "attributes": [("act control", "control_act", 3), ("emotion control", "control_emotion", 3),
                   *HOMOGENEITY_COLUMNS, ("rPPL", "rppl", 1), ("BLEU", "bleu", 2), ("NLL", "nll", 2),
                   ("I(x;c)", "mi", 2), ("spread", "component_spread", 2), ("L_d", "dispersion", 3)],
    "smd": [("BLEU", "bleu", 2), ("sacreBLEU", "sacrebleu", 2), ("policy accuracy", "policy_accuracy", 3),
            ("action consistency", "action_consistency", 3), ("actions in use", "actions_in_use", 2),
            ("intent homogeneity", "homogeneity_intent", 3),
            ("intent above chance", "homogeneity_adjusted_intent", 3), ("distinct-1", "distinct_1", 3),
            ("distinct-2", "distinct_2", 3), ("PPL", "ppl", 2), ("entity F1 (assistant)", "entity_f1_assistant", 3)],
}
# (key, header, +1 when higher is better) of each claim, per table
CLAIMS = {
    **dict.fromkeys(("ptb", "dailydialog"), [("rppl", "rPPL", -1), ("bleu", "BLEU", +1), ("mi", "I(x;c)", +1),
                                             ("component_spread", "spread", +1)]),
    "attributes": [("control_act", "act control accuracy", +1), ("control_emotion", "emotion control accuracy", +1),
                   ("mi", "I(x;c)", +1), ("component_spread", "spread", +1)],
    "smd": [("action_consistency", "action consistency", +1), ("homogeneity_intent", "homogeneity with the intent", +1),
            ("bleu", "BLEU", +1)],
}
# Per table, the claims met by a value comparable with the other model's, not only a better one: within this many
# points of it, or within the other model's standard deviation over its seeds where that is larger.
COMPARABLE = {"smd": {"bleu": 1.0}}
# A group whose components tell sentences apart by less than this, I(x; c_g) in nats (exp: 1.01 effective
# components), has collapsed; a model's components have collapsed once most of its groups have.
COLLAPSE_THRESHOLD = 0.01
TABLE_NOTES = {"attributes": (
    "Control: macro accuracy over the labels of a classifier reading back the label of sentences generated with it "
    "fixed (chance: act 0.25, emotion 0.14); DGM-VAE + MI and the unsupervised DCM-VAE generate by the labels that "
    "`demvae label-components` gave their components. Spread: Jensen-Shannon bits per variable between components "
    "for the categorical models, pooled standard deviations between means for DGM-VAE."),
    "smd": (
    "Latent actions: each test response generated from its context through the components the policy picks "
    "(greedy). BLEU: corpus BLEU of the generated against the gold responses (NLTK, smoothing 1; sacreBLEU), 0-100. "
    "Policy accuracy: the policy's argmax equals the gold response's posterior component in every group. Action "
    "consistency: the generated response, read back by the response encoder, has the components it was generated "
    "from. Actions in use: per group, exp of the entropy of the gold responses' components, the effective number of "
    "components the group uses (1: every response in one component, and that group's policy accuracy and action "
    "consistency are 1 whatever the model does), averaged over the groups. Intent homogeneity: the gold "
    "responses' components as clusters against the dialog's intent (navigate, "
    "schedule, weather), beside it the same above chance. Distinct-1/2: distinct unigrams and bigrams over all of "
    "them in the generated responses. PPL: per-token perplexity of the gold responses given their posterior z. "
    "Entity F1: SMD's entities (kvret_entities.json) of the generated against the gold assistant responses. The "
    "claim's \"comparable\" BLEU: at most 1 BLEU point below GM-VAE's mean, or one of its standard deviations over "
    "seeds where that is larger.")}
# a dialog model's numbers, read as they are (`demvae evaluate` on a dialog model)
DIALOG_SCORES = ("sacrebleu", "policy_accuracy", "action_consistency", "actions_in_use", "distinct_1", "distinct_2",
                 "ppl")
RECORD_PATTERN = "*-seed*.json"  # a run's record; the ceiling and curve files beside them are named otherwise


def record_metrics(record: dict) -> dict[str, float]:
    """The numbers the tables show: per-group lists summarised (I(x;c) summed over groups as in the spec, the
    effective number of components and the spread averaged), homogeneity and the homogeneity above chance per
    label."""
    evaluation, values = record["evaluation"], {}
    for key in ("rppl", "bleu", "wkl", "nll", "dispersion", *DIALOG_SCORES):
        if isinstance(evaluation.get(key), (int, float)):
            values[key] = float(evaluation[key])
    if evaluation.get("mi"):
        values["mi"] = sum(evaluation["mi"])
    for key in ("active_components", "component_spread"):
        if evaluation.get(key):
            values[key] = statistics.fmean(evaluation[key])
    for key in ("homogeneity", "homogeneity_adjusted"):
        for label, score in (evaluation.get(key) or {}).items():
            values[f"{key}_{label}"] = score
    for label, score in (evaluation.get("control_accuracy") or {}).items():
        values[f"control_{label}"] = score
    for speaker, score in (evaluation.get("entity_f1") or {}).items():
        values[f"entity_f1_{speaker}"] = score
    values["minutes"] = record["training"]["minutes"] + record["evaluation_minutes"]
    return values


def minutes_cell(values: list[float], records: list[dict]) -> str:
    """Training and evaluation minutes over all starts; "≥" where a run was timed from its last start only."""
    lower_bound = any(record.get("timed_every_start") is False for record in records)
    return "≥ " * lower_bound + summarise(values, 0)


def summarise(values: list[float], decimals: int) -> str:
    """One seed: the value; several: mean ± sample standard deviation."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{statistics.fmean(values):.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def load_records(results_dir: Path, budget: str) -> list[dict]:
    folder = Path(results_dir) / budget
    return [json.loads(path.read_text()) for path in sorted(folder.glob(RECORD_PATTERN))] if folder.is_dir() else []


def ceiling_path(results_dir: Path, budget: str, table: str) -> Path:
    return Path(results_dir) / budget / f"{table}-ceiling.json"


def load_ceiling(results_dir: Path, budget: str, table: str) -> dict | None:
    """The rPPL ceiling of the table's corpus, measured once per corpus."""
    path = ceiling_path(results_dir, budget, corpus_table(table))
    return json.loads(path.read_text()) if path.is_file() else None


def format_table(table: str, records: list[dict], ceiling: dict | None = None) -> list[str]:
    """The table's models, one row each (means over seeds), then the ceiling's row when measured."""
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
        minutes = minutes_cell([m["minutes"] for m in metrics], runs)
        lines.append(f"| {model_name(preset)} | {seeds} | " + " | ".join(cells) + f" | {minutes} |")
    if ceiling:
        values = ceiling["ceiling"]
        cells = [f"{values['rppl']:.1f}" if key == "rppl" else "–" for _, key, _ in columns]
        lines.append(f"| ceiling: {values['rppl_train_samples']:,} real sentences | – | " + " | ".join(cells)
                     + f" | {minutes_cell([ceiling['minutes']], [ceiling])} |")
    if any("homogeneity" in r["evaluation"] and "homogeneity_adjusted" not in r["evaluation"] for r in records):
        lines += ["", "Above chance: – where a record predates the chance level, which needs the model's clusters, "
                  f"not kept in the record; `demvae reproduce --budget {records[0]['budget']} --rescore` scores it "
                  "from the model in the work folder, without retraining."]
    if table in TABLE_NOTES:
        ceilings = {}  # the control classifier is the same for every model of the corpus
        for record in records:
            ceilings.update(record["evaluation"].get("control_ceiling") or {})
        classifier = ", ".join(f"{name} {value:.3f}" for name, value in sorted(ceilings.items()))
        lines += ["", TABLE_NOTES[table] + (f" The classifier's macro accuracy on real test sentences, its ceiling: "
                                            f"{classifier}." if ceilings else "")]
    return lines


def seeds(count: int) -> str:
    return f"{count} seed{'' if count == 1 else 's'}"


def format_claims(records: list[dict]) -> list[str]:
    """Per table, whether the dispersed model beats the plain one on each claimed measure (DGM-VAE + MI against
    GM-VAE; the supervised DCM-VAE against CM-VAE), as means over their seeds."""
    lines = []
    for table, (better_preset, worse_preset) in COMPARISONS.items():
        better, worse = ([record_metrics(r) for r in records if r["preset"] == preset and r["table"] == table]
                         for preset in (better_preset, worse_preset))
        if not better or not worse:
            continue
        lines += [*([""] if lines else []), f"{TABLES[table][0]}: {model_name(better_preset)} ({seeds(len(better))}) "
                  f"against {model_name(worse_preset)} ({seeds(len(worse))}), means:", ""]
        decimals = {key: max(2, places) for _, key, places in COLUMNS[table]}
        for key, header, sign in CLAIMS[table]:
            if not all(key in m for m in better + worse):
                continue
            ours, theirs = [m[key] for m in better], [m[key] for m in worse]
            a, b, places = statistics.fmean(ours), statistics.fmean(theirs), decimals.get(key, 2)
            verdict = claim_verdict(ours, theirs, sign, COMPARABLE.get(table, {}).get(key))
            lines.append(f"- {header}: {a:.{places}f} against {b:.{places}f} ({verdict}; "
                         f"{'lower' if sign < 0 else 'higher'} is better)")
    return lines


def claim_verdict(ours: list[float], theirs: list[float], sign: int, comparable_within: float | None) -> str:
    """Better, or (where the claim allows a comparable value) comparable: short of the other model's mean by at most
    `comparable_within` or its standard deviation over seeds, whichever is larger; else not better."""
    lead = sign * (statistics.fmean(ours) - statistics.fmean(theirs))
    if lead > 0:
        return "better"
    if comparable_within is not None:
        margin = max(comparable_within, statistics.stdev(theirs) if len(theirs) > 1 else 0.0)
        if lead >= -margin:
            return f"comparable: within {margin:.2f}"
    return "not better"


# ----- the learning curve -----


def total_information(point: dict) -> float:
    """I(x; c) summed over groups at a learning-curve point."""
    return sum(point["mutual_information"])


def collapsed_groups(point: dict, threshold: float = COLLAPSE_THRESHOLD) -> int:
    """How many groups of a learning-curve point carry less than `threshold` nats of I(x; c_g)."""
    return sum(value < threshold for value in point["mutual_information"])


def collapse_step(points: list[dict], threshold: float = COLLAPSE_THRESHOLD) -> int | None:
    """The first step at which most groups (more than half) have collapsed; None if none is."""
    return next((point["step"] for point in points
                 if 2 * collapsed_groups(point, threshold) > len(point["mutual_information"])), None)


def collapse_sentence(table: str, curves: dict[str, list[dict]]) -> str:
    """When the GM-VAE of the table collapses on its curve, group by group, against DGM-VAE + MI's curve."""
    better, worse = COMPARISONS[table]
    points, name = curves[worse], model_name(worse)
    groups, step = len(points[0]["mutual_information"]), collapse_step(points)
    counts = ", ".join(f"{collapsed_groups(point)} at {point['step']:,}" for point in points)
    first, last = points[0], points[-1]
    when = (f"most have collapsed by step {step:,}" if step is not None
            else f"most have not collapsed within the curve's {last['step']:,} steps")
    sentence = (f"{name}'s components collapse group by group. Groups (of {groups}) with I(x; c_g) below "
                f"{COLLAPSE_THRESHOLD} nats, by step: {counts}; {when}. Its I(x;c) summed over groups goes from "
                f"{total_information(first):.2f} to {total_information(last):.2f} nats")
    other = {point["step"]: point for point in curves.get(better, [])}
    if last["step"] not in other:
        return sentence + "."
    point = other[last["step"]]
    return (sentence + f"; {model_name(better)} has {total_information(point):.2f} at step {last['step']:,}, "
            f"with {collapsed_groups(point)} of its {len(point['mutual_information'])} groups collapsed.")


def draw_learning_curve(path: Path, curves: dict[str, list[dict]], title: str) -> None:
    """-ELBO; I(x; c) summed over groups with the batch MI term, on a log scale; and the collapsed groups; against
    steps, one line per model, with a dotted line where each model's components have collapsed."""
    import matplotlib  # here: `demvae reproduce --help` reads this module

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (elbo_axis, mi_axis, group_axis) = plt.subplots(1, 3, figsize=(15, 4.4))
    for index, (preset, points) in enumerate(curves.items()):
        color, name = plt.get_cmap("tab10")(index), model_name(preset)
        steps = [point["step"] for point in points]
        elbo_axis.plot(steps, [-point["elbo"] for point in points], "o-", color=color, label=name)
        mi_axis.plot(steps, [total_information(point) for point in points], "o-", color=color,
                     label=f"{name}: I(x;c), validation set")
        mi_axis.plot(steps, [point["mi"] for point in points], "x--", color=color, label=f"{name}: batch MI term")
        group_axis.plot(steps, [collapsed_groups(point) for point in points], "o-", color=color,
                        label=f"{name} (of {len(points[0]['mutual_information'])})")
        if (step := collapse_step(points)) is not None:
            for axis in (elbo_axis, mi_axis, group_axis):
                axis.axvline(step, color=color, linewidth=0.8, linestyle=":")
    mi_axis.set_yscale("symlog", linthresh=1e-2)
    group_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    elbo_axis.set(xlabel="training step", ylabel="-ELBO (nats per sentence)", title="validation -ELBO")
    mi_axis.set(xlabel="training step", ylabel="nats, summed over groups", title="mutual information I(x; c)")
    group_axis.set(xlabel="training step", ylabel="groups", ylim=(0, None),
                   title=f"collapsed groups: I(x; c_g) < {COLLAPSE_THRESHOLD} nats")
    for axis, size in ((elbo_axis, 8), (mi_axis, 7), (group_axis, 8)):
        axis.legend(fontsize=size)
    figure.suptitle(f"{title} (dotted: most groups collapsed)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_learning_curves(results_dir: Path, budget: str, records: list[dict]) -> dict[str, Path]:
    """Per table whose records carry curves: TABLE-learning-curve.json (the points, the collapse step) and .png
    beside the records, rewritten only when the points changed. Returns table -> PNG. A record may carry only the
    curve (`still_training`) of a run whose curve is complete but whose training goes on."""
    pictures = {}
    for table, (title, _) in TABLES.items():
        curved = [record for record in records if record["table"] == table and record.get("curve")]
        curves = {record["preset"]: record["curve"] for record in curved}
        if COMPARISONS[table][1] not in curves:
            continue
        folder = Path(results_dir) / budget
        data = {"table": table, "budget": budget, "every": curved[0]["settings"]["train"]["learning_curve_every"],
                "threshold": COLLAPSE_THRESHOLD,
                "collapse_step": {preset: collapse_step(points) for preset, points in curves.items()},
                "collapsed_groups": {preset: [collapsed_groups(point) for point in points]
                                     for preset, points in curves.items()},
                "collapse": collapse_sentence(table, curves), "curves": curves,
                "still_training": [record["preset"] for record in curved if record.get("still_training")]}
        path, picture = folder / f"{table}-learning-curve.json", folder / f"{table}-learning-curve.png"
        if not path.is_file() or json.loads(path.read_text()) != data or not picture.is_file():
            write_json(path, data)
            draw_learning_curve(picture, curves, f"{title}, budget {budget}: the first steps of training")
        pictures[table] = picture
    return pictures


# ----- the report -----


def write_report(path: Path, results_dir: Path, curves_in_training: dict[str, list[dict]] | None = None) -> None:
    """benchmarks/results.md from every record in the results folder, one section per budget; with
    `curves_in_training` (budget -> curve-only records of runs still training), their complete learning curves."""
    lines = ["# Reproduction of the paper's comparison", "",
             "Written by `demvae reproduce` (`training/reproduce.py`, installed as `demvae.reproduce`) from the "
             f"records in `{display_path(results_dir)}/BUDGET/`; latent-space pictures and component reports beside "
             "them. Rerun a missing or stale model with the same command: finished runs are skipped.", "",
             "Lower is better for rPPL, wKL and NLL (nats per sentence); BLEU is 0-100. I(x;c) is the mutual "
             "information between sentences and components on the test sentences, summed over groups (0 when "
             "every group collapsed); exp I(x;c) is the effective number of components a group tells apart (1 to "
             "K); spread is the mean distance between a group's component means in pooled standard deviations; "
             "L_d is the dispersion term. Homogeneity scores the argmax codes as clusters against DailyDialog's "
             "labels; small clusters look pure by chance, so beside it is the homogeneity above chance: less the "
             "mean homogeneity of the model's own clusters over 20 shuffles of the labels (`demvae evaluate`'s "
             "homogeneity_adjusted). Several seeds: mean ± standard deviation. Minutes are training "
             "plus evaluation over all the starts of a run; ≥ marks a run timed from its last start only (it resumed "
             "work from before runs were timed). Compare models within a budget "
             "only: with a few thousand greedy samples (the `cpu` budget) rPPL is dominated by the test words that no "
             "sample contains, so its absolute values are far above the paper's. The ceiling row, where measured, is "
             "the same rPPL language model trained on real training sentences instead of samples: what perfect "
             "samples would reach. The RNNLM has no latent, so its "
             "samples are drawn word by word (greedy decoding would repeat one sentence): its rPPL and wKL measure "
             "sampled text against the other models' greedy text and are not comparable with theirs."]
    for budget, spec in BUDGETS.items():
        records = load_records(results_dir, budget)
        curved = records + (curves_in_training or {}).get(budget, [])
        if not curved:
            continue
        machines = sorted({record["machine"] for record in curved})
        lines += ["", f"## Budget `{budget}`", "", f"{spec.description[0].upper()}{spec.description[1:]}.",
                  f"Measured on: {'; '.join(machines)}."]
        if spec.deviations:
            lines += ["", "What differs from the paper:", "", *(f"- {item}" for item in spec.deviations)]
        for table, (title, _) in TABLES.items():
            table_records = [record for record in records if record["table"] == table]
            runs = all_runs((table,), budget=budget)
            if not runs and not table_records:  # a table this budget does not run
                continue
            lines += ["", f"### {title}"]
            if table_records:
                lines += ["", *format_table(table, table_records, load_ceiling(results_dir, budget, table))]
            missing = [run.name for run in runs if run.name not in {r["run"] for r in table_records}]
            if missing:
                lines += ["", f"Not run yet: {', '.join(missing)}."]
            stale = [record["run"] for record in table_records for run in runs
                     if record["run"] == run.name and record["settings"] != run_settings(run, budget)]
            if stale:
                lines += ["", f"Trained with earlier settings of this budget (see what differs from the paper; the "
                              f"same command trains them again): {', '.join(stale)}."]
        if claims := format_claims(records):
            lines += ["", "### Dispersion against mode collapse", "", *claims]
        for table, picture in write_learning_curves(results_dir, budget, curved).items():
            curve = json.loads(picture.with_suffix(".json").read_text())
            link = Path(os.path.relpath(picture, Path(path).parent)).as_posix()
            unrecorded = " and ".join(model_name(preset) for preset in curve["still_training"])
            lines += ["", f"### Learning curve, {TABLES[table][0]}", "",
                      f"![validation -ELBO and I(x;c) against steps]({link})", "",
                      f"Validation every {curve['every']:,} steps (points that only log; `{picture.stem}.json` "
                      f"beside the picture)" + (f"; {unrecorded} still training or evaluating, the curve complete"
                                                if unrecorded else "") + f". {curve['collapse']}"]
    write_text_atomically(path, "\n".join(lines) + "\n")


def display_path(path: Path) -> str:
    """A path as the reader of the report sees it: relative to the current folder when inside it."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


__all__ = ["collapse_sentence", "collapse_step", "collapsed_groups", "format_claims", "format_table", "load_records",
           "record_metrics", "write_learning_curves", "write_report"]
