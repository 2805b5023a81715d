"""A dialog model's two stages in one `demvae train` run (issue 30): stage 2 freezes the response VAE and its prior
and starts from the best stage-1 weights; an interrupted stage 2 resumes exactly; 2 processes train what 1 does; bad
settings fail before any work; and on dialogs whose response type follows from the context, the policy learns the
gold responses' actions."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_RUN, error_lines
from datasets import DatasetDict
from demvae.arguments import TrainingArguments
from demvae.checkpoints import list_checkpoints
from demvae.cli import build_parser
from demvae.cli import main as demvae
from demvae.dialog_preparation import build_dialog_run, dialog_config
from demvae.loading import load_model_and_tokenizer
from demvae.preparation import with_validation_split
from demvae.train import resolve_settings
from demvae.trainer import DEMVAETrainer
from dialog_helpers import synthetic_dialogs, synthetic_tokenizer, tiny_dialog_model, write_smd_files
from safetensors.torch import load_file
from sklearn.metrics import homogeneity_score
from test_training import final_weights, max_difference, trained_in_three_layouts

from modeling_demvae.data import default_data_dir
from modeling_demvae.dialog_data import DialogCollator, tokenize_dialogs

TINY_DIALOG = ["--model-type", "demvae_dialog", "--embed-size", "16", "--encoder-hidden-size", "16",
               "--decoder-hidden-size", "16", "--num-groups", "2", "--num-components", "3", "--latent-size", "2",
               "--max-sentence-length", "16", "--utterance-hidden-size", "8", "--context-hidden-size", "16",
               "--policy-hidden-size", "16", "--attention-size", "8", *TINY_RUN]
TWO_STAGES = ["--max-steps", "24", "--eval-every", "6", "--freeze-step", "12"]


@pytest.fixture(scope="module")
def smd_folder(tmp_path_factory) -> str:
    return write_smd_files(tmp_path_factory.mktemp("smd"))


def dialog_data(tokenizer, sizes=(120, 24), seed: int = 1) -> DatasetDict:
    splits = {name: synthetic_dialogs(size, seed=seed + index)
              for index, (name, size) in enumerate(zip(("train", "validation", "test"), sizes))}
    return tokenize_dialogs(DatasetDict(splits), tokenizer, max_response_length=12, max_utterance_length=12)


def dialog_trainer(output_dir, model, tokenizer, data, **arguments) -> DEMVAETrainer:
    args = TrainingArguments(**{"output_dir": str(output_dir), "batch_size": 8, "report_to": "none",
                                "mixed_precision": "no", "learning_rate": 0.01, **arguments})
    return DEMVAETrainer(model, tokenizer, data["train"], data["validation"], args)


def response_vae_weights(model) -> dict[str, torch.Tensor]:
    return {name: weight.detach().clone() for name, weight in model.response_vae.state_dict().items()}


# ----- the switch -----


def test_stage_two_starts_from_the_best_stage_one_model_and_leaves_the_response_vae_unchanged(tmp_path,
                                                                                              monkeypatch):
    tokenizer = synthetic_tokenizer()
    model = tiny_dialog_model(len(tokenizer), response={"dropout": 0.3})
    trainer = dialog_trainer(tmp_path, model, tokenizer, dialog_data(tokenizer), max_steps=20, eval_every=4,
                             freeze_step=10)
    at_switch = {}
    switch = DEMVAETrainer._switch_to_stage_two

    def recorded_switch(self, progress):
        at_switch["best stage 1"] = load_file(tmp_path / "model.safetensors")  # the export of the best validation
        at_switch["best step"], at_switch["step"] = self.state.best_step, self.state.step
        switch(self, progress)
        at_switch["response vae"] = response_vae_weights(model)
        at_switch["context side"] = {name: weight.detach().clone() for name, weight in model.named_parameters()
                                     if not name.startswith("response_vae.")}

    monkeypatch.setattr(DEMVAETrainer, "_switch_to_stage_two", recorded_switch)
    state = trainer.train()

    assert state.stage == 2 and state.stage_switch_step == at_switch["step"] == 10
    assert at_switch["best step"] in (4, 8, 10)  # validations every 4 steps and at the switch
    exported = {name.removeprefix("response_vae."): weight for name, weight in at_switch["best stage 1"].items()
                if name.startswith("response_vae.")}  # tied copies (the lm_head) are stored once
    assert exported.keys() == at_switch["response vae"].keys() - {"lm_head.weight"}
    for name, weight in exported.items():  # the best stage-1 weights were reloaded ...
        assert torch.equal(at_switch["response vae"][name], weight), name
    for name, weight in response_vae_weights(model).items():  # ... and stage 2 left every one of them as it was
        assert torch.equal(weight, at_switch["response vae"][name]), name
    changed = [name for name, weight in model.named_parameters() if not name.startswith("response_vae.")
               and not torch.equal(weight, at_switch["context side"][name])]
    assert {name.split(".")[0] for name in changed} >= {"context_encoder", "policy_network", "decoder", "attention"}
    trained = {id(weight) for group in trainer.optimizer.param_groups for weight in group["params"]}
    assert trained == {id(weight) for name, weight in model.named_parameters() if not name.startswith("response_vae.")}
    assert not model.response_vae.training  # no dropout in the frozen VAE, whatever train() was called with
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    assert summary["stage"] == 2 and summary["stage_switch_step"] == 10 and summary["step"] == state.best_step > 10


# ----- resume, processes -----


@pytest.mark.slow
def test_resume_mid_stage_two_equals_an_uninterrupted_run(smd_folder, tmp_path, monkeypatch, capsys):
    run = ["train", "--dataset", smd_folder, *TINY_DIALOG, *TWO_STAGES, "--dropout", "0.3", "--checkpoint-every", "2"]
    assert demvae([*run, "--output-dir", str(tmp_path / "uninterrupted")]) == 0
    monkeypatch.setattr(DEMVAETrainer, "_stop_requested", lambda self: self.state.step == 16)  # Ctrl-C at step 16
    assert demvae([*run, "--output-dir", str(tmp_path / "interrupted")]) == 130
    checkpoint = list_checkpoints(tmp_path / "interrupted" / "checkpoints")[-1]
    record = json.loads((checkpoint / "trainer_state.json").read_text())["trainer"]
    assert (record["step"], record["stage"], record["stage_switch_step"]) == (16, 2, 12)
    monkeypatch.undo()
    assert demvae([*run, "--output-dir", str(tmp_path / "interrupted"), "--resume"]) == 0
    assert "Resumed from" in capsys.readouterr().out
    resumed, uninterrupted = final_weights(tmp_path / "interrupted"), final_weights(tmp_path / "uninterrupted")
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
    exported = [load_file(tmp_path / name / "model.safetensors") for name in ("interrupted", "uninterrupted")]
    assert all(torch.equal(exported[0][name], exported[1][name]) for name in exported[1])


@pytest.mark.slow
def test_two_gloo_processes_train_the_dialog_model_of_one_process(smd_folder, tmp_path):
    """Both stages: q_bar over both processes' responses in stage 1, each response's noise drawn for the whole batch
    in both, the contexts of each process padded to its own longest (which masking makes no difference). The
    tolerance is 1e-4: the attention pooling's first bias gets gradients near zero, whose rounding Adam's
    normalisation turns into steps of up to 2e-5 over the 12 stage-2 steps (every other weight is within 4e-6)."""
    run = ["train", "--dataset", smd_folder, *TINY_DIALOG, *TWO_STAGES, "--variant", "dem", "--dispersion-weight",
           "0.8", "--use-mutual-information", "--dropout", "0"]
    two, one, half = trained_in_three_layouts(run, tmp_path)
    assert max_difference(two, one) < 1e-4
    assert max_difference(half, one) > 1e-2  # another batch layout ends elsewhere: the comparison can fail
    summaries = [json.loads((tmp_path / name / "training_summary.json").read_text()) for name in ("two", "one")]
    assert summaries[0]["stage_switch_step"] == summaries[1]["stage_switch_step"] == 12
    for term, value in summaries[1]["validation"].items():
        assert summaries[0]["validation"][term] == pytest.approx(value, rel=1e-5, abs=1e-5), term


def test_the_switch_validates_stage_one_when_no_validation_came_before(tmp_path):
    tokenizer = synthetic_tokenizer()
    model = tiny_dialog_model(len(tokenizer))
    state = dialog_trainer(tmp_path, model, tokenizer, dialog_data(tokenizer), max_steps=8, eval_every=100,
                           freeze_step=5).train()
    assert (state.stage, state.stage_switch_step, state.best_step) == (2, 5, 8)


def test_gradient_accumulation_trains_the_dialog_model_of_one_big_batch(tmp_path):
    """Both stages with 4 micro-batches = 1 batch (dropout 0): the contexts of each micro-batch keep the batch's
    padding, which masking makes no difference; with other batches the weights end elsewhere."""
    tokenizer = synthetic_tokenizer()
    data = dialog_data(tokenizer)
    final = {}
    for name, arguments in (("big", {}), ("accumulated", {"gradient_accumulation_steps": 4}),
                            ("other batches", {"seed": 1})):
        model = tiny_dialog_model(len(tokenizer), response={"dropout": 0.0})
        dialog_trainer(tmp_path / name, model, tokenizer, data, max_steps=16, eval_every=8, freeze_step=8,
                       **arguments).train()
        final[name] = dict(model.state_dict())
    assert max_difference(final["accumulated"], final["big"]) < 1e-4
    assert max_difference(final["other batches"], final["big"]) > 1e-2


# ----- presets and corpora -----


@pytest.mark.parametrize("preset, variant, dispersion_weight, freeze_step", [
    ("smd-dgm-vae-mi-dialog", "dem", 0.5, 7000), ("smd-gm-vae-dialog", "dem", 0.0, 7000),
    ("smd-di-vae-dialog", "discrete", None, 6000)])
def test_a_dialog_preset_names_its_corpus_and_the_reference_layout(preset, variant, dispersion_weight, freeze_step):
    settings = resolve_settings(build_parser().parse_args(["train", "--config", preset]))
    assert (settings["dataset"], settings["model_type"]) == ("smd", "demvae_dialog")
    config = dialog_config(settings, vocab_size=10_000)
    response = config.response_config
    assert (response.variant, response.num_groups, response.num_components) == (variant, 3, 5)
    assert response.use_mutual_information
    if dispersion_weight is not None:
        assert (response.dispersion_weight, response.latent_size) == (dispersion_weight, 16)
    assert (config.utterance_hidden_size, config.context_hidden_size, config.consistency_weight,
            config.context_turns) == (256, 512, 0.1, 30)
    args = TrainingArguments(**{k: v for k, v in settings.items() if k in TrainingArguments.__annotations__})
    assert (args.freeze_step, args.batch_size, args.max_grad_norm) == (freeze_step, 30, 3.0)


@pytest.mark.slow
def test_the_dialog_preset_trains_on_smd_with_nothing_else(tmp_path, capsys):
    """`demvae train --config smd-dgm-vae-mi-dialog` finds SMD by itself (here with a tiny model and 4 steps)."""
    smd = Path(default_data_dir()) / "smd"
    if not smd.is_dir():
        pytest.skip(f"SMD is not at {smd}: set DEMVAE_DATA_DIR to the folder holding smd/")
    tiny = [option for option in TINY_DIALOG if option not in ("--model-type", "demvae_dialog")]
    assert demvae(["train", "--config", "smd-dgm-vae-mi-dialog", *tiny, "--max-steps", "4", "--eval-every", "2",
                   "--freeze-step", "2", "--eval-batch-size", "400", "--output-dir", str(tmp_path / "smd")]) == 0
    summary = json.loads((tmp_path / "smd" / "training_summary.json").read_text())
    assert summary["data"]["sources"]["dataset"] == "smd" and summary["stage_switch_step"] == 2
    assert summary["data"]["train"]["sentences"] == 10_308  # every response of SMD's training dialogs


def test_a_dialog_model_starts_from_a_sentence_model(tmp_path, smd_folder, capsys):
    """--init-from a sentence model: the response VAE starts as it (its tokenizer, with the speakers added as special
    tokens and their embeddings grown, and the chat template), the context side new; then both stages train."""
    sentence_dir = tmp_path / "sentences"
    assert demvae(["train", *TINY, "--max-steps", "4", "--eval-every", "2", "--output-dir", str(sentence_dir)]) == 0
    sentence_model, sentence_tokenizer = load_model_and_tokenizer(sentence_dir)
    args = build_parser().parse_args(["train", "--model-type", "demvae_dialog", "--dataset", smd_folder,
                                      "--init-from", str(sentence_dir)])
    model, tokenizer, data = build_dialog_run(args, resolve_settings(args), with_validation_split)
    assert len(tokenizer) == len(sentence_tokenizer) + 2 == model.config.vocab_size
    assert tokenizer.convert_tokens_to_ids(["<usr>", "<sys>"]) == [len(sentence_tokenizer), len(sentence_tokenizer) + 1]
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False).startswith("<s> <usr>")
    assert data["train"][0]["input_ids"][1] in tokenizer.convert_tokens_to_ids(["<usr>", "<sys>"])
    grown = model.response_vae.state_dict()
    for name, weight in sentence_model.state_dict().items():
        assert torch.equal(grown[name][:len(weight)], weight), name  # the old rows (and every other weight) kept

    run = ["train", "--dataset", smd_folder, "--model-type", "demvae_dialog", "--init-from", str(sentence_dir),
           *TINY_RUN, "--max-steps", "6", "--eval-every", "2", "--freeze-step", "2", "--output-dir",
           str(tmp_path / "dialog")]
    assert demvae(run) == 0
    assert f"Fine-tuning {sentence_dir}" in capsys.readouterr().out
    summary = json.loads((tmp_path / "dialog" / "training_summary.json").read_text())
    assert summary["base_model_folder"] == "sentences" and summary["stage"] == 2


# ----- bad settings -----


@pytest.mark.parametrize("argv, expected", [
    (["--freeze-step", "30"], r"--freeze-step 30 must be below --max-steps 24"),
    (["--dataset", "ptb"], r"--dataset ptb holds sentences, not dialogs"),
    (["--supervise", "intent"], r"--supervise does nothing here: a dialog model's components are its latent actions"),
    (["--context-turns", "0"], r"DEMVAEDialogConfig.context_turns must be a positive integer, got 0"),
    (["--variant", "vae"], r"response_config.variant must be 'dem' or 'discrete'"),
], ids=["freeze-after-the-end", "sentence-corpus", "supervise", "no-context", "variant-without-actions"])
def test_bad_dialog_settings_are_one_line_before_any_work(smd_folder, tmp_path, capsys, argv, expected):
    status = demvae(["train", "--dataset", smd_folder, *TINY_DIALOG, *TWO_STAGES, *argv,
                     "--output-dir", str(tmp_path / "out")])
    lines = error_lines(capsys.readouterr().err)
    assert status != 0 and len(lines) == 1, lines
    assert lines[0].startswith("demvae train: error: ") and re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_dialog_options_on_a_sentence_model_are_refused(tmp_path, capsys):
    for option in (["--freeze-step", "5"], ["--context-hidden-size", "8"]):
        assert demvae(["train", *option, "--output-dir", str(tmp_path / "out")]) != 0
        line = error_lines(capsys.readouterr().err)[-1]
        assert f"{option[0]} does nothing here: it sets a dialog model; add --model-type demvae_dialog" in line


def test_resume_with_another_switch_step_is_refused(smd_folder, tmp_path, capsys):
    run = ["train", "--dataset", smd_folder, *TINY_DIALOG, "--max-steps", "8", "--eval-every", "4", "--freeze-step",
           "4", "--output-dir", str(tmp_path / "run")]
    assert demvae(run) == 0
    assert demvae([*run, "--resume", "--max-steps", "12", "--freeze-step", "6"]) != 0
    assert "freeze_step 4 -> 6" in error_lines(capsys.readouterr().err)[-1]


# ----- the policy learns the actions -----


def policy_accuracy(model, data) -> tuple[float, torch.Tensor]:
    """The share of responses whose policy argmax equals their posterior c in every group, and those c."""
    batch = DialogCollator(pad_token_id=model.config.pad_token_id)(
        [{"input_ids": ids, "context_ids": context} for ids, context in zip(data["input_ids"], data["context_ids"])])
    model.eval()
    with torch.no_grad():
        posterior_c = model.response_vae.encode(batch["input_ids"], batch["attention_mask"]).component_probs.argmax(-1)
        policy_c = model.policy(batch["context_input_ids"], batch["context_attention_mask"]).argmax(-1)
    return (policy_c == posterior_c).all(-1).float().mean().item(), posterior_c


@pytest.mark.slow
def test_the_policy_predicts_the_action_of_the_response_the_context_calls_for(tmp_path):
    """DI-VAE latent actions, codes only, their batch-prior term at full weight from the start (over 3 seeds they
    carried the response type, where this small a DGM-VAE put every response in one component in 2 of 3, which
    would make the policy trivial); the context side starts from larger weights (initializer_range 0.3) so that its
    turn vectors differ at once."""
    tokenizer = synthetic_tokenizer()
    data = dialog_data(tokenizer, sizes=(600, 100, 200))
    model = tiny_dialog_model(
        len(tokenizer), utterance_hidden_size=32, context_hidden_size=32, policy_hidden_size=32,
        initializer_range=0.3, response={"variant": "discrete", "num_groups": 1, "num_components": 4, "dropout": 0.0,
                                         "use_mutual_information": True, "anneal_component_terms": False,
                                         "kl_annealing_midpoint": 50,
                                         "kl_annealing_slope": 0.05})
    trainer = dialog_trainer(tmp_path, model, tokenizer, data, batch_size=20, max_steps=300, eval_every=50,
                             freeze_step=200, max_grad_norm=5.0)
    assert trainer.train().stage == 2
    accuracy, actions = policy_accuracy(model, data["test"])
    assert accuracy >= 0.9
    # the actions tell the response types apart (seeds 0-2: 0.42 to 0.68): a constant c would make the policy trivial
    assert homogeneity_score(data["test"]["type"], actions[:, 0].tolist()) > 0.3
