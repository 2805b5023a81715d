"""`demvae reproduce`: which runs it makes, how it tabulates them, and that it skips what is done."""

import dataclasses
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import WORDS, save_tiny_model, write_dialog_corpus
from demvae import budgets, reproduce, reproduction_run, subcommands
from demvae import reproduction_report as report
from demvae.arguments import TrainingArguments
from demvae.checkpoints import STATE_FILE, list_checkpoints
from demvae.cli import main
from demvae.precision import resolve_mixed_precision
from demvae.reproduction_run import PRECISION_NAMES
from reproduce_helpers import record, recording_in_process


def test_runs_cover_every_table_with_three_seeds_for_the_compared_models():
    runs = budgets.all_runs()
    names = [run.name for run in runs]
    # the unsupervised DCM-VAE four ways, the supervised pair with either estimator; SMD's three dialog models
    assert len(names) == len(set(names)) == (9 + 2 * 2) + 5 + (9 + 5 * 2) + 3 * 3
    for preset in ("ptb-gm-vae", "ptb-dgm-vae-mi", "dailydialog-dcm-vae-sup", "dailydialog-cm-vae-sup",
                   "dailydialog-dcm-vae-sup-relaxed", "dailydialog-cm-vae-sup-relaxed", "dailydialog-dcm-vae-mi-bonus",
                   *budgets.TABLES["smd"][1]):
        assert [run.seed for run in runs if run.preset == preset] == [0, 1, 2]
    assert [run.table for run in runs] == (["ptb"] * 13 + ["dailydialog"] * 5 + ["attributes"] * 19
                                           + ["smd"] * 9)  # PTB first
    assert [run.seed for run in runs[:9]] == [0] * 9  # the whole table once before the extra seeds
    # DGM-VAE + MI is in two tables: its DailyDialog run keeps its name, the labelled one is named by its table
    assert [run.name for run in runs if run.preset == "dailydialog-dgm-vae-mi"] == [
        "dailydialog-dgm-vae-mi-seed0", "attributes-dailydialog-dgm-vae-mi-seed0"]
    for run in runs:  # every run names a preset that exists and trains on the table's corpus
        preset = json.loads(budgets.preset_path(run.preset).read_text())
        assert preset["dataset"] == run.dataset


def test_unknown_run_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown run.*ptb-gm-vae-mi"):
        budgets.all_runs(("ptb",), ["ptb-gm-vea"])


def test_table_rows_are_means_and_standard_deviations_over_seeds(tmp_path):
    rppl = [120.0, 130.0, 146.0]
    folder = tmp_path / "cpu"
    folder.mkdir()
    for seed, value in enumerate(rppl):  # two groups: I(x;c) summed, spread averaged
        rec = record("ptb-gm-vae", seed, rppl=value, bleu=10.0 + seed, mi=[0.5, 0.25 * seed],
                     component_spread=[1.0, 3.0])
        (folder / f"{rec['run']}.json").write_text(json.dumps(rec))
    lines = report.format_table("ptb", report.load_records(tmp_path, "cpu"))
    assert len(lines) == 3
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    row = dict(zip(header, cells))
    assert row["model"] == "GM-VAE" and row["seeds"] == "0, 1, 2"
    assert row["rPPL"] == f"{statistics.fmean(rppl):.1f} ± {statistics.stdev(rppl):.1f}" == "132.0 ± 13.1"
    assert row["BLEU"] == "11.00 ± 1.00"
    assert row["I(x;c)"] == "0.75 ± 0.25"  # 0.5, 0.75, 1.0
    assert row["spread"] == "2.00 ± 0.00"
    assert row["wKL"] == "–"  # not measured
    assert row["minutes"] == "4 ± 0"


def test_minutes_of_a_run_timed_from_its_last_start_only_are_a_lower_bound(tmp_path):
    """A run that resumed work from before runs were timed knows only its last start's minutes: "≥" says so."""
    timed, untimed = ({**record("ptb-gm-vae", seed), "timed_every_start": flag} for seed, flag in ((0, True),
                                                                                                 (1, False)))
    assert report.minutes_cell([4.0], [timed]) == "4" and report.minutes_cell([4.0], [record("ptb-gm-vae", 0)]) == "4"
    assert report.minutes_cell([4.0, 6.0], [timed, untimed]) == "≥ 5 ± 1"
    row = report.format_table("ptb", [untimed])[2]
    assert row.endswith("| ≥ 4 |")


def test_claims_compare_means_in_the_right_direction(tmp_path):
    records = [record("ptb-gm-vae", s, rppl=100.0, bleu=5.0, mi=[0.0], component_spread=[0.5]) for s in (0, 1)]
    records += [record("ptb-dgm-vae-mi", 0, rppl=90.0, bleu=4.0, mi=[2.0], component_spread=[0.4])]
    claims = "\n".join(report.format_claims(records))
    assert "DGM-VAE + MI (1 seed) against GM-VAE (2 seeds)" in claims
    assert "rPPL: 90.00 against 100.00 (better" in claims  # lower is better
    assert "BLEU: 4.00 against 5.00 (not better" in claims
    assert "I(x;c): 2.00 against 0.00 (better" in claims
    assert "spread: 0.40 against 0.50 (not better" in claims
    assert report.format_claims(records[:2]) == []  # nothing to compare


def test_the_control_table_reads_control_accuracy_and_claims_it_for_the_dispersed_model(tmp_path):
    control = {"control_ceiling": {"act": 0.7, "emotion": 0.5}}
    records = [record("dailydialog-dcm-vae-sup-relaxed", s, control_accuracy={"act": 0.6 + 0.1 * s, "emotion": 0.3},
                      mi=[1.0], **control) for s in (0, 1)]
    records += [record("dailydialog-cm-vae-sup-relaxed", 0, control_accuracy={"act": 0.5, "emotion": 0.4}, mi=[0.1],
                       **control)]
    records += [record("dailydialog-dgm-vae-mi", 0, "attributes", control_accuracy={"act": 0.3}, **control),
                record("dailydialog-dgm-vae-mi", 0, rppl=50.0)]  # the same preset in the DailyDialog table
    table = report.format_table("attributes", [r for r in records if r["table"] == "attributes"])
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = {cells[0]: dict(zip(header, cells)) for line in table[2:5]
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]}
    supervised = ", relaxed estimator, supervised: act, emotion"
    assert rows["DCM-VAE" + supervised]["act control"] == "0.650 ± 0.071"
    assert rows["CM-VAE" + supervised]["emotion control"] == "0.400"
    assert rows["DGM-VAE + MI"]["act control"] == "0.300" and rows["DGM-VAE + MI"]["rPPL"] == "–"
    assert "its ceiling: act 0.700, emotion 0.500." in table[-1]
    assert not any("Above chance" in line for line in table)  # no homogeneity here: nothing predates its chance
    claims = "\n".join(report.format_claims(records))
    assert f"DCM-VAE{supervised} (2 seeds) against CM-VAE{supervised} (1 seed)" in claims
    assert "act control accuracy: 0.650 against 0.500 (better" in claims
    assert "emotion control accuracy: 0.300 against 0.400 (not better" in claims


def test_report_lists_what_is_missing(tmp_path):
    old = record("dailydialog-dgm-vae-mi", 0, rppl=50.0, homogeneity={"act": 0.25, "emotion": 0.125})
    new = record("dailydialog-gm-vae", 0, homogeneity={"act": 0.3, "emotion": 0.2},
                 homogeneity_chance={"act": 0.2, "emotion": 0.15}, homogeneity_adjusted={"act": 0.1, "emotion": 0.05})
    new["settings"] = budgets.run_settings(budgets.Run("dailydialog", "dailydialog-gm-vae", 0), "cpu")  # current
    (tmp_path / "cpu").mkdir()
    for rec in (old, new):
        (tmp_path / "cpu" / f"{rec['run']}.json").write_text(json.dumps(rec))
    report.write_report(tmp_path / "results.md", tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "## Budget `cpu`" in text and "test CPU" in text
    assert ("| model | seeds | rPPL | BLEU | wKL | NLL | act homogeneity | act above chance | emotion homogeneity | "
            "emotion above chance |") in text
    assert "| GM-VAE | 0 | – | – | – | – | 0.300 | 0.100 | 0.200 | 0.050 |" in text
    assert "| DGM-VAE + MI | 0 | 50.0 | – | – | – | 0.250 | – | 0.125 | – |" in text  # it predates the chance level
    assert "Above chance: – where a record predates the chance level" in text
    assert "`demvae reproduce --budget cpu --rescore`" in text
    assert "Not run yet: dailydialog-di-vae-seed0" in text
    assert "### Penn Treebank\n\nNot run yet: ptb-vae-seed0" in text  # no table without a record
    # a record of the budget's earlier settings is shown, and named as such
    assert "Trained with earlier settings of this budget (see what differs from the paper; the same command trains " \
           "them again): dailydialog-dgm-vae-mi-seed0." in text


@pytest.mark.slow
def test_smoke_budget_trains_evaluates_and_skips_what_is_done(data_dir, tmp_path, capsys):
    arguments = ["reproduce", "--budget", "smoke", "--tables", "ptb", "--runs", "ptb-gm-vae-mi", "ptb-rnnlm",
                 "--work-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
                 "--report", str(tmp_path / "results.md"), "--data-dir", str(data_dir)]
    assert main(arguments + ["--jobs", "2"]) == 0
    results = tmp_path / "results" / "smoke"
    names = sorted(path.name for path in results.glob("*.json"))
    assert names == ["ptb-gm-vae-mi-seed0.json", "ptb-rnnlm-seed0.json"]
    mixture = json.loads((results / "ptb-gm-vae-mi-seed0.json").read_text())
    assert mixture["settings"]["train"] == budgets.BUDGETS["smoke"].train
    assert {"nll", "rppl", "bleu", "wkl", "mi", "component_spread", "dispersion"} <= set(mixture["evaluation"])
    assert (results / "ptb-gm-vae-mi-seed0" / "latent_space.png").stat().st_size > 0
    assert not (results / "ptb-rnnlm-seed0").exists()  # no latent space to picture
    text = (tmp_path / "results.md").read_text()
    assert "| GM-VAE + MI | 0 |" in text and "| RNNLM | 0 |" in text

    before = {path: path.stat().st_mtime_ns for path in results.glob("*.json")}
    capsys.readouterr()
    assert main(arguments) == 0  # everything done: nothing retrained or rewritten
    assert "2 done, 0 to do" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in results.glob("*.json")} == before

    stale = json.loads((results / "ptb-rnnlm-seed0.json").read_text())
    stale["settings"]["evaluate"] = {"nll_samples": 1}  # a budget whose definition changed since
    (results / "ptb-rnnlm-seed0.json").write_text(json.dumps(stale))
    assert not reproduce.is_done(budgets.Run("ptb", "ptb-rnnlm", 0), "smoke", tmp_path / "results")


# ----- the full budget -----


def test_the_full_budget_runs_the_models_of_the_claims_in_order_with_one_thread():
    runs = budgets.all_runs(budget="full")
    assert [run.name for run in runs] == ["ptb-gm-vae-seed0", "ptb-dgm-vae-mi-seed0", "dailydialog-gm-vae-seed0",
                                          "dailydialog-dgm-vae-mi-seed0", "dailydialog-dcm-vae-sup-relaxed-seed0",
                                          "dailydialog-cm-vae-sup-relaxed-seed0", "smd-di-vae-dialog-seed0",
                                          "smd-gm-vae-dialog-seed0", "smd-dgm-vae-mi-dialog-seed0"]
    assert [run.name for run in budgets.all_runs(("dailydialog",), budget="full")] == [r.name for r in runs[2:4]]
    assert [run.table for run in runs[4:6]] == ["attributes"] * 2  # the generation-by-label table's comparison
    with pytest.raises(ValueError, match="unknown run.*in budget 'full'"):
        budgets.all_runs(budget="full", presets=["ptb-vae"])
    full = budgets.BUDGETS["full"]
    assert full.threads == 1 and full.ceiling and full.cards and full.work_dir.startswith("~")
    ptb, dialog = (budgets.run_settings(run, "full")["train"] for run in (runs[0], runs[2]))
    assert ptb["max_steps"] == 20_000 and ptb["num_posterior_samples"] == dialog["num_posterior_samples"] == 1
    # DailyDialog as the reference DailyDialog command: no learning-rate decay, selection on the objective, at most
    # 50 validations of 2,000 steps, early stopping after 10 without improvement (the default)
    assert dialog["max_steps"] == 100_000 and dialog["lr_decay"] == 1.0 and "lr_decay" not in ptb
    preset = budgets.run_settings(runs[2], "full")["preset_settings"]
    assert preset["selection_metric"] == "loss" and preset["eval_every"] == 2000
    assert "early_stopping_patience" not in {**preset, **dialog} and TrainingArguments().early_stopping_patience == 10
    supervised = [budgets.run_settings(run, "full") for run in runs[4:6]]
    assert all(run["train"] == dialog for run in supervised)  # trained as the reference DailyDialog command
    assert {run["preset_settings"]["selection_metric"] for run in supervised} == {"elbo"}  # the budget selects on loss
    assert ptb["learning_curve_every"] == 500 and ptb["learning_curve_until"] == 3_500
    assert "learning_curve_every" not in dialog  # the curve is drawn for Penn Treebank only
    assert full.evaluate["nll_samples"] == 500 and "max_sentences" not in full.evaluate  # the whole test set
    for run in runs[6:]:  # SMD as the reference SMD run, stage 2 from the preset's step; every dialog metric
        settings = budgets.run_settings(run, "full")
        assert settings["train"]["max_steps"] == 34_400 and "freeze_step" not in settings["train"]
        assert settings["evaluate"] == {} and settings["preset_settings"]["freeze_step"] in (6_000, 7_000)


def curve_points(groups_per_point, step=500) -> list[dict]:
    """A learning curve with the given I(x; c_g) per group at each point."""
    return [{"step": step * (i + 1), "elbo": -100.0 + i, "mi": sum(groups), "mutual_information": list(groups)}
            for i, groups in enumerate(groups_per_point)]


def test_the_collapse_is_read_from_the_curve_group_by_group():
    dispersed = curve_points([[1.0, 1.0, 1.0, 1.0]] * 3 + [[1.0, 1.0, 1.0, 0.004]])
    # one group keeps a lot of information, so the sum over groups stays large while most groups collapse
    collapsing = curve_points([[1.0, 0.5, 0.5, 0.5], [1.0, 0.005, 0.5, 0.5], [1.0, 0.005, 0.009, 0.5],
                               [1.0, 0.001, 0.001, 0.001]])
    assert [report.collapsed_groups(point) for point in collapsing] == [0, 1, 2, 3]
    assert report.collapse_step(collapsing) == 2000  # 3 of 4; 2 of 4 at step 1,500 is not most
    curves = {"ptb-gm-vae": collapsing, "ptb-dgm-vae-mi": dispersed}
    assert report.collapse_sentence("ptb", curves) == (
        "GM-VAE's components collapse group by group. Groups (of 4) with I(x; c_g) below 0.01 nats, by step: 0 at "
        "500, 1 at 1,000, 2 at 1,500, 3 at 2,000; most have collapsed by step 2,000. Its I(x;c) summed over groups "
        "goes from 2.50 to 1.00 nats; DGM-VAE + MI has 3.00 at step 2,000, with 1 of its 4 groups collapsed.")
    kept = curve_points([[1.0, 0.5], [0.005, 0.5]])  # one of two is not most
    assert report.collapse_step(kept) is None
    assert "most have not collapsed within the curve's 1,000 steps" in report.collapse_sentence(
        "ptb", {"ptb-gm-vae": kept})


def test_a_complete_curve_of_a_run_still_training_is_drawn_before_its_record(tmp_path, capsys):
    """`--report-only` (and every report of a running set) draws the curves that reached `learning_curve_until`
    in the work folder, hours before the records; a curve not complete yet, or logged with other settings, waits."""
    work = tmp_path / "work"

    def in_training(preset: str, points: list[dict], **changed) -> None:
        run = budgets.Run(table="ptb", preset=preset, seed=0)
        settings = budgets.run_settings(run, "full")
        folder = work / "full" / run.name
        folder.mkdir(parents=True)
        (folder / "preset.json").write_text(json.dumps({**settings["preset_settings"], **settings["train"],
                                                        **changed}))
        (folder / "learning_curve.jsonl").write_text("".join(json.dumps(point) + "\n" for point in points))

    collapsing = curve_points([[1.0, 0.5, 0.5]] * 4 + [[1.0, 0.001, 0.001]] * 3)  # steps 500 to 3,500
    in_training("ptb-gm-vae", collapsing)
    in_training("ptb-dgm-vae-mi", curve_points([[1.0, 1.0, 1.0]] * 6))  # at step 3,000: not complete
    results, report_path = tmp_path / "results", tmp_path / "results.md"
    arguments = ["reproduce", "--budget", "full", "--report-only", "--work-dir", str(work), "--results-dir",
                 str(results), "--report", str(report_path)]
    assert main(arguments) == 0
    curve = json.loads((results / "full" / "ptb-learning-curve.json").read_text())
    assert curve["curves"] == {"ptb-gm-vae": collapsing} and curve["still_training"] == ["ptb-gm-vae"]
    assert curve["collapse_step"] == {"ptb-gm-vae": 2500}
    text = report_path.read_text()
    assert "## Budget `full`" in text and "GM-VAE still training or evaluating, the curve complete" in text
    assert "Not run yet: ptb-gm-vae-seed0, ptb-dgm-vae-mi-seed0" in text and curve["collapse"] in text
    assert "### DailyDialog\n" in text and "### DailyDialog: generation by label" in text
    assert "Not run yet: dailydialog-dcm-vae-sup-relaxed-seed0, dailydialog-cm-vae-sup-relaxed-seed0" in text

    with (work / "full" / "ptb-dgm-vae-mi-seed0" / "learning_curve.jsonl").open("a") as handle:
        handle.write(json.dumps(curve_points([[1.0, 1.0, 1.0]] * 7)[-1]) + "\n")
    assert main(arguments) == 0
    curve = json.loads((results / "full" / "ptb-learning-curve.json").read_text())
    assert set(curve["curves"]) == {"ptb-gm-vae", "ptb-dgm-vae-mi"}
    assert "GM-VAE and DGM-VAE + MI still training or evaluating" in report_path.read_text()

    stale = tmp_path / "stale"
    work = stale / "work"
    in_training("ptb-gm-vae", collapsing, learning_curve_every=250)  # the budget's settings changed since
    assert main([*arguments[:5], str(work), "--results-dir", str(stale), "--report", str(stale / "r.md")]) == 0
    assert not (stale / "full").exists() and "## Budget `full`" not in (stale / "r.md").read_text()
    capsys.readouterr()


def write_ptb_corpus(folder, sentences=(150, 40, 40), seed=0):
    """A Penn Treebank-shaped folder (ptb.train/valid/test.txt) of random short sentences."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True)
    for split, count in zip(("train", "valid", "test"), sentences):
        lines = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (int(torch.randint(3, 9, (1,),
                 generator=generator)),), generator=generator)) for _ in range(count)]
        (folder / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_the_full_budget_at_toy_size_writes_records_curve_ceilings_and_cards_and_skips_what_is_done(
        tmp_path, monkeypatch, capsys):
    """The full budget's pipeline (its four runs, one thread, the work folder from $DEMVAE_WORK_DIR, learning curve,
    ceilings, cards) at the smoke budget's sizes on toy corpora, the subcommands run in this process."""
    smoke = budgets.BUDGETS["smoke"]
    monkeypatch.setitem(budgets.BUDGETS, "full", dataclasses.replace(
        budgets.BUDGETS["full"], train={**smoke.train, "checkpoint_every": 5},
        table_train={"ptb": {"learning_curve_every": 5, "learning_curve_until": 20}},
        evaluate={**smoke.evaluate, "rppl_samples": 60}))
    data = tmp_path / "data"
    write_ptb_corpus(data / "ptb")
    write_dialog_corpus(data / "daily_dialog", num_dialogues=15)
    environments, commands = [], []

    monkeypatch.setattr(reproduction_run, "run_command", recording_in_process(commands, environments))
    monkeypatch.setenv("DEMVAE_WORK_DIR", str(tmp_path / "work"))
    results, report_path = tmp_path / "results", tmp_path / "results.md"
    sentence_tables = ("ptb", "dailydialog", "attributes")  # SMD's: test_the_dialog_table_at_toy_size...
    arguments = ["reproduce", "--budget", "full", "--tables", *sentence_tables, "--jobs", "1", "--results-dir",
                 str(results), "--report", str(report_path), "--data-dir", str(data)]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    order = [out.index(f"{name}: training") for name in ("ptb-gm-vae-seed0", "ptb-dgm-vae-mi-seed0",
                                                          "dailydialog-gm-vae-seed0", "dailydialog-dgm-vae-mi-seed0",
                                                          "dailydialog-dcm-vae-sup-relaxed-seed0",
                                                          "dailydialog-cm-vae-sup-relaxed-seed0")]
    assert order == sorted(order)
    assert {env["OMP_NUM_THREADS"] for env in environments} == {"1"}
    assert (tmp_path / "work" / "full" / "ptb-gm-vae-seed0" / "checkpoints").is_dir()

    full = results / "full"
    names = sorted(path.name for path in full.glob("*.json"))
    assert names == ["dailydialog-ceiling.json", "dailydialog-cm-vae-sup-relaxed-seed0.json",  # a ceiling per corpus
                     "dailydialog-dcm-vae-sup-relaxed-seed0.json", "dailydialog-dgm-vae-mi-seed0.json",
                     "dailydialog-gm-vae-seed0.json", "ptb-ceiling.json", "ptb-dgm-vae-mi-seed0.json",
                     "ptb-gm-vae-seed0.json", "ptb-learning-curve.json"]
    gm = json.loads((full / "ptb-gm-vae-seed0.json").read_text())
    newest = list_checkpoints(tmp_path / "work" / "full" / "ptb-gm-vae-seed0" / "checkpoints")[-1]
    assert gm["timed_every_start"] and gm["evaluation_minutes"] == gm["evaluation"]["seconds"] / 60 > 0
    assert gm["training"]["minutes"] == json.loads((newest / STATE_FILE).read_text())["seconds"] / 60 > 0
    ran = PRECISION_NAMES[resolve_mixed_precision("auto", "cpu")]  # training and evaluation, auto on this CPU
    assert [point["step"] for point in gm["curve"]] == [5, 10, 15, 20]
    assert gm["machine"].endswith(f"1 thread(s), {ran}")
    assert json.loads((full / "ptb-ceiling.json").read_text())["machine"].endswith(f"1 thread(s), {ran}")
    assert "curve" not in json.loads((full / "dailydialog-gm-vae-seed0.json").read_text())
    assert {"nll", "rppl", "bleu", "wkl", "mi", "component_spread"} <= set(gm["evaluation"])
    dialog = json.loads((full / "dailydialog-dgm-vae-mi-seed0.json").read_text())
    assert set(dialog["evaluation"]["homogeneity"]) == {"act", "emotion"}
    ceiling = json.loads((full / "ptb-ceiling.json").read_text())
    assert ceiling["timed_every_start"] and ceiling["minutes"] > 0
    assert ceiling["vocabulary_of"] == "ptb-gm-vae-seed0" and ceiling["ceiling"]["rppl_train_samples"] == 60
    curve = json.loads((full / "ptb-learning-curve.json").read_text())
    assert curve["curves"]["ptb-gm-vae"] == gm["curve"] and set(curve["curves"]) == {"ptb-gm-vae", "ptb-dgm-vae-mi"}
    assert (full / "ptb-learning-curve.png").stat().st_size > 0
    for run in budgets.all_runs(sentence_tables, budget="full"):
        card = (full / run.name / "README.md").read_text()
        assert "model-index" in card and "latent_space.png" in card and (full / run.name / "latent_space.png").is_file()
        assert (full / run.name / "components.md").is_file()
    text = report_path.read_text()
    assert "## Budget `full`" in text and "What differs from the paper:" in text
    assert text.count("Not run yet") == 1  # the dialog table only, not trained here
    assert "Not run yet: smd-di-vae-dialog-seed0, smd-gm-vae-dialog-seed0, smd-dgm-vae-mi-dialog-seed0." in text
    assert f"| ceiling: 60 real sentences | – | {ceiling['ceiling']['rppl']:.1f} | – |" in text
    assert "![validation -ELBO and I(x;c) against steps](results/full/ptb-learning-curve.png)" in text
    assert curve["collapse"] in text and "DailyDialog: DGM-VAE + MI (1 seed) against GM-VAE (1 seed)" in text

    written = {path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file()}
    assert main(arguments) == 0  # everything done: nothing retrained, re-evaluated or rewritten
    assert "6 run(s) in budget 'full': 6 done, 0 to do" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file()} == written

    # stopped during the evaluation of a trained model: the next start evaluates it again, and trains nothing
    before = json.loads((full / "ptb-dgm-vae-mi-seed0.json").read_text())
    (full / "ptb-dgm-vae-mi-seed0.json").unlink()
    (tmp_path / "work" / "full" / "ptb-dgm-vae-mi-seed0" / "reproduce_evaluation.json").unlink()
    commands.clear()
    assert main(arguments) == 0
    assert "6 run(s) in budget 'full': 5 done, 1 to do" in capsys.readouterr().out
    assert commands == ["evaluate", "inspect"]
    again = json.loads((full / "ptb-dgm-vae-mi-seed0.json").read_text())["evaluation"]
    assert again.pop("seconds") > 0 and before["evaluation"].pop("seconds") > 0  # each evaluation's own time
    assert again == before["evaluation"]


SAVES_ON_CTRL_C = """
import signal, sys, time
from pathlib import Path
def save(signum, frame):
    time.sleep(0.2)  # the step it is in, then the checkpoint
    Path(sys.argv[1]).write_text("saved")
    sys.exit(0)
signal.signal(signal.SIGINT, save)
Path(sys.argv[1] + ".ready").write_text("")
time.sleep(60)
"""


def start_child(tmp_path, name: str, *, ignores_ctrl_c: bool = False) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / name
    handler = "signal.SIG_IGN" if ignores_ctrl_c else "save"
    script = SAVES_ON_CTRL_C.replace("(signal.SIGINT, save)", f"(signal.SIGINT, {handler})")
    child = subprocess.Popen([sys.executable, "-c", script, str(marker)])
    while not Path(f"{marker}.ready").exists() and child.poll() is None:
        time.sleep(0.02)
    return child, marker


def test_a_signal_lets_the_running_subcommands_save_then_stops_them_and_the_command(tmp_path, monkeypatch):
    """kill: each subcommand gets one Ctrl-C and saves where it is (a training step and its checkpoint), no next
    run starts; one that does not stop within the grace time, or at a second signal, is terminated."""
    saving, marker = start_child(tmp_path, "saving")
    stubborn, _ = start_child(tmp_path, "stubborn", ignores_ctrl_c=True)
    monkeypatch.setattr(subcommands, "RUNNING", {saving, stubborn})
    monkeypatch.setattr(subcommands, "STOPPING", False)
    monkeypatch.setattr(subcommands, "STOP_GRACE_SECONDS", 2)
    exits = []
    monkeypatch.setattr(subcommands.os, "_exit", exits.append)
    subcommands.stop(signal.SIGTERM, None)
    assert saving.poll() == 0 and marker.read_text() == "saved"  # it stopped on its own, after saving
    assert stubborn.poll() == -signal.SIGTERM and exits == [128 + signal.SIGTERM]

    again, marker = start_child(tmp_path, "again")  # a second signal while stopping: at once, nothing saved
    monkeypatch.setattr(subcommands, "RUNNING", {again})
    subcommands.stop(signal.SIGTERM, None)
    assert again.poll() == -signal.SIGTERM and not marker.exists() and exits[-1] == 128 + signal.SIGTERM


class EndedBySignal:
    """A subcommand that a kill of the whole process group ends while the command's own handler runs."""
    returncode = -signal.SIGTERM

    def wait(self):
        subcommands.STOPPING = True  # what the command's handler sets, in its thread, at the same signal
        return self.returncode


def test_a_group_kill_starts_no_next_run_and_reports_no_failure(tmp_path, monkeypatch, capsys):
    """`kill -- -PGID` reaches the subcommands and the command at once: the worker whose subcommand the signal ended
    must not start the next run (once, two such trainings went on, orphaned, after the command had exited)."""
    monkeypatch.setattr(subcommands, "STOPPING", False)
    started = []
    monkeypatch.setattr(subcommands.subprocess, "Popen",
                        lambda command, **_: started.append(command) or EndedBySignal())

    def train_and_evaluate(run, budget, *, work_dir, **_):
        (work_dir / run.name).mkdir(parents=True, exist_ok=True)
        subcommands.run_command(["train", run.name], work_dir / run.name / "reproduce.log", {})

    monkeypatch.setattr(reproduce, "train_and_evaluate", train_and_evaluate)
    assert main(["reproduce", "--budget", "full", "--jobs", "1", "--work-dir", str(tmp_path / "work"),
                 "--results-dir", str(tmp_path / "results"), "--report", str(tmp_path / "results.md")]) == 0
    assert [command[-1] for command in started] == ["ptb-gm-vae-seed0"]  # the first run only, not the three others
    assert "FAILED" not in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="`demvae train` not started: the command is stopping"):
        subcommands.run_command(["train", "again"], tmp_path / "log", {})
    assert len(started) == 1


def test_ctrl_c_is_not_sent_again_to_subcommands_that_the_terminal_reached(tmp_path, monkeypatch):
    """A Ctrl-C reaches the whole foreground process group: a second one would stop the subcommands mid-step."""
    child, marker = start_child(tmp_path, "reached")
    monkeypatch.setattr(subcommands, "RUNNING", {child})
    monkeypatch.setattr(subcommands, "STOPPING", False)
    monkeypatch.setattr(subcommands, "STOP_GRACE_SECONDS", 1)
    monkeypatch.setattr(subcommands.os, "_exit", lambda code: None)
    child.send_signal(signal.SIGINT)  # the terminal's
    subcommands.stop(signal.SIGINT, None)
    assert child.poll() == 0 and marker.read_text() == "saved"  # saved once, not interrupted by a second one


def test_the_control_table_at_toy_size_labels_unsupervised_models_and_measures_control(tmp_path, monkeypatch):
    """The attributes table's pipeline on a toy DailyDialog at the smoke budget's sizes, in this process: a supervised
    DCM-VAE trains on act and emotion, DGM-VAE + MI gets its components labelled, both report control accuracy."""
    write_dialog_corpus(tmp_path / "data" / "daily_dialog", num_dialogues=15)
    commands = []

    monkeypatch.setattr(reproduction_run, "run_command", recording_in_process(commands, []))
    monkeypatch.setitem(budgets.BUDGETS, "smoke", dataclasses.replace(
        budgets.BUDGETS["smoke"], evaluate={**budgets.BUDGETS["smoke"].evaluate, "rppl_samples": 60,
                                            "control_samples": 8}))
    monkeypatch.setenv("DEMVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(budgets, "SEEDED_RUNS", {})
    results = tmp_path / "results"
    assert main(["reproduce", "--budget", "smoke", "--tables", "attributes", "--runs", "dailydialog-dcm-vae-sup",
                 "dailydialog-dgm-vae-mi", "--work-dir", str(tmp_path / "work"), "--results-dir", str(results),
                 "--report", str(tmp_path / "results.md"), "--data-dir", str(tmp_path / "data")]) == 0
    assert commands.count("label-components") == 1  # the unsupervised model only
    supervised = json.loads((results / "smoke" / "dailydialog-dcm-vae-sup-seed0.json").read_text())["evaluation"]
    labelled = json.loads((results / "smoke" / "attributes-dailydialog-dgm-vae-mi-seed0.json").read_text())
    for evaluation in (supervised, labelled["evaluation"]):
        assert set(evaluation["control_accuracy"]) == {"act", "emotion"}
        assert all(0 <= value <= 1 for value in evaluation["control_accuracy"].values())
    config = json.loads((tmp_path / "work" / "smoke" / "attributes-dailydialog-dgm-vae-mi-seed0" / "config.json")
                        .read_text())
    assert {name: spec["supervised"] for name, spec in config["attributes"].items()} == {"act": False,
                                                                                         "emotion": False}
    text = (tmp_path / "results.md").read_text()
    assert "### DailyDialog: generation by label" in text and "| DCM-VAE, supervised: act, emotion | 0 |" in text


def test_rescore_adds_the_chance_level_to_records_that_predate_it_from_their_models(tmp_path, monkeypatch, capsys):
    """`--rescore` trains nothing: each record with homogeneity but no chance level whose model is in the work folder
    gets the model's `demvae evaluate --metrics homogeneity` (the run's seed, the budget's sentences) merged in; a
    record whose model is gone stays as it is, and one whose model scores another homogeneity is refused."""
    write_dialog_corpus(tmp_path / "data" / "daily_dialog", num_dialogues=15)
    work, results = tmp_path / "work" / "cpu", tmp_path / "results" / "cpu"
    runs = {preset: budgets.Run("dailydialog", preset, 0) for preset in ("dailydialog-dgm-vae-mi", "dailydialog-gm-vae",
                                                                         "dailydialog-dgm-vae")}
    for preset in ("dailydialog-dgm-vae-mi", "dailydialog-dgm-vae"):  # dailydialog-gm-vae's model is gone
        save_tiny_model(work / runs[preset].name, tmp_path / "data" / "daily_dialog")
    fresh = tmp_path / "fresh.json"  # what an evaluation of the model writes today
    monkeypatch.setenv("DEMVAE_DATA_DIR", str(tmp_path / "data"))
    assert main(["evaluate", str(work / runs["dailydialog-dgm-vae-mi"].name), "--dataset", "daily_dialog",
                 "--metrics", "homogeneity", "--output", str(fresh), "--no-progress"]) == 0
    measured = json.loads(fresh.read_text())
    older = {key: measured[key] for key in ("homogeneity", "completeness", "nmi")}  # a record from before
    results.mkdir(parents=True)
    for preset, homogeneity in (("dailydialog-dgm-vae-mi", older["homogeneity"]),
                                ("dailydialog-gm-vae", {"act": 0.5, "emotion": 0.5}),
                                ("dailydialog-dgm-vae", {"act": 0.9, "emotion": 0.9})):  # not what its model scores
        rec = record(preset, 0, "dailydialog", rppl=50.0, **{**older, "homogeneity": homogeneity})
        (results / f"{rec['run']}.json").write_text(json.dumps(rec))
    commands = []
    monkeypatch.setattr(reproduction_run, "run_command", recording_in_process(commands, []))
    capsys.readouterr()
    assert main(["reproduce", "--budget", "cpu", "--tables", "dailydialog", "--rescore", "--work-dir",
                 str(tmp_path / "work"), "--results-dir", str(tmp_path / "results"), "--report",
                 str(tmp_path / "results.md"), "--data-dir", str(tmp_path / "data")]) == 1
    assert commands == ["evaluate", "evaluate"]  # the two models in the work folder, nothing trained
    out = capsys.readouterr().out
    assert "is not the model of" in out and "failed: dailydialog-dgm-vae-seed0" in out

    rescored = json.loads((results / "dailydialog-dgm-vae-mi-seed0.json").read_text())["evaluation"]
    assert rescored["rppl"] == 50.0 and rescored["homogeneity"] == older["homogeneity"]
    assert rescored["homogeneity_chance"] == pytest.approx(measured["homogeneity_chance"])  # seed 0, the run's
    for label in ("act", "emotion"):
        assert rescored["homogeneity_adjusted"][label] == pytest.approx(
            older["homogeneity"][label] - measured["homogeneity_chance"][label])
    assert json.loads((work / "dailydialog-dgm-vae-mi-seed0" / "evaluation.json").read_text()) == rescored
    assert "Homogeneity above chance (act)" in (work / "dailydialog-dgm-vae-mi-seed0" / "README.md").read_text()
    for name in ("dailydialog-gm-vae-seed0", "dailydialog-dgm-vae-seed0"):  # left as they were
        assert "homogeneity_chance" not in json.loads((results / f"{name}.json").read_text())["evaluation"]
    text = (tmp_path / "results.md").read_text()
    adjusted = rescored["homogeneity_adjusted"]
    assert (f"| {older['homogeneity']['act']:.3f} | {adjusted['act']:.3f} | {older['homogeneity']['emotion']:.3f} "
            f"| {adjusted['emotion']:.3f} |") in text
    assert "| GM-VAE | 0 | 50.0 | – | – | – | 0.500 | – | 0.500 | – |" in text


def test_a_record_names_the_precisions_that_ran(monkeypatch):
    """bf16 numbers differ a little from float32 ones: the machine line says which ran, once when both parts agree."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(reproduction_run, "cpu_model_name", lambda: "Test CPU")
    assert reproduction_run.machine_description(1) == "Test CPU, 1 thread(s)"
    both = reproduction_run.machine_description(1, training="bf16", evaluation="bf16")
    assert both == "Test CPU, 1 thread(s), bf16 autocast"
    assert (reproduction_run.machine_description(2, training="no", evaluation="bf16")
            == "Test CPU, 2 thread(s), training in float32, evaluation in bf16 autocast")
    assert reproduction_run.machine_description(1, evaluation="no") == "Test CPU, 1 thread(s), float32"
