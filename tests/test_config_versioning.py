"""Loading from anywhere: folders written by older or newer versions of the package, and dtype/device options.

An older version wrote config.json without some of today's fields: they must load with their defaults. A newer
version may write fields this one does not know: they must be kept through load and save, not dropped.
"""

import dataclasses
import json

import pytest
import torch
from conftest import tiny_batch, tiny_model

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration

# fields that fix parameter shapes: a checkpoint cannot exist without them
SHAPE_FIELDS = {
    "vocab_size", "embed_size", "encoder_hidden_size", "bidirectional_encoder", "decoder_hidden_size",
    "num_groups", "num_components", "latent_size", "variant", "concat_latent_to_inputs", "tie_word_embeddings",
    "prior_family",
}
DEFAULTS = {field.name: field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
            for field in dataclasses.fields(DEMVAEConfig) if field.name in DEMVAEConfig.__annotations__}
# values unlike the defaults, so that a loaded default cannot be mistaken for the saved value
SAVED = dict(dispersion_weight=0.5, use_mutual_information=False, kl_annealing=False, kl_annealing_slope=0.01,
             kl_annealing_midpoint=100, dropout=0.1, num_posterior_samples=2, gumbel_temperature=0.5,
             max_sentence_length=12, initializer_range=0.05, unk_token_id=4, use_cache=False, deterministic_eval=True,
             attribute_loss_weight=0.5, attributes={"act": {"group": 1, "labels": ["inform", "question"]}},
             categorical_size=3,  # it shapes nothing in a Gaussian model, the only kind older versions saved
             gumbel_hard=False, mutual_information_bonus=1.0, anneal_component_terms=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model(**SAVED).eval()
    folder = tmp_path_factory.mktemp("saved")
    model.save_pretrained(folder)
    return folder, model


def rewrite_config(source, target, edit):
    """A copy of the saved model whose config.json was passed through `edit` (the weights are shared bytes)."""
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    config = json.loads((source / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_every_field_is_covered():
    assert SHAPE_FIELDS | set(SAVED) | {"pad_token_id", "bos_token_id", "eos_token_id"} == set(DEFAULTS)
    assert all(SAVED[name] != DEFAULTS[name] for name in SAVED)


@pytest.mark.parametrize("field", sorted(set(DEFAULTS) - SHAPE_FIELDS))
def test_config_without_a_field_loads_its_default(saved, tmp_path, field):
    source, model = saved
    folder = rewrite_config(source, tmp_path / "older", lambda config: config.pop(field))
    assert field not in json.loads((folder / "config.json").read_text())
    loaded = DEMVAEForGeneration.from_pretrained(folder)
    assert getattr(loaded.config, field) == DEFAULTS[field]
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_unknown_fields_are_kept(saved, tmp_path):
    source, model = saved
    extra = {"mixture_temperature_schedule": {"start": 1.0, "end": 0.1}, "future_flag": True}
    folder = rewrite_config(source, tmp_path / "newer", lambda config: config.update(extra))
    loaded = DEMVAEForGeneration.from_pretrained(folder)
    assert loaded.config.future_flag is True
    loaded.save_pretrained(tmp_path / "resaved")
    config = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert {key: config[key] for key in extra} == extra
    assert DEMVAEConfig.from_pretrained(tmp_path / "resaved").mixture_temperature_schedule == extra[
        "mixture_temperature_schedule"]


def posterior_and_logits(model):
    """The deterministic path: posterior mean and q(c|x), and the decoder's logits from that mean."""
    input_ids, attention_mask = tiny_batch()
    with torch.no_grad():
        posterior = model.encode(input_ids, attention_mask)
        logits = model(input_ids, latent=model.posterior_latent(posterior, sample=False)).logits
    return posterior.mean, posterior.component_probs, logits


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.bfloat16, 0.1)])
def test_dtype_option(saved, dtype, tolerance):
    folder, model = saved
    loaded = DEMVAEForGeneration.from_pretrained(folder, dtype=dtype, device_map="cpu")
    assert {p.dtype for p in loaded.parameters()} == {dtype} and loaded.device.type == "cpu"
    for expected, actual in zip(posterior_and_logits(model), posterior_and_logits(loaded)):
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.float(), expected, atol=tolerance, rtol=tolerance)
    assert loaded.generate(num_samples=2, max_new_tokens=4).shape[0] == 2


def test_device_option(saved):
    folder, _ = saved
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = DEMVAEForGeneration.from_pretrained(folder, device_map=device)
    assert loaded.device.type == device
    assert loaded.generate(component=[0, 1, 2], num_samples=2).device.type == device
