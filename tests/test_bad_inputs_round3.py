"""Nothing lost, nothing accepted silently (issue 34): no output option writes over a file that a demvae command
wrote, one run at a time trains into a folder, options that would do nothing are refused, edited or damaged files are
named, sizes are checked before they are allocated."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import error_lines, subprocess_env
from demvae import train as train_module
from demvae.checkpoints import list_checkpoints
from demvae.cli import main as demvae
from demvae.runs import LOCK_FILE
from demvae.trainer import DEMVAETrainer

from modeling_demvae.synthetic import write_synthetic_corpus

RUN = ["--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--num-groups", "2",
       "--num-components", "3", "--latent-size", "2", "--max-sentence-length", "12", "--batch-size", "8",
       "--learning-rate", "0.01", "--num-samples", "0", "--report-to", "none", "--num-threads", "1",
       "--mixed-precision", "no", "--max-steps", "4", "--eval-every", "2", "--learning-curve-every", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_synthetic_corpus(tmp_path_factory.mktemp("corpus"), num_train=64, num_valid=16, num_test=16)


def train_args(corpus, output, *extra) -> list[str]:
    return ["train", "--dataset", str(corpus), *RUN, "--output-dir", str(output), *extra]


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    """A folder with every kind of file a demvae command writes: a model with its card, summary and learning curve,
    checkpoints, an evaluation's progress files and an inspection's picture and report. Copy it to change it."""
    root = tmp_path_factory.mktemp("finished")
    model = root / "model"
    assert demvae(train_args(corpus, model)) == 0
    (root / "eval.json.partial").write_text('{"settings": {}, "results": {}, "finished": [], "nll_chunks": []}')
    (root / "eval.json.partial.rppl.pt").write_bytes(b"an rPPL language model's epoch")
    (model / "inspection").mkdir()
    (model / "inspection" / "latent_space.png").write_bytes(b"\x89PNG picture")
    (model / "inspection" / "components.md").write_text("# components\n")
    return root


def copy_of(finished: Path, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "copy"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, lines
    return lines[0]


# ----- 1. no output option writes over a file that a run wrote -----

WRITTEN_FILES = {  # what a run wrote -> where, under the `finished` folder
    "model config": "model/config.json",
    "model weights": "model/model.safetensors",
    "tokenizer": "model/tokenizer.json",
    "training summary": "model/training_summary.json",
    "learning curve": "model/learning_curve.jsonl",
    "model card": "model/README.md",
    "checkpoint optimizer": "model/checkpoints/step-00000004/optimizer.pt",
    "checkpoint record": "model/checkpoints/step-00000004/trainer_state.json",
    "checkpoint weights": "model/checkpoints/step-00000002/model.safetensors",
    "evaluation progress": "eval.json.partial",
    "evaluation language model": "eval.json.partial.rppl.pt",
    "inspection picture": "model/inspection/latent_space.png",
    "inspection report": "model/inspection/components.md",
}
FILE_OPTIONS = {  # command -> its arguments with the output file as {}
    "evaluate --output": ["evaluate", "{model}", "--dataset", "{corpus}", "--output", "{}"],
    "reproduce --report-only --report": ["reproduce", "--report-only", "--results-dir", "{root}/results",
                                         "--report", "{}"],
    "reproduce --report": ["reproduce", "--runs", "ptb-vae", "--work-dir", "{root}/work", "--results-dir",
                           "{root}/results", "--report", "{}"],
}


def test_the_model_card_marker_is_what_the_card_carries(finished):
    from demvae.hub import CARD_MARKER
    from demvae.model_folder import CARD_SIGNATURE

    assert CARD_MARKER.startswith(CARD_SIGNATURE) and CARD_SIGNATURE in (finished / "model/README.md").read_text()


@pytest.mark.parametrize("option", sorted(FILE_OPTIONS))
def test_no_output_file_option_writes_over_a_file_a_run_wrote(finished, corpus, tmp_path, capsys, option):
    root = copy_of(finished, tmp_path)
    before = snapshot(root)
    for kind, relative in WRITTEN_FILES.items():
        argv = [part.format(str(root / relative)) if part == "{}" else
                part.format(model=root / "model", corpus=corpus, root=root) for part in FILE_OPTIONS[option]]
        capsys.readouterr()
        assert demvae(argv) == 2, kind
        line = one_error_line(capsys)
        assert str(root / relative) in line and "writing it would damage" in line, (kind, line)
    assert snapshot(root) == before


def test_a_users_own_readme_and_a_new_file_are_written_as_asked(finished, corpus, tmp_path, capsys):
    """The refusal is for files demvae wrote: a README.md of one's own, or any other name, is an output like any."""
    from demvae.checks import checked_output_file

    own = tmp_path / "README.md"
    own.write_text("my notes")
    assert checked_output_file(own, "--output") == own
    assert checked_output_file(tmp_path / "eval.json", "--output") == tmp_path / "eval.json"
    assert checked_output_file(finished / "model/inspection/components.md", "--output-dir",
                               replaces=("latent_space.png", "components.md"))  # inspect writes its own again


FOLDER_OPTIONS = {
    "train --output-dir": ["train", "--dataset", "{corpus}", *RUN, "--output-dir", "{}"],
    "train --overwrite --output-dir": ["train", "--dataset", "{corpus}", *RUN, "--overwrite", "--output-dir", "{}"],
    "inspect --output-dir": ["inspect", "{model}", "--dataset", "{corpus}", "--output-dir", "{}"],
    "reproduce --results-dir": ["reproduce", "--report-only", "--results-dir", "{}", "--report", "{root}/r.md"],
    "reproduce --work-dir": ["reproduce", "--runs", "ptb-vae", "--work-dir", "{}", "--results-dir", "{root}/res",
                             "--report", "{root}/r.md"],
}


@pytest.mark.parametrize("option", sorted(FOLDER_OPTIONS))
def test_no_output_folder_option_writes_into_a_runs_checkpoints(finished, corpus, tmp_path, capsys, option):
    root = copy_of(finished, tmp_path)
    before = snapshot(root)
    for relative in ("model/checkpoints", "model/checkpoints/step-00000004", "model/checkpoints/step-00000004/x"):
        argv = [part.format(str(root / relative)) if part == "{}" else
                part.format(model=root / "model", corpus=corpus, root=root) for part in FOLDER_OPTIONS[option]]
        capsys.readouterr()
        assert demvae(argv) == 2, relative
        line = one_error_line(capsys)
        assert f"is in the checkpoints of the run in {root / 'model'}" in line, line
    assert snapshot(root) == before


@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "{corpus}", *RUN, "--output-dir", ""],
    ["evaluate", "{model}", "--dataset", "{corpus}", "--output", ""],
    ["inspect", "{model}", "--dataset", "{corpus}", "--output-dir", ""],
    ["reproduce", "--report-only", "--report", ""],
    ["reproduce", "--report-only", "--results-dir", " "],
], ids=["train", "evaluate", "inspect", "reproduce-report", "reproduce-results-dir"])
def test_an_empty_output_path_is_refused_before_any_work(finished, corpus, tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    argv = [part.format(model=finished / "model", corpus=corpus) for part in argv]
    assert demvae(argv) == 2
    assert "is empty; give a path" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# ----- 2. one run at a time in an output folder -----

HOLD_LOCK = """import sys, time
from demvae.runs import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_folder_another_run_trains_into_is_refused_and_released_when_that_run_dies(finished, corpus, tmp_path,
                                                                                    capsys):
    model = copy_of(finished, tmp_path) / "model"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(model)], env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(model)
        for extra in (["--overwrite"], ["--resume", "--max-steps", "6"]):
            capsys.readouterr()
            assert demvae(train_args(corpus, model, *extra)) == 2
            line = one_error_line(capsys)
            assert f"{model} is in use: another `demvae train` (process {holder.pid})" in line, line
        assert snapshot(model) == before
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the system releases the lock
        holder.wait()
    assert demvae(train_args(corpus, model, "--resume", "--max-steps", "6")) == 0
    assert (model / LOCK_FILE).read_text().strip() == str(os.getpid())  # the last run's


def test_two_runs_started_together_train_one_at_a_time(finished, corpus, tmp_path, capsys, monkeypatch):
    """The second run passed the quick check before the first took the lock: the trainer's lock refuses it, before
    anything in the folder changes."""
    output = tmp_path / "shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output)], env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (output / "notes.txt").write_text("the first run's")
        monkeypatch.setattr(train_module, "check_not_in_use", lambda folder: None)
        capsys.readouterr()
        assert demvae(train_args(corpus, output)) == 2
        assert f"is in use: another `demvae train` (process {holder.pid})" in one_error_line(capsys)
        assert sorted(path.name for path in output.iterdir()) == sorted([LOCK_FILE, "notes.txt"])
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_real_runs_into_one_folder_leave_one_model(corpus, tmp_path):
    output = tmp_path / "together"
    command = [sys.executable, "-m", "demvae", *train_args(corpus, output, "--max-steps", "40", "--eval-every", "20")]
    runs = [subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use: another `demvae train`" in refused or "already holds" in refused, refused
    assert json.loads((output / "training_summary.json").read_text())["step"] in (20, 40)


# ----- 3. a run that diverges says what is kept -----


def weights_poisoned_at(step: int):
    """A training step that makes the weights NaN once the run reaches `step`."""
    original = DEMVAETrainer._training_step

    def poisoned_step(self):
        logs = original(self)
        if self.state.step == step:
            with torch.no_grad():
                self.accelerator.unwrap_model(self.model).prior.means.fill_(float("nan"))
        return logs

    return poisoned_step


def test_a_diverging_run_says_only_what_is_on_disk(finished, corpus, tmp_path, capsys, monkeypatch):
    model = copy_of(finished, tmp_path) / "model"
    with monkeypatch.context() as patch:
        patch.setattr(DEMVAETrainer, "_training_step", weights_poisoned_at(1))
        capsys.readouterr()
        assert demvae(train_args(corpus, model, "--overwrite")) == 2  # the earlier model and checkpoints are gone
    line = one_error_line(capsys)
    assert "Kept: nothing yet." in line and "best model" not in line and line.endswith("then train again."), line
    assert not (model / "model.safetensors").exists() and not list_checkpoints(model / "checkpoints")

    assert demvae(train_args(corpus, model, "--overwrite", "--max-steps", "2")) == 0
    monkeypatch.setattr(DEMVAETrainer, "_training_step", weights_poisoned_at(3))
    capsys.readouterr()
    assert demvae(train_args(corpus, model, "--resume")) == 2
    line = one_error_line(capsys)
    assert f"Kept: the last good checkpoint {model / 'checkpoints' / 'step-00000002'} and the best model in " \
           f"{model}." in line and line.endswith("then --resume."), line
