"""Fine-tuning (`demvae train --init-from`): the KL annealing goes on where the base model's run left it, the run
records its base model, and the default recipe makes the model better on a corpus with other words."""

import json
import math
import random
import re
import shutil

import pytest
import torch
from conftest import tiny_trainer
from datasets import Dataset, DatasetDict
from demvae.arguments import TrainingArguments
from demvae.cli import main as demvae
from demvae.finetuning import base_model_origin
from demvae.model_card import recorded_training_settings
from demvae.trainer import DEMVAETrainer

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, DEMVAETokenizer
from modeling_demvae.data import tokenize_corpus
from modeling_demvae.metrics.likelihood import importance_weighted_nll
from modeling_demvae.synthetic import write_synthetic_corpus

# A second grammar: shopping and errands instead of the synthetic corpus's animals and objects. Only a few
# function words and the punctuation are shared, as between two real corpora.
SECOND_SLOTS = {
    "FOOD": "bread apple cheese soup rice tea coffee cake fish salad".split(),
    "PLACE": "market station office school beach museum bakery airport".split(),
    "DAY": "monday tuesday friday sunday".split(),
    "PERSON": "mom dad teacher doctor neighbor friend".split(),
    "NUMBER": "two three five ten twelve".split(),
}
SECOND_TEMPLATES = [
    "can i buy {NUMBER} {FOOD} at the {PLACE} ?", "we are going to the {PLACE} on {DAY} .",
    "my {PERSON} likes {FOOD} with {FOOD} .", "how much is the {FOOD} at the {PLACE} ?",
    "please call the {PERSON} before {DAY} .", "the {PLACE} opens at {NUMBER} on {DAY} .",
]
RUN = ["--batch-size", "16", "--learning-rate", "0.01", "--num-samples", "0", "--report-to", "none",
       "--num-threads", "1"]
SIZE = ["--embed-size", "16", "--encoder-hidden-size", "16", "--decoder-hidden-size", "16", "--num-groups", "1",
        "--num-components", "6", "--latent-size", "4", "--max-sentence-length", "16",
        "--kl-annealing-midpoint", "20", "--kl-annealing-slope", "0.1"]
BASE_STEPS, STEPS = 150, 60


def second_grammar(num_sentences: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [re.sub(r"\{(\w+)\}", lambda slot: rng.choice(SECOND_SLOTS[slot.group(1)]), rng.choice(SECOND_TEMPLATES))
            for _ in range(num_sentences)]


def annealing_weight(step: int, midpoint: float, slope: float) -> float:
    """The spec's w_t = 1 / (1 + exp(-slope (t - midpoint))), written out."""
    return 1 / (1 + math.exp(-slope * (step - midpoint)))


def fine_tune(base, folder, output_dir, *options, steps=STEPS) -> dict:
    """`demvae train --init-from base` on the second grammar (the README's recipe); the run summary it wrote."""
    assert demvae(["train", "--init-from", str(base), "--train-file", str(folder / "second_train.txt"),
                   "--valid-file", str(folder / "second_valid.txt"), *RUN, "--max-steps", str(steps),
                   "--eval-every", str(steps), "--output-dir", str(output_dir), *options]) == 0
    return json.loads((output_dir / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A model trained on the synthetic corpus, then fine-tuned on the second grammar with the default recipe
    (--extend-vocabulary: the second grammar's words are new)."""
    folder = tmp_path_factory.mktemp("finetuning")
    first = write_synthetic_corpus(folder / "first", num_train=400, num_valid=50, num_test=0)
    (folder / "second_train.txt").write_text("\n".join(second_grammar(400, seed=1)) + "\n")
    (folder / "second_valid.txt").write_text("\n".join(second_grammar(100, seed=2)) + "\n")
    assert demvae(["train", "--dataset", str(first), *SIZE, *RUN, "--max-steps", str(BASE_STEPS),
                   "--eval-every", str(BASE_STEPS), "--output-dir", str(folder / "base")]) == 0
    fine_tune(folder / "base", folder, folder / "tuned", "--extend-vocabulary")
    return folder


def test_default_fine_tuning_beats_the_base_model_and_training_from_scratch(runs):
    """Importance-weighted NLL (nats per sentence, 20 samples) of the second grammar's validation sentences.

    Vocabularies: the second grammar's words are not in the base model's tokenizer. Without --extend-vocabulary
    they would all read <unk>, and the NLL of sentences collapsed to <unk> cannot be compared with that of a model
    that spells the words out. So the recipe extends the vocabulary, and the three models score the same token
    sequences under one tokenizer that covers both corpora, the fine-tuned model's: the base model grown to it
    as fine-tuning grows it (the fine-tuning's starting point), and a model trained from scratch with it, with
    the fine-tuning run's settings and number of steps (and, being new, a KL warm-up from step 0).
    """
    tokenizer = DEMVAETokenizer.from_pretrained(runs / "tuned")
    texts = {name: (runs / f"second_{name}.txt").read_text().splitlines() for name in ("train", "valid")}
    data = tokenize_corpus(DatasetDict({"train": Dataset.from_dict({"text": texts["train"]}),
                                        "validation": Dataset.from_dict({"text": texts["valid"]})}),
                           tokenizer, max_length=16)
    valid = data["validation"]["input_ids"][:]
    assert tokenizer.unk_token_id not in {token for ids in valid for token in ids}  # every word spelled out

    before = DEMVAEForGeneration.from_pretrained(runs / "base")
    before.resize_token_embeddings(len(tokenizer))  # every embedding the vocabulary indexes, as fine-tuning does
    tuned = DEMVAEForGeneration.from_pretrained(runs / "tuned")
    torch.manual_seed(0)
    scratch = DEMVAEForGeneration(DEMVAEConfig.from_dict(before.config.to_dict()))
    settings = json.loads((runs / "tuned" / "training_summary.json").read_text())["training_arguments"]
    args = TrainingArguments(**{**settings, "output_dir": str(runs / "scratch"), "kl_annealing_start": 0})
    assert args.max_steps == STEPS
    DEMVAETrainer(scratch, tokenizer, data["train"], data["validation"], args).train()
    scratch = DEMVAEForGeneration.from_pretrained(runs / "scratch")

    nll = {name: importance_weighted_nll(model, valid, num_samples=20)["nll"]
           for name, model in (("before", before), ("tuned", tuned), ("scratch", scratch))}
    assert nll["tuned"] < nll["before"], nll
    assert nll["tuned"] < nll["scratch"], nll


def test_fine_tuning_continues_the_kl_schedule_and_records_its_base(runs):
    base = json.loads((runs / "base" / "training_summary.json").read_text())
    tuned = json.loads((runs / "tuned" / "training_summary.json").read_text())
    assert base["training_arguments"]["kl_annealing_start"] == 0  # a new model warms up from step 0
    assert base["step"] == base["kl_annealing_step"] == BASE_STEPS
    assert tuned["training_arguments"]["kl_annealing_start"] == BASE_STEPS
    assert tuned["kl_annealing_step"] == BASE_STEPS + tuned["step"] == BASE_STEPS + STEPS
    assert tuned["kl_weight"] == pytest.approx(annealing_weight(BASE_STEPS + STEPS, midpoint=20, slope=0.1))
    assert tuned["base_model_folder"] == "base" and "base_model" not in tuned
    assert str(runs) not in json.dumps(recorded_training_settings(runs / "tuned"))  # what the card shows


def test_a_restarted_warm_up_and_a_base_without_a_record(runs, tmp_path):
    restarted = fine_tune(runs / "base", runs, tmp_path / "restarted", "--kl-annealing-start", "0", steps=2)
    assert restarted["training_arguments"]["kl_annealing_start"] == 0 and restarted["kl_annealing_step"] == 2
    assert restarted["kl_weight"] == pytest.approx(annealing_weight(2, midpoint=20, slope=0.1))

    bare = tmp_path / "bare"  # e.g. a model saved by save_pretrained, or pushed: taken as fully trained
    shutil.copytree(runs / "base", bare, ignore=shutil.ignore_patterns("training_summary.json", "checkpoints"))
    full = fine_tune(bare, runs, tmp_path / "full", steps=2)
    assert full["training_arguments"]["kl_annealing_start"] is None and full["kl_annealing_step"] is None
    assert full["kl_weight"] == 1.0 and full["base_model_folder"] == "bare"
    again = fine_tune(tmp_path / "full", runs, tmp_path / "again", steps=2)  # the fine-tuned model: still full
    assert again["training_arguments"]["kl_annealing_start"] is None and again["kl_weight"] == 1.0


def kl_weights_seen(model) -> list[float]:
    """The kl_weight of every training forward of `model`, as the trainer passes it."""
    seen = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["kl_weight"]) if module.training else None, with_kwargs=True)
    return seen


def test_the_trainer_anneals_from_the_start_step_and_a_resumed_run_keeps_it(tmp_path):
    trainer, model = tiny_trainer(tmp_path, max_steps=4, eval_every=2, kl_annealing_start=2490)
    seen = kl_weights_seen(model)
    trainer.train()
    config = model.config  # the reference schedule: midpoint 2500, slope 0.0025
    expected = [annealing_weight(2490 + step, config.kl_annealing_midpoint, config.kl_annealing_slope)
                for step in range(6)]
    assert seen == pytest.approx(expected[:4], rel=1e-12)

    other, _ = tiny_trainer(tmp_path, max_steps=6, eval_every=2, resume=True)  # another start: not this run's
    with pytest.raises(ValueError, match="kl_annealing_start 2490 -> 0"):
        other.train()
    resumed, model = tiny_trainer(tmp_path, max_steps=6, eval_every=2, resume=True, kl_annealing_start=2490)
    seen = kl_weights_seen(model)
    resumed.train()
    assert resumed.state.kl_annealing_start == 2490 and seen == pytest.approx(expected[4:], rel=1e-12)
    resumed.export({"elbo": 0.0})  # as at a best validation
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    assert summary["training_arguments"]["kl_annealing_start"] == 2490 and summary["kl_annealing_step"] == 2496

    full, model = tiny_trainer(tmp_path / "full", max_steps=2, eval_every=2, kl_annealing_start=None)
    seen = kl_weights_seen(model)
    full.train()
    assert seen == [1.0, 1.0]


def test_kl_annealing_start_must_be_a_step():
    with pytest.raises(ValueError, match=r"kl_annealing_start must be None or a step >= 0, got -1"):
        TrainingArguments(kl_annealing_start=-1)


def test_the_base_model_is_named_by_its_hub_id_or_its_folder_name(tmp_path):
    assert base_model_origin("tester/demvae-ptb") == {"base_model": "tester/demvae-ptb"}
    snapshot = tmp_path / "hub" / "models--tester--demvae-ptb" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    assert base_model_origin(snapshot) == {"base_model": "tester/demvae-ptb"}  # a download of the Hub cache
    (tmp_path / "runs" / "ptb").mkdir(parents=True)
    assert base_model_origin(tmp_path / "runs" / "ptb") == {"base_model_folder": "ptb"}
