"""DEM-VAE under transformers' own `ModelTesterMixin` (from the sdist of the installed transformers, see
`hf_common_tests`). A GRU model has no attention, and its hidden states are the decoder GRU's outputs (one layer);
the tests that do not apply are skipped below, each with the reason."""

import unittest

import pytest
import torch

pytest.importorskip("parameterized", reason="the common tests need `parameterized` (pip install -e '.[dev]')")

from hf_common_tests import common_tests_module  # noqa: E402

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration  # noqa: E402

try:
    common = common_tests_module()
except Exception as error:  # no network, no sdist for this version: say so instead of failing
    pytest.skip(f"transformers' common tests are unavailable: {error}", allow_module_level=True)


class DEMVAEModelTester:
    """A tiny DEM-VAE and a right-padded batch, in the shape the common tests expect."""

    family = {}  # the Gaussian mixture prior
    hidden_size = 16  # the decoder's, whose GRU outputs are the hidden states
    num_hidden_layers = expected_num_hidden_layers = 1  # the GRU's outputs only: its input (embedding, z) is wider

    def __init__(self, parent, batch_size=3, seq_length=7, vocab_size=99, is_training=True):
        self.parent, self.batch_size, self.seq_length = parent, batch_size, seq_length
        self.vocab_size, self.is_training = vocab_size, is_training

    def get_config(self) -> DEMVAEConfig:
        return DEMVAEConfig(
            vocab_size=self.vocab_size, embed_size=16, encoder_hidden_size=12, decoder_hidden_size=self.hidden_size,
            num_groups=2, num_components=3, latent_size=2, max_sentence_length=self.seq_length + 3,
            deterministic_eval=True,  # eval forwards decode the posterior mode: two forwards can be compared
            **self.family,
        )

    def prepare_config_and_inputs_for_common(self):
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 4) + 4  # no specials
        lengths = torch.arange(self.batch_size) % (self.seq_length - 1) + 2
        lengths[0] = self.seq_length
        attention_mask = (torch.arange(self.seq_length) < lengths.unsqueeze(1)).long()
        input_ids = input_ids.masked_fill(attention_mask == 0, 0)
        input_ids[:, 0] = 1
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


class DEMVAEModelTest(common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (DEMVAEForGeneration,)
    has_attentions = False  # a GRU model: no attention weights to return
    # the test reads the model's age from a copyright line our files do not have; _init_weights covers every weight
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = DEMVAEModelTester(self)

    @unittest.skip("the forward encodes input_ids with the encoder's own embedding; inputs_embeds (the decoder's) "
                   "are decoded from a latent, tested in test_generation_conventions.py")
    def test_inputs_embeds(self):
        pass

    @unittest.skip("DEM-VAE has no base model under a head: the encoder, prior and decoder together are the model")
    def test_model_base_model_prefix(self):
        pass

    @unittest.skip("GenerationTesterMixin (tests/generation/) is not in the sdist, which ships only tests/*.py; "
                   "generation is tested in test_generation.py and test_generation_conventions.py")
    def test_generation_tester_mixin_inheritance(self):
        pass


class DEMVAECategoricalModelTester(DEMVAEModelTester):
    family = {"prior_family": "categorical", "categorical_size": 3}


class DEMVAECategoricalModelTest(DEMVAEModelTest):
    """The same common tests with the categorical mixture prior (DCM-VAE)."""

    def setUp(self):
        self.model_tester = DEMVAECategoricalModelTester(self)
