"""`demvae reproduce`: which runs it makes, how it tabulates them, and that it skips what is done."""

import json
import statistics

import pytest
from demvae import reproduce
from demvae.cli import main


def record(preset: str, seed: int, **evaluation) -> dict:
    """A run record as `train_and_evaluate` writes it, with the given evaluation numbers."""
    table = "ptb" if preset.startswith("ptb") else "dailydialog"
    return {"run": f"{preset}-seed{seed}", "table": table, "preset": preset, "seed": seed, "budget": "cpu",
            "training": {"best_step": 100, "validation": {}, "minutes": 3.0}, "evaluation": evaluation,
            "evaluation_minutes": 1.0, "machine": "test CPU", "settings": {}}


def test_runs_cover_both_tables_with_three_seeds_for_the_compared_models():
    runs = reproduce.all_runs()
    names = [run.name for run in runs]
    assert len(names) == len(set(names)) == 9 + 2 * 2 + 5
    for preset in ("ptb-gm-vae", "ptb-dgm-vae-mi"):
        assert [run.seed for run in runs if run.preset == preset] == [0, 1, 2]
    assert [run.table for run in runs] == ["ptb"] * 13 + ["dailydialog"] * 5  # Penn Treebank first
    assert [run.seed for run in runs[:9]] == [0] * 9  # the whole table once before the extra seeds
    for run in runs:  # every run names a preset that exists and trains on the table's corpus
        preset = json.loads(reproduce.preset_path(run.preset).read_text())
        assert preset["dataset"] == run.dataset


def test_unknown_run_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown run.*ptb-gm-vae-mi"):
        reproduce.all_runs(("ptb",), ["ptb-gm-vea"])


def test_table_rows_are_means_and_standard_deviations_over_seeds(tmp_path):
    rppl = [120.0, 130.0, 146.0]
    folder = tmp_path / "cpu"
    folder.mkdir()
    for seed, value in enumerate(rppl):  # two groups: I(x;c) summed, spread averaged
        rec = record("ptb-gm-vae", seed, rppl=value, bleu=10.0 + seed, mi=[0.5, 0.25 * seed],
                     component_spread=[1.0, 3.0])
        (folder / f"{rec['run']}.json").write_text(json.dumps(rec))
    lines = reproduce.format_table("ptb", reproduce.load_records(tmp_path, "cpu"))
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


def test_claims_compare_means_in_the_right_direction(tmp_path):
    records = [record("ptb-gm-vae", s, rppl=100.0, bleu=5.0, mi=[0.0], component_spread=[0.5]) for s in (0, 1)]
    records += [record("ptb-dgm-vae-mi", 0, rppl=90.0, bleu=4.0, mi=[2.0], component_spread=[0.4])]
    claims = "\n".join(reproduce.format_claims(records))
    assert "DGM-VAE + MI (1 seeds) against GM-VAE (2 seeds)" in claims
    assert "rPPL: 90.00 against 100.00 (better" in claims  # lower is better
    assert "BLEU: 4.00 against 5.00 (not better" in claims
    assert "I(x;c): 2.00 against 0.00 (better" in claims
    assert "spread: 0.40 against 0.50 (not better" in claims
    assert reproduce.format_claims(records[:2]) == []  # nothing to compare


def test_report_lists_what_is_missing(tmp_path):
    rec = record("dailydialog-dgm-vae-mi", 0, rppl=50.0, homogeneity={"act": 0.25, "emotion": 0.125})
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / f"{rec['run']}.json").write_text(json.dumps(rec))
    reproduce.write_report(tmp_path / "results.md", tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "## Budget `cpu`" in text and "test CPU" in text
    assert "| DGM-VAE + MI | 0 | 50.0 | – | – | – | 0.250 | 0.125 |" in text
    assert "Not run yet: dailydialog-di-vae-seed0" in text
    assert "### Penn Treebank\n\nNot run yet: ptb-vae-seed0" in text  # no table without a record


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
    assert mixture["settings"]["train"] == reproduce.BUDGETS["smoke"].train
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
    assert not reproduce.is_done(reproduce.Run("ptb", "ptb-rnnlm", 0), "smoke", tmp_path / "results")
