"""Nothing lost, nothing unsafe (issue 11): checkpoints that never run code, fall back when damaged and belong to
their run; earlier models never replaced silently; Ctrl-C checkpoints and resumes on the same trajectory."""

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CHECKPOINT_FILES, error_lines, subprocess_env
from demvae import preparation
from demvae.arguments import TrainingArguments
from demvae.checkpoints import RECORD_HASH, STATE_FILE, list_checkpoints, record_hash
from demvae.cli import main as demvae
from demvae.precision import resolve_mixed_precision
from demvae.trainer import DEMVAETrainer
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modeling_demvae.synthetic import write_synthetic_corpus

MODEL = ["--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--num-groups", "2",
         "--num-components", "3", "--latent-size", "2", "--max-sentence-length", "12", "--dropout", "0.3"]
RUN = [*MODEL, "--batch-size", "8", "--learning-rate", "0.01", "--num-samples", "0", "--report-to", "none",
       "--num-threads", "1", "--max-steps", "8", "--eval-every", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_synthetic_corpus(tmp_path_factory.mktemp("corpus"), num_train=96, num_valid=16, num_test=16)


def train_args(corpus, output, *extra) -> list[str]:
    return ["train", "--dataset", str(corpus), *RUN, "--output-dir", str(output), *extra]


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory) -> Path:
    """An 8-step run: checkpoints at steps 4 and 8, the best model exported. Copy it before changing anything."""
    output = tmp_path_factory.mktemp("run") / "run"
    assert demvae(train_args(corpus, output)) == 0
    return output


def copy_of(run: Path, tmp_path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def checkpoint_weights(output, name="step-00000008") -> dict[str, torch.Tensor]:
    return load_file(Path(output) / "checkpoints" / name / "model.safetensors")


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def stderr_lines(capsys) -> list[str]:
    return printed(capsys)[1]


def printed(capsys) -> tuple[str, list[str]]:
    """What the command printed: stdout, and the lines of stderr but progress bars (never a traceback)."""
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return out, error_lines(err)


RESUMED_FROM_4 = "step-00000004 (step 4, the newest intact checkpoint)"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def rewrite_record(checkpoint: Path, name: str) -> None:
    """Make trainer_state.json vouch for the file as it is now: an attacker who can write files can write this."""
    record = json.loads((checkpoint / STATE_FILE).read_text())
    content = (checkpoint / name).read_bytes()
    record["files"][name] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    (checkpoint / STATE_FILE).write_text(json.dumps({**record, RECORD_HASH: record_hash(record)}))


class CreatesAFile:
    """A pickle whose loading runs code: `open(marker, "w")` creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


# ----- 1. resuming never runs code -----


@pytest.mark.parametrize("name", sorted(CHECKPOINT_FILES))
def test_a_crafted_pickle_in_any_checkpoint_file_is_refused_without_running(finished_run, corpus, tmp_path, capsys,
                                                                            name):
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(CreatesAFile(control))).close()
    assert control.exists()  # the payload is live: loading it with pickle runs it

    output, marker = copy_of(finished_run, tmp_path), tmp_path / "marker"
    newest = output / "checkpoints" / "step-00000008"
    (newest / name).write_bytes(pickle.dumps(CreatesAFile(marker)))
    if name != STATE_FILE:
        rewrite_record(newest, name)
    capsys.readouterr()
    assert demvae(train_args(corpus, output, "--resume")) == 0
    assert not marker.exists()
    out, lines = printed(capsys)
    warning = [line for line in lines if "step-00000008" in line]
    assert len(warning) == 1 and name in warning[0] and "skipped and removed damaged checkpoint" in warning[0]
    if name == "optimizer.pt":
        assert "refused: it holds objects that loading would have to run code to build" in warning[0]
    assert RESUMED_FROM_4 in out
    assert same_weights(checkpoint_weights(output), checkpoint_weights(finished_run))  # redone from step 4


def test_old_pickle_checkpoints_are_refused_in_one_line(finished_run, corpus, tmp_path, capsys):
    output = copy_of(finished_run, tmp_path)
    for checkpoint in list_checkpoints(output / "checkpoints"):
        (checkpoint / STATE_FILE).unlink()
        (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(CreatesAFile(tmp_path / "marker")))
    capsys.readouterr()
    assert demvae(train_args(corpus, output, "--resume")) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "no usable checkpoint" in lines[0] and "older demvae as pickle files" in lines[0]
    assert not (tmp_path / "marker").exists()


# ----- 2. a checkpoint belongs to its run -----


def test_resume_with_other_settings_is_refused_naming_them_and_changes_nothing(finished_run, corpus, tmp_path,
                                                                               capsys):
    output = copy_of(finished_run, tmp_path)
    before = snapshot(output)
    other_data = write_synthetic_corpus(tmp_path / "other", num_train=96, num_valid=16, num_test=16, seed=9)
    for extra, named in ((["--learning-rate", "0.02"], "learning_rate 0.01 -> 0.02"),
                         (["--dispersion-weight", "0.5"], "dispersion_weight 0.8 -> 0.5"),
                         (["--seed", "3"], "seed 0 -> 3")):
        capsys.readouterr()
        assert demvae(train_args(corpus, output, "--resume", *extra)) == 2
        lines = stderr_lines(capsys)
        assert len(lines) == 1 and "belongs to a run with other settings" in lines[0] and named in lines[0], lines
    assert demvae(["train", "--dataset", str(other_data), *RUN, "--output-dir", str(output), "--resume"]) == 2
    assert "data.train.sha256" in stderr_lines(capsys)[0]
    assert snapshot(output) == before
    # what may change on resume does: more steps, continued on the same run
    assert demvae(train_args(corpus, output, "--resume", "--max-steps", "12")) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["training_arguments"]["learning_rate"] == 0.01
    assert [p.name for p in list_checkpoints(output / "checkpoints")] == ["step-00000008", "step-00000012"]


def test_a_checkpoint_of_an_older_version_resumes_with_the_settings_added_since_at_their_defaults(
        finished_run, corpus, tmp_path, capsys):
    """An older package wrote no value for a setting added later; its run had, in effect, the default. A setting
    missing from the checkpoint whose value now differs from the default is still a difference."""
    def drop_from_checkpoints(output, model=(), training=()):
        for checkpoint in list_checkpoints(output / "checkpoints"):
            state = json.loads((checkpoint / STATE_FILE).read_text())
            for section, names in (("model", model), ("training", training)):
                for name in names:
                    del state["run"][section][name]
            del state["seconds"]  # nor the training time
            del state[RECORD_HASH]  # nor the record's own hash (format 1)
            (checkpoint / STATE_FILE).write_text(json.dumps({**state, "format": 1}))

    older = copy_of(finished_run, tmp_path / "older")
    drop_from_checkpoints(older, model=["attribute_loss_weight", "categorical_size", "attributes"],
                          training=["kl_annealing_start"])
    assert demvae(train_args(corpus, older, "--resume", "--max-steps", "12")) == 0
    assert "Resumed from" in capsys.readouterr().out
    assert json.loads((older / "training_summary.json").read_text())["step"] == 12
    newest = list_checkpoints(older / "checkpoints")[-1]
    assert json.loads((newest / STATE_FILE).read_text())["seconds"] is None  # the earlier starts' time is unknown

    not_default = copy_of(finished_run, tmp_path / "not-default")
    drop_from_checkpoints(not_default, training=["learning_rate"])  # the run's 0.01, the default 0.001
    assert TrainingArguments(output_dir="x").learning_rate == 0.001
    capsys.readouterr()
    assert demvae(train_args(corpus, not_default, "--resume", "--max-steps", "12")) == 2
    assert "learning_rate 0.001 -> 0.01" in stderr_lines(capsys)[0]


# ----- 3. an earlier model is never replaced silently -----


def test_a_refused_run_leaves_the_earlier_model_byte_for_byte(finished_run, corpus, tmp_path, capsys):
    output = copy_of(finished_run, tmp_path)
    before = snapshot(output)
    attempts = [
        (train_args(corpus, output), "already holds a model and checkpoints of an earlier run; --resume continues it, "
                                     "--overwrite replaces it"),
        (train_args(corpus, output, "--resume", "--overwrite"), "resume and overwrite exclude each other"),
        (["evaluate", str(output), "--dataset", str(corpus), "--output", str(output / "config.json")],
         "is a file of the model saved in"),
        (["evaluate", str(output), "--dataset", str(corpus), "--output", str(output / "model.safetensors")],
         "writing it would damage the model"),
        (["reproduce", "--report", str(output / "tokenizer.json")], "is a file of the model saved in"),
    ]
    for argv, expected in attempts:
        capsys.readouterr()
        assert demvae(argv) == 2
        lines = stderr_lines(capsys)
        assert len(lines) == 1 and expected in lines[0], lines
    assert snapshot(output) == before


def test_overwrite_removes_the_earlier_checkpoints_and_model(finished_run, corpus, tmp_path):
    output = copy_of(finished_run, tmp_path)
    (output / "notes.txt").write_text("mine")
    assert demvae(train_args(corpus, output, "--overwrite", "--max-steps", "6", "--eval-every", "3")) == 0
    assert [p.name for p in list_checkpoints(output / "checkpoints")] == ["step-00000003", "step-00000006"]
    assert json.loads((output / "training_summary.json").read_text())["step"] in (3, 6)
    assert (output / "notes.txt").read_text() == "mine"  # not a file of the model


def test_inspect_writes_beside_the_model_never_over_it(finished_run, corpus, tmp_path, capsys):
    output = copy_of(finished_run, tmp_path)
    before = snapshot(output)
    assert demvae(["inspect", str(output), "--dataset", str(corpus), "--output-dir", str(output),
                   "--samples-per-component", "5", "--examples", "1"]) == 0
    after = snapshot(output)
    assert {name: after[name] for name in before} == before
    assert set(after) - set(before) == {"latent_space.png", "components.md"}


# ----- 4. a damaged checkpoint is survivable -----


@pytest.mark.parametrize("name", sorted(CHECKPOINT_FILES))
def test_a_truncated_checkpoint_file_falls_back_to_the_previous_checkpoint(finished_run, corpus, tmp_path, capsys,
                                                                           name):
    output = copy_of(finished_run, tmp_path)
    damaged = output / "checkpoints" / "step-00000008" / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    capsys.readouterr()
    assert demvae(train_args(corpus, output, "--resume")) == 0
    out, lines = printed(capsys)
    warnings = [line for line in lines if "damaged checkpoint" in line]
    assert len(warnings) == 1 and "step-00000008" in warnings[0] and name in warnings[0]
    assert RESUMED_FROM_4 in out
    assert same_weights(checkpoint_weights(output), checkpoint_weights(finished_run))


def test_a_random_state_that_cannot_be_restored_is_not_used(finished_run, corpus, tmp_path, capsys):
    """A well-formed file whose torch generator state is the wrong size: the checkpoint is skipped, not resumed
    with a fresh random state."""
    output = copy_of(finished_run, tmp_path)
    newest = output / "checkpoints" / "step-00000008"
    with safe_open(newest / "random_states_0.safetensors", "pt") as handle:
        states, metadata = {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()
    save_file({**states, "torch": states["torch"][:100].clone()}, newest / "random_states_0.safetensors", metadata)
    rewrite_record(newest, "random_states_0.safetensors")
    capsys.readouterr()
    assert demvae(train_args(corpus, output, "--resume")) == 0
    out, lines = printed(capsys)
    assert any("random_states_0.safetensors does not load" in line for line in lines) and RESUMED_FROM_4 in out
    assert same_weights(checkpoint_weights(output), checkpoint_weights(finished_run))


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(finished_run, corpus, tmp_path, capsys):
    output = copy_of(finished_run, tmp_path)
    for checkpoint in list_checkpoints(output / "checkpoints"):
        (checkpoint / "optimizer.pt").write_bytes(b"")
    before = snapshot(output)
    capsys.readouterr()
    assert demvae(train_args(corpus, output, "--resume")) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "no usable checkpoint" in lines[0] and "step-00000004: optimizer.pt" in lines[0]
    assert snapshot(output) == before


# ----- 5. output paths are checked before the work -----


def test_output_paths_fail_before_any_work(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(preparation, "load_training_corpus", lambda *a: pytest.fail("the corpus was loaded"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for output in (a_file, a_file / "below"):
        capsys.readouterr()
        assert demvae(train_args(corpus, output)) == 2
        lines = stderr_lines(capsys)
        assert len(lines) == 1 and "is a file" in lines[0] and "not a folder" in lines[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_fails_before_any_work(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(preparation, "load_training_corpus", lambda *a: pytest.fail("the corpus was loaded"))
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    try:
        assert demvae(train_args(corpus, read_only / "out")) == 2
        assert "cannot write in" in stderr_lines(capsys)[0]
        assert demvae(["evaluate", "model", "--output", str(read_only / "eval.json")]) == 2
        assert "cannot write in" in stderr_lines(capsys)[0]
    finally:
        read_only.chmod(0o755)


# ----- 6. numbers: a NaN validation is never the best model, non-finite weights stop the run -----


def test_a_non_finite_validation_is_never_selected(tmp_path):
    from conftest import tiny_trainer

    trainer, _ = tiny_trainer(tmp_path)
    for step, elbo in enumerate((float("nan"), -10.0, float("inf"), -9.0), start=1):
        trainer.state.step = step
        trainer._after_validation({"elbo": elbo, "loss": -elbo})
        assert trainer.state.best_metric is None or torch.isfinite(torch.tensor(trainer.state.best_metric))
    assert (trainer.state.best_step, trainer.state.best_metric) == (4, -9.0)
    assert trainer.state.validations_without_improvement == 0


def test_weights_that_become_non_finite_stop_the_run_in_one_line(corpus, tmp_path, capsys, monkeypatch):
    original = DEMVAETrainer._training_step

    def poisoned_step(self):
        logs = original(self)
        if self.state.step == 6:  # between the checkpoints of steps 4 and 8
            with torch.no_grad():
                self.accelerator.unwrap_model(self.model).prior.means.fill_(float("inf"))
        return logs

    monkeypatch.setattr(DEMVAETrainer, "_training_step", poisoned_step)
    output = tmp_path / "run"
    assert demvae(train_args(corpus, output, "--eval-every", "6", "--checkpoint-every", "2")) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "training stopped at step 6: the weights are not finite (in: prior.means" in lines[0]
    assert [p.name for p in list_checkpoints(output / "checkpoints")] == ["step-00000002", "step-00000004"]


# ----- 7. mixed precision says what it does -----


def test_the_summary_records_what_ran_and_fp16_needs_a_gpu(finished_run, capsys):
    summary = json.loads((finished_run / "training_summary.json").read_text())
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    ran = resolve_mixed_precision("auto", expected_device)  # asked for: auto, bf16 where the CPU has bf16 units
    assert summary["ran"]["mixed_precision"] == ran and summary["ran"]["device"].startswith(expected_device)
    assert summary["data"]["train"]["sentences"] > 0 and len(summary["data"]["train"]["sha256"]) == 64
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16' needs a CUDA GPU"):
            TrainingArguments(mixed_precision="fp16")


# ----- 8. Ctrl-C is an expected event -----


def test_ctrl_c_checkpoints_exits_130_and_resume_ends_on_the_same_weights(finished_run, corpus, tmp_path, capsys,
                                                                           monkeypatch):
    original = DEMVAETrainer._training_step

    def step_then_ctrl_c(self):
        logs = original(self)
        if self.state.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return logs

    monkeypatch.setattr(DEMVAETrainer, "_training_step", step_then_ctrl_c)
    output, handler = tmp_path / "interrupted", signal.getsignal(signal.SIGINT)
    capsys.readouterr()
    assert demvae(train_args(corpus, output)) == 130
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("demvae train: interrupted at step 5;") and "--resume" in lines[0]
    assert [p.name for p in list_checkpoints(output / "checkpoints")] == ["step-00000004", "step-00000005"]
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    seconds = [json.loads((path / STATE_FILE).read_text())["seconds"]
               for path in list_checkpoints(output / "checkpoints")]
    assert 0 < seconds[0] < seconds[1]  # the training time of the steps each checkpoint holds
    monkeypatch.undo()
    assert demvae(train_args(corpus, output, "--resume")) == 0
    assert "step-00000005 (step 5)." in printed(capsys)[0]  # resumed, not started over
    assert same_weights(checkpoint_weights(output), checkpoint_weights(finished_run))
    newest = list_checkpoints(output / "checkpoints")[-1]
    assert json.loads((newest / STATE_FILE).read_text())["seconds"] > seconds[1]  # the first start's time counted


def test_ctrl_c_outside_training_is_one_line_too(corpus, tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(preparation, "load_training_corpus", interrupted)
    assert demvae(train_args(corpus, tmp_path / "out")) == 130
    assert stderr_lines(capsys) == ["demvae train: interrupted"]


@pytest.mark.slow
def test_a_real_sigint_to_the_command_then_resume(finished_run, corpus, tmp_path):
    """The signal from outside, as a terminal's Ctrl-C sends it: exit status 130, one line, no traceback."""
    output, log = tmp_path / "interrupted", tmp_path / "log"
    with open(log, "w") as handle:
        command = [sys.executable, "-m", "demvae", *train_args(corpus, output, "--max-steps", "99999")]
        process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=handle)
        deadline = time.time() + 240
        while time.time() < deadline and not list_checkpoints(output / "checkpoints") and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    err = log.read_text()
    last = [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert "Traceback" not in err and last.startswith("demvae train: interrupted at step"), err[-2000:]
    step = int(last.split("interrupted at step ")[1].split(";")[0])
    assert list_checkpoints(output / "checkpoints")[-1].name == f"step-{step:08d}"
    assert demvae(train_args(corpus, output, "--resume", "--max-steps", str(step + 3))) == 0
