import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration  # noqa: E402
from modeling_demvae.data import default_data_dir  # noqa: E402

VOCAB_SIZE = 40


def tiny_config(**overrides) -> DEMVAEConfig:
    """A model small enough to run every check in milliseconds."""
    settings = dict(
        vocab_size=VOCAB_SIZE,
        embed_size=12,
        encoder_hidden_size=10,
        decoder_hidden_size=12,
        num_groups=3,
        num_components=4,
        latent_size=2,
        max_sentence_length=12,
    )
    settings.update(overrides)
    return DEMVAEConfig(**settings)


def tiny_model(seed: int = 0, **overrides) -> DEMVAEForGeneration:
    torch.manual_seed(seed)
    return DEMVAEForGeneration(tiny_config(**overrides))


def tiny_batch():
    """Three sentences of different lengths, right-padded with 0; each starts with <s> (1) and ends with </s> (2)."""
    input_ids = torch.tensor(
        [[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0], [1, 11, 2, 0, 0, 0]],
    )
    return input_ids, input_ids.ne(0).long()


@pytest.fixture
def data_dir() -> Path:
    """The shared corpora (DEMVAE_DATA_DIR, default ../shared/data beside the checkout); skip when absent."""
    path = default_data_dir()
    if not (path / "ptb").is_dir():
        pytest.skip(f"shared corpora not found at {path} (set DEMVAE_DATA_DIR to the folder holding ptb/)")
    return path
