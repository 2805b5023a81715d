import json

import pytest

from modeling_demvae import DEMVAEConfig


def test_defaults_are_the_reference_ptb_dgm_vae():
    config = DEMVAEConfig()
    assert (config.num_groups, config.num_components, config.latent_size) == (20, 5, 2)
    assert config.variant == "dem" and config.dispersion_weight == 0.8
    assert config.decoder_latent_size == 40


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_components", 0, "num_components"),
        ("num_groups", -1, "num_groups"),
        ("latent_size", 0, "latent_size"),
        ("embed_size", -3, "embed_size"),
        ("dispersion_weight", 1.5, "[0, 1]"),
        ("dispersion_weight", -0.1, "[0, 1]"),
        ("variant", "gmvae", "'dem', 'vae', 'discrete', 'semi', 'rnnlm'"),
        ("prior_family", "poisson", "gaussian"),
        ("dropout", 1.0, "dropout"),
        ("pad_token_id", 10_000, "pad_token_id"),
    ],
)
def test_impossible_values_name_the_field_and_what_is_accepted(field, value, message):
    with pytest.raises(ValueError) as error:
        DEMVAEConfig(**{field: value})
    assert message in str(error.value)
    assert field in str(error.value)


def test_tied_weights_need_matching_sizes():
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        DEMVAEConfig(embed_size=16, decoder_hidden_size=32)
    assert DEMVAEConfig(embed_size=16, decoder_hidden_size=32, tie_word_embeddings=False).decoder_hidden_size == 32


def test_integer_weights_are_stored_as_floats(tmp_path):
    """JSON and command lines drop the ".0"; the config keeps floats, so a saved config reads the same."""
    config = DEMVAEConfig(dispersion_weight=1, dropout=0, gumbel_temperature=2, kl_annealing_slope=1)
    for name in ("dispersion_weight", "dropout", "gumbel_temperature", "kl_annealing_slope"):
        assert type(getattr(config, name)) is float, name
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dispersion_weight"] == 1.0
    assert '"dispersion_weight": 1.0' in (tmp_path / "config.json").read_text()


def test_round_trip(tmp_path):
    config = DEMVAEConfig(vocab_size=123, num_groups=3, latent_size=5, dispersion_weight=0.7, variant="semi")
    config.save_pretrained(tmp_path)
    loaded = DEMVAEConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


def test_latent_layout_per_variant():
    sizes = {v: DEMVAEConfig(variant=v).decoder_latent_size for v in ("dem", "vae", "discrete", "semi", "rnnlm")}
    assert sizes == {"dem": 40, "vae": 40, "discrete": 100, "semi": 140, "rnnlm": 0}


def test_kl_annealing_schedule():
    config = DEMVAEConfig()
    assert config.kl_weight(2500) == pytest.approx(0.5)
    assert config.kl_weight(0) == pytest.approx(1 / (1 + 2.718281828 ** 6.25), rel=1e-6)
    assert DEMVAEConfig(kl_annealing=False).kl_weight(0) == 1.0
