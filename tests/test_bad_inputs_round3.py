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
    from demvae.model_card import CARD_MARKER
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


# ----- 4. nothing accepted silently: files read as what they are -----


def test_a_jsonl_or_csv_train_file_is_read_by_its_text_column(corpus, tmp_path):
    sentences = (corpus / "train.txt").read_text().splitlines()
    files = {"train.jsonl": "".join(json.dumps({"text": s, "id": i}) + "\n" for i, s in enumerate(sentences)),
             "valid.csv": "id,text\n" + "".join(f'{i},"{s}"\n' for i, s in enumerate(sentences[:16]))}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    output = tmp_path / "run"
    assert demvae(["train", "--train-file", str(tmp_path / "train.jsonl"), "--valid-file", str(tmp_path / "valid.csv"),
                   *RUN, "--max-steps", "2", "--output-dir", str(output)]) == 0
    vocabulary = json.loads((output / "tokenizer.json").read_text())["model"]["vocab"]
    words = {word for sentence in sentences for word in sentence.split()}
    assert set(vocabulary) - {"<pad>", "<s>", "</s>", "<unk>"} == words  # no '{"text":' nor '0,the'
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["data"]["train"]["sentences"] == len(sentences)


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory) -> Path:
    from modeling_demvae import build_tokenizer

    folder = tmp_path_factory.mktemp("other_tokenizer")
    build_tokenizer(["an entirely different vocabulary of words"]).save_pretrained(folder)
    return folder / "tokenizer.json"


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def drop_tensor(path: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    del tensors[name]
    save_file(tensors, path, metadata={"format": "pt"})


MISMATCHED_MODELS = {  # how the model folder is changed -> what the one line says
    "another vocabulary": (lambda model, other: shutil.copy(other, model / "tokenizer.json"),
                           "tokenizer.json belongs to another model"),
    "another special id": (lambda model, other: edit_json(model / "config.json", eos_token_id=5),
                           "config.json eos_token_id 5: tokenizer.json belongs to another model"),
    "untied output layer": (lambda model, other: edit_json(model / "config.json", tie_word_embeddings=False),
                            "model.safetensors lacks (lm_head.weight), which would start random"),
    "a weight missing": (lambda model, other: drop_tensor(model / "model.safetensors", "prior.means"),
                         "model.safetensors lacks (prior.means)"),
}


@pytest.mark.parametrize("change", sorted(MISMATCHED_MODELS))
def test_a_model_folder_whose_files_do_not_belong_together_is_refused(finished, other_tokenizer, tmp_path, capsys,
                                                                       change):
    model = copy_of(finished, tmp_path) / "model"
    damage, expected = MISMATCHED_MODELS[change]
    damage(model, other_tokenizer)
    for argv in (["generate", str(model), "--num-samples", "2"], ["inspect", str(model), "--output-dir",
                                                                  str(tmp_path / "pictures")]):
        capsys.readouterr()
        assert demvae(argv) == 2
        line = one_error_line(capsys)
        assert expected in line and str(model) in line, line
    assert not (tmp_path / "pictures").exists()


EDITED_RECORDS = {  # an edit to the newest checkpoint's trainer_state.json that keeps it valid JSON
    "step": lambda record: {**record, "step": 3},
    "best metric": lambda record: {**record, "trainer": {**record["trainer"], "best_metric": 1e9}},
    "a setting": lambda record: {**record, "run": {**record["run"], "processes": 2}},
    "the record's hash removed": lambda record: {key: value for key, value in record.items()
                                                 if key != "record_sha256"},
}


@pytest.mark.parametrize("edit", sorted(EDITED_RECORDS))
def test_an_edited_trainer_state_is_detected_and_the_previous_checkpoint_used(finished, corpus, tmp_path, capsys,
                                                                             edit):
    from safetensors.torch import load_file

    model = copy_of(finished, tmp_path) / "model"
    newest = model / "checkpoints" / "step-00000004"
    expected = load_file(newest / "model.safetensors")
    state = newest / "trainer_state.json"
    state.write_text(json.dumps(EDITED_RECORDS[edit](json.loads(state.read_text())), indent=2))
    capsys.readouterr()
    assert demvae(train_args(corpus, model, "--resume")) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in error_lines(err) if "damaged checkpoint" in line]
    assert len(warnings) == 1 and "step-00000004: trainer_state.json was changed after the run wrote it" in \
        warnings[0], warnings
    assert "step-00000002 (step 2, the newest intact checkpoint)" in out
    resumed = load_file(newest / "model.safetensors")  # step 4 again, from step 2: the uninterrupted run's
    assert resumed.keys() == expected.keys() and all(torch.equal(resumed[k], expected[k]) for k in expected)


# ----- 5. options that would do nothing are refused before any work -----

IDLE_OPTIONS = [
    (["train", "--dataset", "{corpus}", "--labelled-fraction", "0.5"], "--labelled-fraction does nothing here"),
    (["train", "--dataset", "{corpus}", "--variant", "vae", "--dispersion-weight", "0.5"],
     "--dispersion-weight does nothing here: the dispersion term is the mixture prior's, which --variant vae"),
    (["train", "--init-from", "{model}", "--dataset", "{corpus}", "--vocab-size", "50"],
     "--vocab-size does nothing here: --init-from keeps the model's tokenizer; add --extend-vocabulary"),
    (["train", "--dataset", "{corpus}", "--extend-vocabulary"], "--extend-vocabulary does nothing here"),
    (["train", "--dataset", "{corpus}", "--valid-file", "{corpus}/valid.txt"],
     "--valid-file does nothing here: it goes with --train-file"),
    (["generate", "{model}", "--temperature", "0.7"], "--temperature only shapes sampling"),
    (["generate", "{model}", "--top-k", "5"], "--top-k only shapes sampling"),
    (["generate", "{model}", "--top-p", "0.9", "--num-beams", "2"],
     "--top-p only shapes sampling, which greedy decoding does not do; add --do-sample"),
    (["evaluate", "{model}", "--metrics", "control"],
     "--metrics control measures generation by label, and the model at {model} has no attributes"),
    (["evaluate", "{model}", "--metrics", "nll", "control"], "has no attributes; train it with --supervise"),
]


@pytest.mark.parametrize("argv, expected", IDLE_OPTIONS, ids=[" ".join(a[2:]) for a, _ in IDLE_OPTIONS])
def test_an_option_that_would_do_nothing_is_refused_before_any_work(finished, corpus, tmp_path, capsys, monkeypatch,
                                                                    argv, expected):
    from demvae import preparation

    monkeypatch.setattr(preparation, "load_training_corpus", lambda *a: pytest.fail("the corpus was loaded"))
    monkeypatch.setattr("demvae.loading.load_model_and_tokenizer", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.chdir(tmp_path)
    model = finished / "model"
    before = snapshot(finished)
    places = {"corpus": corpus, "model": model}
    assert demvae([part.format(**places) for part in argv]) == 2
    assert expected.format(**places) in one_error_line(capsys)
    assert snapshot(finished) == before and list(tmp_path.iterdir()) == []


# ----- 6. the Python API says what is wrong with its arguments -----


def test_the_model_refuses_mismatched_masks_nan_arguments_and_empty_prompts():
    from conftest import tiny_batch, tiny_model

    model = tiny_model().eval()
    ids, mask = tiny_batch()
    shape = r"attention_mask must have the shape of input_ids, \(3, 6\)"
    attempts = [
        (lambda: model(ids, attention_mask=mask[:, :4]), shape + r", got \(3, 4\)"),
        (lambda: model(ids, attention_mask=mask[:2]), shape + r", got \(2, 6\)"),
        (lambda: model.encode(ids, mask[:, :2]), shape),
        (lambda: model.generate(ids, attention_mask=mask[:, 1:], max_new_tokens=2), shape),
        (lambda: model(ids, attention_mask=mask, kl_weight=float("nan")), "kl_weight must be a finite number >= 0"),
        (lambda: model(ids, attention_mask=mask, kl_weight=-1.0), "kl_weight must be a finite number >= 0"),
        (lambda: model.generate(num_samples=2, do_sample=True, top_p=float("nan")),
         r"generate\(top_p=nan\): top_p must be a finite number"),
        (lambda: model.generate(num_samples=2, repetition_penalty=float("inf")), "repetition_penalty must be a finite"),
        (lambda: model.generate(latent=torch.full((2, model.config.decoder_latent_size), float("nan"))),
         "latent holds NaN or infinite values"),
        (lambda: model.generate(ids, attention_mask=torch.stack([mask[0], torch.zeros_like(mask[1]), mask[2]])),
         r"prompt row\(s\) \[1\] are all padding"),
        (lambda: model.generate(torch.zeros_like(ids), attention_mask=torch.zeros_like(mask)),
         r"prompt row\(s\) \[0, 1, 2\] are all padding"),
    ]
    for attempt, message in attempts:
        with pytest.raises(ValueError, match=message):
            attempt()
    assert model(ids, attention_mask=mask, kl_weight=0.5).loss.isfinite()  # good arguments still work


# ----- 7. sizes are checked before they are allocated -----

ABSURD_SIZES = [
    (["train", "--dataset", "{corpus}", *RUN, "--decoder-hidden-size", "100000", "--embed-size", "100000",
      "--output-dir", "{tmp}/out"], "training a model of"),
    (["train", "--dataset", "{corpus}", *RUN, "--batch-size", "1000000000", "--output-dir", "{tmp}/out"],
     "on batches of 1,000,000,000 sentences needs about"),
    (["train", "--dataset", "{corpus}", *RUN, "--num-samples", "1000000000", "--output-dir", "{tmp}/out"],
     "--num-samples 1000000000 needs about"),
    (["generate", "{model}", "--num-samples", "1000000000"], "--num-samples 1000000000 needs about"),
    (["generate", "{model}", "--num-samples", "10000000", "--num-beams", "1000"],
     "--num-samples 10000000 x --num-beams 1000 needs about"),
    (["evaluate", "{model}", "--batch-tokens", "1000000000000"], "--batch-tokens 1000000000000 with --nll-samples"),
    (["evaluate", "{model}", "--nll-samples", "1000000000000"], "--nll-samples 1000000000000 needs about"),
    (["evaluate", "{model}", "--rppl-samples", "100000000000"], "100,000,000,000 rPPL samples needs about"),
    (["evaluate", "{model}", "--control-samples", "100000000000"], "--control-samples 100000000000 needs about"),
    (["inspect", "{model}", "--samples-per-component", "10000000000"], "--samples-per-component 10000000000 needs"),
]


@pytest.mark.parametrize("argv, expected", ABSURD_SIZES, ids=[" ".join(a[-4:-2] if a[0] == "train" else a[2:])
                                                              for a, _ in ABSURD_SIZES])
def test_a_size_that_cannot_fit_in_memory_is_refused_before_allocation(finished, corpus, tmp_path, capsys,
                                                                       monkeypatch, argv, expected):
    from demvae import preparation

    monkeypatch.setattr(preparation, "load_training_corpus", lambda *a: pytest.fail("the corpus was loaded"))
    monkeypatch.setattr("demvae.loading.load_model_and_tokenizer", lambda *a, **k: pytest.fail("a model was loaded"))
    before = snapshot(finished)
    assert demvae([part.format(corpus=corpus, model=finished / "model", tmp=tmp_path) for part in argv]) == 2
    line = one_error_line(capsys)
    assert expected in line and "GiB of memory, and this machine has" in line and "free; give smaller sizes" in line
    assert snapshot(finished) == before and not (tmp_path / "out" / "model.safetensors").exists()


def test_the_memory_check_passes_what_fits(monkeypatch):
    from demvae import checks

    monkeypatch.setattr(checks, "available_memory", lambda: 2**30)
    checks.check_memory(2**30, "exactly what is free")
    with pytest.raises(ValueError, match=r"one byte more needs about 1.0 GiB of memory, and this machine has 1.0 GiB"):
        checks.check_memory(2**30 + 1, "one byte more")
    assert checks.available_memory() == 2**30
    monkeypatch.undo()
    assert checks.available_memory() > 0  # read from this machine


@pytest.mark.parametrize("command", ["train", "generate", "evaluate", "inspect", "label-components", "reproduce"])
def test_a_thread_count_beyond_the_cores_is_refused_naming_them(finished, capsys, command):
    cores = os.cpu_count()
    argv = {"train": ["train"], "reproduce": ["reproduce"], "label-components": ["label-components",
                                                                                str(finished / "model"), "--labels",
                                                                                "mode"]}.get(command,
                                                                                            [command, str(finished)])
    with pytest.raises(SystemExit) as exit_:
        demvae([*argv, "--num-threads", str(4 * cores + 1)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"--num-threads: must be at most {4 * cores} (4 x this machine's {cores} cores), got {4 * cores + 1}" in err
    assert demvae(["train", "--config", "ptb-vae", "--num-threads", str(4 * cores), "--max-steps", "0"]) == 2
    assert "max_steps must be a positive integer" in capsys.readouterr().err  # the most threads pass


# ----- 8. damaged files of an evaluation are named, and start-up is interruptible -----


def test_a_damaged_evaluation_progress_file_is_named_in_one_line(finished, corpus, tmp_path, capsys):
    run = ["evaluate", str(finished / "model"), "--dataset", str(corpus), "--metrics", "nll", "--output",
           str(tmp_path / "eval.json"), "--resume"]
    for content in (b"{truncated", b"[1, 2]", b'{"settings": {}}', b"\xff\xfe"):
        (tmp_path / "eval.json.partial").write_bytes(content)
        capsys.readouterr()
        assert demvae(run) == 2
        line = one_error_line(capsys)
        assert f"the evaluation's progress file {tmp_path / 'eval.json.partial'} is damaged" in line, line
        assert "delete it (and eval.json.partial.*.pt beside it), or run without --resume" in line
    assert not (tmp_path / "eval.json").exists()


def test_a_damaged_language_model_checkpoint_is_named_in_one_line(finished, corpus, tmp_path, capsys, monkeypatch):
    from test_evaluate_cli import interrupt_once

    from modeling_demvae.metrics import reverse_ppl

    run = ["evaluate", str(finished / "model"), "--dataset", str(corpus), "--metrics", "rppl", "--rppl-samples", "20",
           "--rppl-max-epochs", "3", "--no-progress", "--output", str(tmp_path / "eval.json")]
    interrupt_once(monkeypatch, reverse_ppl, "language_model_perplexity", at_call=2)
    assert demvae(run) == 130
    checkpoint = tmp_path / "eval.json.partial.rppl.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    capsys.readouterr()
    assert demvae([*run, "--resume"]) == 2
    line = one_error_line(capsys)
    assert f"the language model checkpoint {checkpoint} is damaged" in line and "delete it" in line, line


def test_a_damaged_cached_classifier_is_named_not_a_safetensors_error(tmp_path):
    from modeling_demvae.metrics.control import cached_classifier, classifier_key

    texts, labels = ["a cat sat", "a dog ran", "a cat ran", "a dog sat"] * 2, ["cat", "dog", "cat", "dog"] * 2
    classifier, cached = cached_classifier(texts, labels, label_names=["cat", "dog"], cache_dir=tmp_path)
    assert not cached
    folder = tmp_path / classifier_key(texts, labels, ["cat", "dog"])
    for name, content in (("classifier.safetensors", b"not safetensors"), ("classifier.json", b"{")):
        shutil.rmtree(folder)
        cached_classifier(texts, labels, label_names=["cat", "dog"], cache_dir=tmp_path)
        (folder / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"the cached classifier {folder} is damaged .*; delete that folder and it "
                                             "is trained again"):
            cached_classifier(texts, labels, label_names=["cat", "dog"], cache_dir=tmp_path)


def test_label_components_refuses_a_read_only_model_before_any_work(finished, tmp_path, capsys, monkeypatch):
    """Emulated with a folder that refuses new files, as a read-only one does (root writes into read-only folders)."""
    import tempfile

    from demvae import component_labels

    monkeypatch.setattr(component_labels, "label_components", lambda *a: pytest.fail("the work began"))
    model = copy_of(finished, tmp_path) / "model"
    before = snapshot(model)

    def read_only(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert demvae(["label-components", str(model), "--labels", "mode"]) == 2
    line = one_error_line(capsys)
    assert f"{model} is read-only, and label-components writes the labels into its config.json" in line, line
    assert snapshot(model) == before


def test_ctrl_c_while_the_command_starts_is_one_line(capsys, monkeypatch):
    from demvae import cli

    def interrupted(name, package=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)  # while the subcommands' modules load
    assert demvae(["train", "--help"]) == 130
    err = capsys.readouterr().err
    assert err == "demvae: interrupted\n"
