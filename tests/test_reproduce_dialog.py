"""`demvae reproduce`'s dialog table: SMD's latent actions (DI-VAE, GM-VAE, DGM-VAE + MI), their budgets, rows and
claims, and the whole pipeline at toy size."""

import dataclasses
import json
import statistics

import pytest
from demvae import budgets, reproduction_run
from demvae import reproduction_report as report
from demvae.cli import main
from demvae.precision import resolve_mixed_precision
from demvae.reproduction_run import PRECISION_NAMES
from dialog_helpers import write_smd_folder
from reproduce_helpers import record, recording_in_process

DIALOG_PRESETS = budgets.TABLES["smd"][1]
BETTER, WORSE = budgets.COMPARISONS["smd"]


def dialog_record(preset: str, seed: int, *, bleu: float, consistency: float, intent: float) -> dict:
    """A dialog model's record with the numbers the table and claims read (the others fixed)."""
    return record(preset, seed, bleu=bleu, sacrebleu=bleu - 1, policy_accuracy=0.5, action_consistency=consistency,
                  homogeneity={"intent": intent}, homogeneity_adjusted={"intent": intent - 0.1}, distinct_1=0.02,
                  distinct_2=0.05, nll=30.0, ppl=12.5, entity_f1={"all": 0.2, "assistant": 0.3, "user": 0.1})


def table_rows(lines: list[str]) -> dict[str, dict[str, str]]:
    """Model name -> header -> cell of a markdown table's rows."""
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:] if line.startswith("|")]
    return {cells[0]: dict(zip(header, cells)) for cells in rows}


def test_the_budgets_fit_the_dialog_models_to_their_two_stages():
    """Each budget's dialog runs reach stage 2 (a freeze_step below max_steps), the cpu budget's context side is half
    the reference width like its response VAE, and the dialog evaluation gets no sentence-model option."""
    for name in budgets.BUDGETS:
        for run in budgets.all_runs(("smd",), budget=name):
            settings = budgets.run_settings(run, name)
            merged = {**settings["preset_settings"], **settings["train"]}
            assert merged["freeze_step"] < merged["max_steps"], (name, run.name)
            assert not {"metrics", "nll_samples", "rppl_preset", "rppl_samples"} & set(settings["evaluate"])
    cpu = [budgets.run_settings(run, "cpu") for run in budgets.all_runs(("smd",), budget="cpu")]
    assert [(s["preset"], s["seed"]) for s in cpu] == [(p, seed) for seed in (0, 1, 2) for p in DIALOG_PRESETS]
    for settings in cpu:
        preset, train = settings["preset_settings"], settings["train"]
        assert 2 * train["context_hidden_size"] == preset["context_hidden_size"]
        assert 2 * train["embed_size"] == preset["embed_size"] and settings["evaluate"] == {}  # the whole test split
    sentence = budgets.run_settings(budgets.Run("ptb", "ptb-gm-vae", 0), "cpu")
    assert sentence["evaluate"] == budgets.BUDGETS["cpu"].evaluate and "freeze_step" not in sentence["train"]
    assert [budgets.model_name(p) for p in DIALOG_PRESETS] == [
        "DI-VAE latent actions", "GM-VAE + MI latent actions", "DGM-VAE + MI latent actions"]


def test_dialog_rows_are_means_over_seeds_of_the_dialog_metrics():
    records = [dialog_record(BETTER, seed, bleu=b, consistency=c, intent=h)
               for seed, (b, c, h) in enumerate([(10.0, 0.8, 0.3), (11.0, 0.9, 0.5)])]
    rows = table_rows(report.format_table("smd", records))
    row = rows["DGM-VAE + MI latent actions"]
    assert row["seeds"] == "0, 1"
    assert row["BLEU"] == f"{statistics.fmean([10.0, 11.0]):.2f} ± {statistics.stdev([10.0, 11.0]):.2f}"
    assert row["sacreBLEU"] == "9.50 ± 0.71" and row["action consistency"] == "0.850 ± 0.071"
    assert row["intent homogeneity"] == "0.400 ± 0.141" and row["intent above chance"] == "0.300 ± 0.141"
    assert (row["policy accuracy"], row["distinct-2"]) == ("0.500 ± 0.000", "0.050 ± 0.000")
    assert row["PPL"] == "12.50 ± 0.00" and row["entity F1 (assistant)"] == "0.300 ± 0.000"


@pytest.mark.parametrize("gm_bleu, verdict", [
    ([12.0], "comparable: within 1.00"),  # 1 BLEU point below GM-VAE's one seed
    ([12.6], "not better"),
    ([11.0, 12.0, 16.0], "comparable: within 2.65"),  # within one of GM-VAE's standard deviations over seeds
    ([10.0], "better"),
])
def test_the_dialog_claims_take_a_comparable_bleu(gm_bleu, verdict):
    """DGM-VAE + MI's actions more consistent and more homogeneous with the intent than GM-VAE's, at a BLEU that is
    better or comparable: at most 1 point, or GM-VAE's standard deviation over seeds, below its mean."""
    records = [dialog_record(BETTER, 0, bleu=11.0, consistency=0.9, intent=0.4)]
    records += [dialog_record(WORSE, seed, bleu=bleu, consistency=0.95, intent=0.2)
                for seed, bleu in enumerate(gm_bleu)]
    claims = report.format_claims(records)
    seeds = f"{len(gm_bleu)} seed{'s' * (len(gm_bleu) > 1)}"
    assert claims[0] == (f"Stanford Multi-Domain dialogs: latent actions: DGM-VAE + MI latent actions (1 seed) "
                         f"against GM-VAE + MI latent actions ({seeds}), means:")
    assert claims[2:] == ["- action consistency: 0.900 against 0.950 (not better; higher is better)",
                          "- homogeneity with the intent: 0.400 against 0.200 (better; higher is better)",
                          f"- BLEU: 11.00 against {statistics.fmean(gm_bleu):.2f} ({verdict}; higher is better)"]


@pytest.mark.slow
def test_the_dialog_table_at_toy_size_writes_records_pictures_and_cards_and_claims(tmp_path, monkeypatch, capsys):
    """SMD's table through the full budget's pipeline (one thread, cards) at the smoke budget's sizes on a synthetic
    SMD folder, the subcommands run in this process: each model trained in two stages, scored by the dialog
    evaluation, its latent actions inspected; no rPPL ceiling and no label-components; rows and claims in the
    report; done runs skipped."""
    smoke = budgets.BUDGETS["smoke"]
    monkeypatch.setitem(budgets.BUDGETS, "full", dataclasses.replace(
        budgets.BUDGETS["full"], train={**smoke.train, "checkpoint_every": 10}, table_train=smoke.table_train,
        table_evaluate=smoke.table_evaluate))
    write_smd_folder(tmp_path / "data" / "smd", dialogs_per_split=12)  # 36 responses a split: one batch
    commands = []
    monkeypatch.setattr(reproduction_run, "run_command", recording_in_process(commands, []))
    results, report_path = tmp_path / "results", tmp_path / "results.md"
    arguments = ["reproduce", "--budget", "full", "--tables", "smd", "--work-dir", str(tmp_path / "work"),
                 "--results-dir", str(results), "--report", str(report_path), "--data-dir", str(tmp_path / "data")]
    assert main(arguments) == 0
    assert commands == ["train", "evaluate", "inspect"] * 3

    full, ran = results / "full", PRECISION_NAMES[resolve_mixed_precision("auto", "cpu")]
    # the dialog evaluation runs in float32 whatever the training ran in
    machine = "1 thread(s), float32" if ran == "float32" else f"1 thread(s), training in {ran}, evaluation in float32"
    assert sorted(path.name for path in full.glob("*.json")) == sorted(f"{p}-seed0.json" for p in DIALOG_PRESETS)
    records = {p: json.loads((full / f"{p}-seed0.json").read_text()) for p in DIALOG_PRESETS}
    for preset, rec in records.items():
        evaluation = rec["evaluation"]
        assert {"bleu", "sacrebleu", "policy_accuracy", "action_consistency", "distinct_1", "distinct_2", "ppl"} <= set(
            evaluation)
        assert set(evaluation["homogeneity"]) == set(evaluation["homogeneity_adjusted"]) == {"intent"}
        assert "assistant" in evaluation["entity_f1"] and evaluation["settings"]["test_responses"] == 36
        assert rec["settings"]["evaluate"] == {"max_sentences": 50} and rec["table"] == "smd"
        assert rec["machine"].endswith(machine)
        summary = json.loads((tmp_path / "work" / "full" / f"{preset}-seed0" / "training_summary.json").read_text())
        assert summary["stage"] == 2 and summary["stage_switch_step"] == 15  # both stages trained
        card = (full / f"{preset}-seed0" / "README.md").read_text()
        assert "model-index" in card and "component=" in card
        assert (full / f"{preset}-seed0" / "components.md").is_file()
        mixture = budgets.model_name(preset) != "DI-VAE latent actions"  # a mixture prior to picture
        assert (full / f"{preset}-seed0" / "latent_space.png").is_file() == mixture

    text = report_path.read_text()
    start = text.index("### Stanford Multi-Domain dialogs: latent actions")
    section = text[start:text.index("\n### ", start)]
    assert "Not run yet" not in section and "Entity F1: SMD's entities" in section  # the table's note
    section = section.splitlines()
    rows = table_rows([line for line in section if line.startswith("|")])
    for preset, rec in records.items():
        row, evaluation = rows[budgets.model_name(preset)], rec["evaluation"]
        assert row["BLEU"] == f"{evaluation['bleu']:.2f}" and row["PPL"] == f"{evaluation['ppl']:.2f}"
        assert row["action consistency"] == f"{evaluation['action_consistency']:.3f}"
        assert row["actions in use"] == f"{evaluation['actions_in_use']:.2f}"
        assert row["intent above chance"] == f"{evaluation['homogeneity_adjusted']['intent']:.3f}"
        assert row["entity F1 (assistant)"] == f"{evaluation['entity_f1']['assistant']:.3f}"
    ours, theirs = (records[p]["evaluation"]["action_consistency"] for p in (BETTER, WORSE))
    verdict = "better" if ours > theirs else "not better"
    assert f"- action consistency: {ours:.3f} against {theirs:.3f} ({verdict}; higher is better)" in text
    assert "Stanford Multi-Domain dialogs: latent actions: DGM-VAE + MI latent actions (1 seed)" in text
    assert not list(full.glob("*ceiling*"))

    written = {path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file()}
    commands.clear()
    assert main(arguments) == 0  # everything done: nothing retrained, re-evaluated or rewritten
    assert commands == [] and "3 run(s) in budget 'full': 3 done, 0 to do" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file()} == written

    # a record from before the actions in use: `--rescore` evaluates its model again and merges them in
    older = full / f"{BETTER}-seed0.json"
    rec = json.loads(older.read_text())
    in_use = rec["evaluation"].pop("actions_in_use"), rec["evaluation"].pop("actions_in_use_per_group")
    older.write_text(json.dumps(rec))
    assert main([*arguments, "--rescore"]) == 0
    assert commands == ["evaluate"] and f"rescored 1 run(s): {BETTER}-seed0" in capsys.readouterr().out
    rescored = json.loads(older.read_text())["evaluation"]
    assert [rescored["actions_in_use"], *rescored["actions_in_use_per_group"]] == pytest.approx([in_use[0], *in_use[1]])
