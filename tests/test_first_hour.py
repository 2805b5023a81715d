"""A new user's first hour: the README's command table run as written against the Quickstart model, `--help` without
torch, the one-line errors a first user meets (a mistyped folder, a label no component carries), the model's own
corpus when none is given, and generation by label from the command line."""

import json
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO, error_lines, subprocess_env
from demvae.cli import COMMANDS
from demvae.cli import main as demvae
from test_hub import FakeHub

TABLE_ROW = re.compile(r"^\| `(demvae [^`]+)`")  # | `demvae ...` | what it does |
HEAVY_LIBRARIES = ("torch", "transformers", "datasets", "accelerate", "matplotlib", "sklearn", "nltk",
                   "modeling_demvae")


def readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    return [match.group(1) for line in lines if (match := TABLE_ROW.match(line))]


def test_the_readme_table_names_every_command():
    assert {shlex.split(command)[1] for command in readme_commands()} == set(COMMANDS)


@pytest.mark.slow
def test_every_command_of_the_readme_table_runs_as_written(tmp_path, monkeypatch, capsys):
    """From an empty folder, in the table's order: the Quickstart's `demvae train` first, then each command on the
    model it wrote (push to an intercepted Hub)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_used_for_any_request")
    monkeypatch.setenv("DEMVAE_CACHE", str(tmp_path / "cache"))  # the demo's placement, not in the user's cache
    hub = FakeHub(monkeypatch)
    for command in readme_commands():
        assert demvae(shlex.split(command)[1:]) == 0, (command, capsys.readouterr().err[-2000:])
    assert (tmp_path / "demvae-output" / "README.md").is_file()
    assert "README.md" in hub.files and "model.safetensors" in hub.files


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_loads_no_heavy_library(command):
    """`--help` answers at once: argparse and the package's own light modules, not torch or transformers."""
    argv = [command, "--help"] if command else ["--help"]
    code = (f"import sys\nfrom demvae.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(name for name in {HEAVY_LIBRARIES!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                            check=True)
    assert "usage: demvae" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory):
    """A model of the Quickstart's corpus (a few steps), its summary recording the synthetic corpus."""
    folder = tmp_path_factory.mktemp("first-hour")
    assert demvae(["train", "--max-steps", "20", "--eval-every", "10", "--num-samples", "0",
                   "--output-dir", str(folder / "demvae-output")]) == 0
    return folder / "demvae-output"


@pytest.mark.parametrize("argv", [["generate"], ["evaluate"], ["inspect"], ["label-components", "--labels", "mode"]])
def test_a_mistyped_folder_is_named_at_once_with_the_folder_it_resembles(quick_model, monkeypatch, capsys, argv):
    monkeypatch.chdir(quick_model.parent)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # no Hub call may be tried: offline or not, the answer is the same
    assert demvae([argv[0], "demvae-outptu", *argv[1:]]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"demvae {argv[0]}: error: no model at demvae-outptu: there is no such folder; did you mean "
                     "demvae-output?"]


def test_a_folder_that_is_not_a_model_and_a_name_that_is_no_hub_id_are_local_errors(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert demvae(["generate", str(tmp_path / "notes")]) == 2
    assert "no model found at" in capsys.readouterr().err
    assert demvae(["generate", "no-such-model"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "demvae generate: error: no model at no-such-model: there is no such folder (a model on the Hub is named "
        "namespace/name)."]


def test_evaluate_takes_the_model_s_own_corpus_and_says_so(quick_model, tmp_path, capsys):
    output = tmp_path / "eval.json"
    assert demvae(["evaluate", str(quick_model), "--metrics", "bleu", "--max-sentences", "20",
                   "--output", str(output)]) == 0
    err = capsys.readouterr().err
    assert f"Evaluating {quick_model} on the synthetic corpus (the model's own, from its training_summary.json)" in err
    assert json.loads(output.read_text())["settings"]["dataset"] == "synthetic"


def test_a_model_trained_on_files_is_evaluated_on_its_test_file(tmp_path, capsys):
    sentences = [f"the {w} sat on the {v} ." for w in ("cat", "dog", "cow") for v in ("mat", "rug")]
    for name in ("train", "valid", "test"):
        (tmp_path / f"{name}.txt").write_text("\n".join(sentences * 4) + "\n")
    model = tmp_path / "model"
    assert demvae(["train", *(f"--{name}-file={tmp_path / name}.txt" for name in ("train", "valid", "test")),
                   "--max-steps", "4", "--eval-every", "2", "--batch-size", "8", "--num-samples", "0",
                   "--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8",
                   "--output-dir", str(model)]) == 0
    capsys.readouterr()
    assert demvae(["evaluate", str(model), "--metrics", "bleu", "--output", str(tmp_path / "e.json")]) == 0
    assert f"on {tmp_path / 'test.txt'} (the model's own" in capsys.readouterr().err
    settings = json.loads((tmp_path / "e.json").read_text())["settings"]
    assert settings["test_file"] == f"{tmp_path / 'test.txt'}" and settings["train_file"] == f"{tmp_path / 'train.txt'}"


def test_generate_by_label_from_the_command_line(quick_model, tmp_path, capsys):
    model = tmp_path / "labelled"
    assert demvae(["train", "--supervise", "mode", "--max-steps", "20", "--eval-every", "10", "--num-samples", "0",
                   "--output-dir", str(model)]) == 0
    capsys.readouterr()
    labels = json.loads((model / "config.json").read_text())["attributes"]["mode"]["labels"]
    assert demvae(["generate", str(model), "--attributes", f"mode={labels[1]}", "--num-samples", "3"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 3 and f"from mode={labels[1]} of {model}" in err
    assert demvae(["generate", str(model), "--attributes", "mode"]) == 2
    assert "--attributes takes NAME=LABEL pairs such as act=question, got 'mode'" in capsys.readouterr().err
    assert demvae(["generate", str(model), "--attributes", "mode=nonsense"]) == 2
    assert "unknown label 'nonsense' of attribute 'mode'; its labels are" in capsys.readouterr().err


def test_the_command_line_reads_the_model_package_s_names_as_the_package_defines_them():
    """What `--help` reads from the model package's source, without importing it, is what the package has."""
    from demvae import model_source

    from modeling_demvae import DEMVAEConfig, DEMVAEDialogConfig
    from modeling_demvae.configuration_demvae import PRIOR_FAMILIES, VARIANTS
    from modeling_demvae.configuration_dialog import REFERENCE_RESPONSE_SETTINGS
    from modeling_demvae.data import LABEL_COLUMNS
    from modeling_demvae.metrics.reverse_ppl import RPPL_PRESETS

    assert model_source.config_fields() == DEMVAEConfig.__annotations__
    assert model_source.config_docstring() == DEMVAEConfig.__doc__
    dialog_fields = dict(DEMVAEDialogConfig.__annotations__, response_config=dict | None)  # the nested config: a dict
    assert model_source.dialog_config_fields() == dialog_fields
    assert model_source.dialog_config_docstring() == DEMVAEDialogConfig.__doc__
    for module, name, value in [("configuration_demvae", "VARIANTS", VARIANTS),
                                ("configuration_dialog", "REFERENCE_RESPONSE_SETTINGS", REFERENCE_RESPONSE_SETTINGS),
                                ("configuration_demvae", "PRIOR_FAMILIES", PRIOR_FAMILIES),
                                ("data", "LABEL_COLUMNS", LABEL_COLUMNS),
                                ("metrics.reverse_ppl", "RPPL_PRESETS", RPPL_PRESETS)]:
        assert model_source.constant(module, name) == value
    with pytest.raises(LookupError, match="defines no literal NOT_THERE"):
        model_source.constant("data", "NOT_THERE")
