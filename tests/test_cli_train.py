"""`demvae train` and `demvae generate` on the command line: presets, overrides, and one-line errors."""

import json
import re
from pathlib import Path

import pytest
from conftest import error_lines
from demvae.arguments import TrainingArguments
from demvae.cli import main as demvae
from demvae.train import PRESET_DIR, load_preset

from modeling_demvae import DEMVAEConfig

TINY = ["--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--num-groups", "2",
        "--num-components", "3", "--max-sentence-length", "12", "--batch-size", "4", "--max-steps", "4",
        "--eval-every", "2", "--num-samples", "2", "--report-to", "none", "--num-threads", "1"]


def one_line_error(capsys, argv) -> str:
    """Run the command, expect exit status 2 and exactly one stderr line without a traceback; return it."""
    try:
        status = demvae(argv)
    except SystemExit as exit_:  # argparse errors exit
        status = exit_.code
    err = error_lines(capsys.readouterr().err)
    assert status == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text("".join(f"the {w} sat on the mat .\na {w} ran home .\n" for w in "cat dog bird cow".split()))
    return path


@pytest.mark.parametrize("content, expected", [
    (None, "text file not found: .*missing.txt"),
    ("", "no sentences"),
    ("\n   \n\t\n\n", "no sentences"),
])
def test_corpus_errors_are_one_line(capsys, tmp_path, content, expected):
    path = tmp_path / "missing.txt"
    if content is not None:
        path.write_text(content)
    line = one_line_error(capsys, ["train", "--train-file", str(path), "--output-dir", str(tmp_path / "out")])
    assert line.startswith("demvae train: error: ")
    assert re.search(expected, line), line


def test_unknown_preset_and_unknown_keys_are_one_line(capsys, tmp_path, text_file):
    line = one_line_error(capsys, ["train", "--config", "ptb-dgm-vea"])
    assert "unknown preset 'ptb-dgm-vea'" in line and "ptb-dgm-vae-mi" in line  # lists the presets there are
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps({"dispersion_wieght": 0.5}))
    line = one_line_error(capsys, ["train", "--config", str(preset), "--train-file", str(text_file)])
    assert "unknown setting 'dispersion_wieght'" in line and "did you mean 'dispersion_weight'" in line
    line = one_line_error(capsys, ["train", "--dispersion-wieght", "0.5"])
    assert line.startswith("demvae train: error: unrecognized arguments: --dispersion-wieght 0.5")
    assert "did you mean --dispersion-weight" in line
    line = one_line_error(capsys, ["train", "--variant", "gmvae"])
    assert "invalid choice: 'gmvae'" in line
    line = one_line_error(capsys, ["train", "--train-file", str(text_file), "--dispersion-weight", "2", *TINY,
                                   "--output-dir", str(tmp_path / "out")])
    assert "dispersion_weight (beta) must lie in [0, 1], got 2.0" in line
    line = one_line_error(capsys, ["train", "--seed", "-1"])
    assert "seed must be an integer in [0, 4294967295], got -1" in line  # seeds the noise streams (unsigned), NumPy


def test_every_preset_builds_its_model_and_training_arguments():
    presets = sorted(PRESET_DIR.glob("*.json"))
    variants = {"vae": "vae", "di-vae": "discrete", "semi-vae": "semi", "semi-vae-mi": "semi", "gm-vae": "dem",
                "gm-vae-mi": "dem", "dgm-vae": "dem", "dgm-vae-mi": "dem", "rnnlm": "rnnlm"}
    supervised = {"dailydialog-dgm-vae-mi-act": ["act"]}
    categorical = {"dailydialog-dcm-vae", "dailydialog-dcm-vae-relaxed", "dailydialog-dcm-vae-mi",
                   "dailydialog-dcm-vae-mi-bonus", "dailydialog-dcm-vae-sup", "dailydialog-cm-vae-sup"}
    dialog = {"smd-dgm-vae-mi-dialog", "smd-gm-vae-dialog", "smd-di-vae-dialog"}  # test_dialog_training checks them
    assert {p.stem for p in presets} == ({f"{d}-{v}" for d in ("ptb", "dailydialog") for v in variants}
                                         | set(supervised) | categorical | dialog)
    variants["dgm-vae-mi-act"] = "dem"
    for path in (path for path in presets if path.stem not in dialog):
        settings = load_preset(path.stem)
        config = DEMVAEConfig(**{k: v for k, v in settings.items() if k in DEMVAEConfig.__annotations__})
        TrainingArguments(**{k: v for k, v in settings.items() if k in TrainingArguments.__annotations__})
        if path.stem in categorical:  # the reference BMVAE: G = 1, K = 30, d = 30, V = 8, beta 0.4 (spec section 8)
            layout = (config.num_groups, config.num_components, config.latent_size, config.categorical_size)
            expected = ("CM-VAE", 0.0) if path.stem.startswith("dailydialog-cm") else (
                "DCM-VAE + MI" if "-mi" in path.stem else "DCM-VAE", 0.4)
            assert (config.paper_name, config.dispersion_weight) == expected and layout == (1, 30, 30, 8)
            assert config.gumbel_hard == (not path.stem.endswith("-relaxed"))  # the reference BMVAE's estimator
            assert settings.get("supervise") == (["act", "emotion"] if path.stem.endswith("-sup") else None)
            continue
        dataset, name = path.stem.split("-", 1)
        assert config.variant == variants[name]
        if name.startswith(("gm", "dgm", "semi")):
            assert config.use_mutual_information == ("-mi" in name)
        assert settings.get("supervise") == supervised.get(path.stem)
        if config.variant == "dem":
            expected_beta = 0.0 if name.startswith("gm") else {"ptb": 0.8, "dailydialog": 0.7}[dataset]
            assert config.dispersion_weight == expected_beta
        assert (config.num_groups, config.num_components) == {"ptb": (20, 5), "dailydialog": (3, 5)}[dataset]
        assert settings["batch_size"] == 30 and settings["learning_rate"] == 1e-3 and settings["max_grad_norm"] == 0.5
    assert load_preset("dailydialog-dgm-vae-mi")["selection_metric"] == "loss"  # spec: DailyDialog stops on it


def test_train_then_generate_from_a_component(capsys, tmp_path, text_file):
    out = tmp_path / "model"
    assert demvae(["train", "--train-file", str(text_file), *TINY, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Best model (validation elbo" in printed and "component [" in printed
    assert demvae(["generate", str(out), "--component", "2,0", "--num-samples", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    line = one_line_error(capsys, ["generate", str(out), "--component", "x"])
    assert "--component must be an integer" in line
    line = one_line_error(capsys, ["train", "--init-from", str(out), "--train-file", str(text_file), *TINY,
                                   "--num-groups", "4", "--output-dir", str(tmp_path / "tuned")])
    assert "--num-groups 4 differs from the model" in line


def test_report_samples_the_most_used_codes_among_many_groups(capsys, tmp_path, text_file):
    """5**20 possible codes (the PTB layout): the report lists the used ones without counting them all."""
    settings = [*TINY, "--num-groups", "20", "--num-components", "5", "--latent-size", "1"]
    assert demvae(["train", "--train-file", str(text_file), *settings, "--output-dir", str(tmp_path / "m")]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("component [")]
    assert listed and all(line.count(",") == 19 for line in (entry.split("]")[0] for entry in listed))
