"""The learning curve: extra validations that only log, resumable without duplicates, and equal to the model's
terms and I(x; c) computed directly."""

import json
import shutil

import pytest
import torch
from conftest import TINY, tiny_trainer
from demvae.checkpoints import list_checkpoints
from demvae.cli import main as demvae
from demvae.learning_curve import LEARNING_CURVE
from safetensors.torch import load_file

from modeling_demvae.metrics import encode_sentences, mutual_information
from modeling_demvae.synthetic import write_synthetic_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    return str(write_synthetic_corpus(tmp_path_factory.mktemp("corpus"), num_train=120, num_valid=30, num_test=10))


def curve(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / LEARNING_CURVE).read_text().splitlines()]


def run(corpus, folder, *extra) -> None:
    arguments = ["train", "--dataset", corpus, *TINY, "--dropout", "0.3", "--max-steps", "12", "--eval-every", "6",
                 "--checkpoint-every", "4", "--keep-checkpoints", "5", "--output-dir", str(folder), *extra]
    assert demvae(arguments) == 0


def test_the_curve_leaves_the_trajectory_alone_and_a_resumed_run_logs_each_point_once(corpus, tmp_path):
    run(corpus, tmp_path / "plain")
    options = ["--learning-curve-every", "2", "--learning-curve-until", "9"]
    run(corpus, tmp_path / "curve", *options)
    checkpoints = [list_checkpoints(tmp_path / name / "checkpoints") for name in ("plain", "curve")]
    assert [len(found) for found in checkpoints] == [4, 4]
    for plain, with_curve in zip(*checkpoints):
        assert plain.name == with_curve.name  # steps 4, 6, 8, 12: the weights and the selection state of each
        weights = [load_file(folder / "model.safetensors") for folder in (plain, with_curve)]
        assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
        states = [json.loads((folder / "trainer_state.json").read_text())["trainer"] for folder in (plain, with_curve)]
        assert states[0] == states[1]
    summaries = [json.loads((tmp_path / name / "training_summary.json").read_text()) for name in ("plain", "curve")]
    assert summaries[0]["validation"] == summaries[1]["validation"] and summaries[0]["step"] == summaries[1]["step"]
    assert not (tmp_path / "plain" / LEARNING_CURVE).exists()
    whole = curve(tmp_path / "curve")
    assert [point["step"] for point in whole] == [2, 4, 6, 8]
    assert all(len(point["mutual_information"]) == 2 for point in whole)  # two groups

    # killed after logging the points of steps 6 and 8 but before the checkpoint of step 8, in the middle of a line
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "curve", interrupted)
    for checkpoint in list_checkpoints(interrupted / "checkpoints")[1:]:
        shutil.rmtree(checkpoint)
    with (interrupted / LEARNING_CURVE).open("a") as handle:
        handle.write('{"step": 10, "loss"')
    run(corpus, interrupted, *options, "--resume")
    assert curve(interrupted) == whole  # points up to step 4 kept, 6 and 8 logged again, the cut line gone
    run(corpus, tmp_path / "curve", *options, "--overwrite")  # a fresh run in the same folder: the old points go
    assert curve(tmp_path / "curve") == whole


def test_a_curve_point_holds_the_validation_terms_and_the_mutual_information_of_q_c_given_x(tmp_path):
    trainer, model = tiny_trainer(tmp_path, max_steps=6, eval_every=6, learning_curve_every=3,
                                  model_settings={"dropout": 0.2, "initializer_range": 1.0})
    trainer.train()
    points = [json.loads(line) for line in (tmp_path / LEARNING_CURVE).read_text().splitlines()]
    assert [point["step"] for point in points] == [3, 6]
    last = points[-1]
    terms = trainer.evaluate()
    assert {key: last[key] for key in terms} == pytest.approx(terms)
    assert -last["elbo"] > last["nll"] > 0
    probs = encode_sentences(model, trainer.eval_ids).component_probs  # the encoder alone, in eval mode
    assert last["mutual_information"] == pytest.approx(mutual_information(probs).tolist(), rel=1e-5, abs=1e-7)
    assert sum(last["mutual_information"]) > 1e-3  # not the trivial value of a collapsed posterior
