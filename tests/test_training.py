"""The training loop: distributed and accumulated steps equal one big step, crash-safe resume, divergence stops,
fine-tuning, and the main job's interpretability."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from conftest import CHECKPOINT_FILES, TINY, TINY_RUN, subprocess_env, tiny_trainer
from datasets import Dataset
from demvae.checkpoints import CHECKPOINT_PATTERN, list_checkpoints
from demvae.cli import main as demvae
from demvae.reporting import component_homogeneity
from demvae.trainer import DEMVAETrainer, TrainingDiverged, adam
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerFast

from modeling_demvae import DEMVAEForGeneration
from modeling_demvae.data import tokenize_corpus
from modeling_demvae.synthetic import generate_sentences, synthetic_corpus, write_synthetic_corpus

DETERMINISTIC = ["--variant", "rnnlm", "--dropout", "0"]  # no sampling noise: any batch layout gives the same math
# batch statistics (q_bar in agg_ckl) and sampling noise: the same math only when both are the whole batch's
DGM_VAE_MI = ["--variant", "dem", "--dispersion-weight", "0.8", "--use-mutual-information", "--dropout", "0"]



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    return str(write_synthetic_corpus(tmp_path_factory.mktemp("corpus"), num_train=240, num_valid=40, num_test=40))


def final_weights(output_dir) -> dict[str, torch.Tensor]:
    return load_file(list_checkpoints(Path(output_dir) / "checkpoints")[-1] / "model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- the optimizer -----


def test_the_fused_adam_makes_the_textbook_adam_update():
    """Three steps of the trainer's optimizer against Adam written out (bias-corrected moments, eps outside)."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4, 3))
    expected, first, second = weight.detach().clone(), torch.zeros(4, 3), torch.zeros(4, 3)
    optimizer = adam([weight], learning_rate=0.01)
    for step in range(1, 4):
        gradient = torch.randn(4, 3)
        weight.grad = gradient.clone()
        optimizer.step()
        first, second = 0.9 * first + 0.1 * gradient, 0.999 * second + 0.001 * gradient**2
        corrected_first, corrected_second = first / (1 - 0.9**step), second / (1 - 0.999**step)
        expected -= 0.01 * corrected_first / (corrected_second.sqrt() + 1e-8)
    assert optimizer.param_groups[0]["fused"]
    torch.testing.assert_close(weight.detach(), expected, rtol=1e-5, atol=1e-6)


# ----- distributed and accumulated steps -----


def launch_two_processes(arguments: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    """`accelerate launch` of `demvae` (or of a `script` taking its arguments) on 2 CPU processes (gloo)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), *([script] if script else ["-m", "demvae"])]
    result = subprocess.run([*launch, *arguments], env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on 2 process(es) (DistributedType.MULTI_CPU" in result.stdout
    return result


def trained_in_three_layouts(run: list[str], tmp_path) -> tuple[dict, ...]:
    """The last checkpoint's weights of `demvae train` `run` on 2 gloo processes, on 1, and on 1 with batches of 4
    (another trajectory, which a comparison must be able to tell apart)."""
    launch_two_processes([*run, "--output-dir", str(tmp_path / "two")])
    assert demvae([*run, "--output-dir", str(tmp_path / "one")]) == 0
    assert demvae([*run, "--output-dir", str(tmp_path / "half"), "--batch-size", "4"]) == 0
    return tuple(final_weights(tmp_path / name) for name in ("two", "one", "half"))


PER_SLICE_STATISTICS = """import sys
from demvae.cli import main
from demvae.trainer import DEMVAETrainer

DEMVAETrainer._aggregate_component_probs = lambda self, parts: None  # each slice takes its own q_bar
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_weights_of_one_process(corpus, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo, each half of every batch) = 1 process with the same batch."""
    run = ["train", "--dataset", corpus, *TINY, *DETERMINISTIC, "--max-steps", "12", "--eval-every", "6"]
    two, one, half = trained_in_three_layouts(run, tmp_path)
    assert max_difference(two, one) < 1e-5
    assert max_difference(half, one) > 1e-3  # another batch layout ends elsewhere: the comparison can fail


@pytest.mark.slow
def test_two_gloo_processes_train_the_dgm_vae_of_one_process(corpus, tmp_path):
    """DGM-VAE + MI: q_bar over both processes' sentences and each sentence's noise drawn for the whole batch, so 2
    processes = 1 process, validation included; with each process's own q_bar the weights end apart."""
    run = ["train", "--dataset", corpus, *TINY, *DGM_VAE_MI, "--max-steps", "12", "--eval-every", "6"]
    launch_two_processes([*run, "--output-dir", str(tmp_path / "two")])
    script = tmp_path / "per_slice_statistics.py"
    script.write_text(PER_SLICE_STATISTICS)
    launch_two_processes([*run, "--output-dir", str(tmp_path / "per_process")], script=str(script))
    assert demvae([*run, "--output-dir", str(tmp_path / "one")]) == 0
    two, one, per_process = (final_weights(tmp_path / name) for name in ("two", "one", "per_process"))
    assert max_difference(two, one) < 1e-5
    assert max_difference(per_process, one) > 1e-4  # ten times the tolerance (about 7e-4)
    summaries = [json.loads((tmp_path / name / "training_summary.json").read_text()) for name in ("two", "one")]
    assert summaries[0]["step"] == summaries[1]["step"]
    for term, value in summaries[1]["validation"].items():
        assert summaries[0]["validation"][term] == pytest.approx(value, rel=1e-5, abs=1e-5), term


@pytest.mark.parametrize("settings", [DETERMINISTIC, DGM_VAE_MI], ids=["rnnlm", "dgm-vae-mi"])
def test_gradient_accumulation_equals_one_big_batch(corpus, tmp_path, monkeypatch, settings):
    run = ["train", "--dataset", corpus, *TINY, *settings, "--max-steps", "12", "--eval-every", "12"]
    assert demvae([*run, "--output-dir", str(tmp_path / "big")]) == 0
    assert demvae([*run, "--output-dir", str(tmp_path / "acc"), "--gradient-accumulation-steps", "4"]) == 0
    assert max_difference(final_weights(tmp_path / "big"), final_weights(tmp_path / "acc")) < 1e-5
    if settings is DGM_VAE_MI:  # the comparison can fail: each micro-batch's own q_bar is another objective
        monkeypatch.setattr(DEMVAETrainer, "_aggregate_component_probs", lambda self, parts: None)
        assert demvae([*run, "--output-dir", str(tmp_path / "slices"), "--gradient-accumulation-steps", "4"]) == 0
        assert max_difference(final_weights(tmp_path / "big"), final_weights(tmp_path / "slices")) > 1e-4


def test_logged_terms_are_those_of_the_whole_batch(tmp_path, monkeypatch):
    """The training bar and the tracker show the whole batch's terms: 4 micro-batches log what 1 batch logs."""
    steps = {}
    for accumulation in (1, 4):
        trainer, _ = tiny_trainer(tmp_path / str(accumulation), gradient_accumulation_steps=accumulation,
                                  model_settings={"dropout": 0.0, "initializer_range": 1.0})
        trainer._batches = trainer._train_batches()
        steps[accumulation] = trainer._training_step()
    for term in ("loss", "nll", "zkl", "dispersion", "agg_ckl", "mi", "elbo", "grad_norm"):
        assert steps[4][term] == pytest.approx(steps[1][term], rel=1e-5), term
    monkeypatch.setattr(DEMVAETrainer, "_aggregate_component_probs", lambda self, parts: None)
    trainer, _ = tiny_trainer(tmp_path / "per_slice", gradient_accumulation_steps=4,
                              model_settings={"dropout": 0.0, "initializer_range": 1.0})
    trainer._batches = trainer._train_batches()
    assert trainer._training_step()["agg_ckl"] > steps[1]["agg_ckl"] + 0.01  # a mean of 2-sentence estimates


def component_probs_of_one_step(trainer, model) -> tuple[torch.Tensor, torch.Tensor]:
    """q(c|x) of a 2-micro-batch step's sentences as the pass for q_bar saw them, and as the training forwards did."""
    seen = []
    model.posterior.register_forward_hook(lambda module, inputs, output: seen.append(output.component_probs.detach()))
    trainer._batches = trainer._train_batches()
    trainer._training_step()
    assert len(seen) == 4
    return torch.cat(seen[:2]), torch.cat(seen[2:])


def test_the_pass_for_q_bar_draws_the_dropout_masks_of_the_training_forwards(tmp_path):
    dropout = {"gradient_accumulation_steps": 2, "model_settings": {"dropout": 0.5}}
    first_pass, forwards = component_probs_of_one_step(*tiny_trainer(tmp_path / "streams", **dropout))
    torch.testing.assert_close(first_pass, forwards)
    trainer, model = tiny_trainer(tmp_path / "running", **dropout)
    trainer._dropout_stream = lambda index: nullcontext()  # the masks of the running global stream instead
    first_pass, forwards = component_probs_of_one_step(trainer, model)
    assert not torch.allclose(first_pass, forwards)  # the comparison can fail: dropout is on


# ----- crash safety -----


def incomplete_checkpoints(folder: Path) -> list[str]:
    """Names of visible step-N folders that lack a file of a complete checkpoint (a vanishing one is fine)."""
    bad = []
    for path in list(folder.iterdir()) if folder.is_dir() else []:
        try:
            if CHECKPOINT_PATTERN.match(path.name) and not CHECKPOINT_FILES <= set(os.listdir(path)):
                bad.append(path.name)
        except FileNotFoundError:  # pruned between the two listings: renamed away whole, never half-deleted
            pass
    return bad


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(corpus, tmp_path):
    run = ["train", "--dataset", corpus, *TINY, "--dropout", "0.3", "--max-steps", "200", "--eval-every", "50",
           "--checkpoint-every", "10", "--keep-checkpoints", "2"]
    killed = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")  # a file, not a pipe: progress bars would fill a pipe and block
    process = subprocess.Popen([sys.executable, "-m", "demvae", *run, "--output-dir", str(killed)],
                               env=subprocess_env(), stdout=log, stderr=log)
    checkpoints, seen_incomplete, deadline = killed / "checkpoints", [], time.time() + 240
    while time.time() < deadline and process.poll() is None:
        seen_incomplete += incomplete_checkpoints(checkpoints)
        steps = [int(CHECKPOINT_PATTERN.match(p.name).group(1)) for p in list_checkpoints(checkpoints)]
        if steps and max(steps) >= 60:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait(timeout=60)
    log.close()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    assert not seen_incomplete and not incomplete_checkpoints(checkpoints)
    interrupted_at = int(CHECKPOINT_PATTERN.match(list_checkpoints(checkpoints)[-1].name).group(1))
    assert 60 <= interrupted_at < 200

    assert demvae([*run, "--output-dir", str(killed), "--resume"]) == 0
    assert demvae([*run, "--output-dir", str(tmp_path / "uninterrupted")]) == 0
    resumed, uninterrupted = final_weights(killed), final_weights(tmp_path / "uninterrupted")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    exported = [load_file(folder / "model.safetensors") for folder in (killed, tmp_path / "uninterrupted")]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[1])
    assert not [p for p in checkpoints.iterdir() if not CHECKPOINT_PATTERN.match(p.name)]  # leftovers cleaned


# ----- divergence -----


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer, model = tiny_trainer(tmp_path, max_steps=30, eval_every=5)
    calls = []

    def poison(module, inputs, output):  # from the 13th training forward on, the logits are NaN
        calls.append(module.training)
        return output * float("nan") if sum(calls) > 12 else output

    model.lm_head.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match=r"step 13: the loss is not finite \(loss=nan") as error:
        trainer.train()
    assert "\n" not in str(error.value) and "step-00000010" in str(error.value)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000005", "step-00000010"]
    saved = load_file(tmp_path / "checkpoints" / "step-00000010" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())
    exported = DEMVAEForGeneration.from_pretrained(tmp_path)
    assert all(torch.isfinite(p).all() for p in exported.parameters())


def test_plateau_decays_the_learning_rate_and_stops_early(tmp_path):
    trainer, _ = tiny_trainer(tmp_path, lr_decay=0.5, lr_decay_patience=2, early_stopping_patience=5)
    history = []
    for elbo in (-10, -11, -12, -9, -9.5, -9.6, -9.7, -9.8, -9.9):
        trainer.state.step += 1
        trainer._after_validation({"elbo": elbo, "loss": -elbo})
        history.append((trainer.optimizer.param_groups[0]["lr"], trainer.state.stopped_early))
    lrs, stopped = zip(*history, strict=True)
    assert lrs == (1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4)
    assert stopped == (False,) * 8 + (True,)
    assert (trainer.state.best_metric, trainer.state.best_step) == (-9, 4)
    assert json.loads((tmp_path / "training_summary.json").read_text())["step"] == 4  # the best model is on disk
    loss_trainer, _ = tiny_trainer(tmp_path / "loss", selection_metric="loss")
    for step, loss in enumerate((5.0, 4.0, 6.0), start=1):
        loss_trainer.state.step = step
        loss_trainer._after_validation({"elbo": 0.0, "loss": loss})
    assert loss_trainer.state.best_step == 2  # the training objective is minimized


# ----- fine-tuning -----


def validation_nll(model_dir, texts) -> float:
    """Mean reconstruction NLL (nats per sentence) of `texts` under the saved model, on a fixed random stream."""
    model = DEMVAEForGeneration.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    ids = tokenize_corpus(Dataset.from_dict({"text": texts}), tokenizer, max_length=16)["input_ids"]
    input_ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in ids], batch_first=True)
    torch.manual_seed(0)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=input_ids.ne(0)).nll.item()


@pytest.mark.slow
@pytest.mark.parametrize("extend", [False, True])
def test_fine_tuning_lowers_the_new_corpus_validation_nll(tmp_path, extend):
    """A model trained on four sentence types, fine-tuned on the other four, models them better."""
    texts, modes = generate_sentences(1200, seed=7)
    first = [t for t, m in zip(texts, modes, strict=True) if m < 4]
    second = [t for t, m in zip(texts, modes, strict=True) if m >= 4]
    for name, part in (("first", first[:400]), ("second_train", second[:300]), ("second_valid", second[300:360])):
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n")
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert demvae(["train", "--train-file", str(tmp_path / "first.txt"), *TINY, "--max-steps", "60",
                   "--eval-every", "60", "--output-dir", str(base)]) == 0
    tune = ["train", "--init-from", str(base), "--train-file", str(tmp_path / "second_train.txt"), "--valid-file",
            str(tmp_path / "second_valid.txt"), *TINY_RUN, "--max-steps", "40", "--eval-every", "40",
            "--output-dir", str(tuned)] + (["--extend-vocabulary"] if extend else [])
    assert demvae(tune) == 0
    valid = second[300:360]
    assert validation_nll(tuned, valid) < validation_nll(base, valid) - 1.0
    old = json.loads((base / "tokenizer.json").read_text())["model"]["vocab"]
    new = json.loads((tuned / "tokenizer.json").read_text())["model"]["vocab"]
    if extend:  # the new words are appended; every old id keeps its word
        assert len(new) > len(old) and all(new[w] == i for w, i in old.items())
        assert "hello" in new
        assert DEMVAEForGeneration.from_pretrained(tuned).encoder.embedding.num_embeddings == len(new)
    else:
        assert new == old and "hello" not in new


# ----- the main job -----


@pytest.mark.slow
def test_main_job_components_recover_the_synthetic_modes(tmp_path, capsys):
    """`demvae train` with no arguments (1,500 steps, about 1-2 minutes here): DGM-VAE's components sort the test
    sentences by their true type, homogeneity >= 0.8 (0.923 with the default seed; GM-VAE gets 0.613)."""
    assert demvae(["train", "--output-dir", str(tmp_path), "--num-samples", "1"]) == 0
    report = capsys.readouterr().out
    assert "Samples per component" in report and "homogeneity" in report
    model = DEMVAEForGeneration.from_pretrained(tmp_path).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert (model.config.variant, model.config.dispersion_weight, model.config.use_mutual_information) == (
        "dem", 0.8, True)
    test = tokenize_corpus(synthetic_corpus()["test"], tokenizer, max_length=model.config.max_sentence_length)
    assert component_homogeneity(model, test)["mode"]["homogeneity"] >= 0.8
