"""The training-speed benchmark's baseline computes the same objective as our step."""

import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_step import pad_to, reference_loss  # noqa: E402


@pytest.mark.parametrize("beta, use_mi, weight", [(0.8, True, 0.3), (0.0, False, 1.0)])
def test_reference_step_loss_equals_ours_on_a_batch_without_padding(beta, use_mi, weight):
    model = tiny_model(dispersion_weight=beta, use_mutual_information=use_mi).double().eval()
    input_ids = torch.randint(4, model.config.vocab_size, (5, 9))
    input_ids[:, 0], input_ids[:, -1] = model.config.bos_token_id, model.config.eos_token_id
    torch.manual_seed(0)
    ours = model(input_ids, torch.ones_like(input_ids), kl_weight=weight).loss
    torch.manual_seed(0)
    reference = reference_loss(model, pad_to(input_ids.tolist(), 9, model.config.pad_token_id), kl_weight=weight)
    torch.testing.assert_close(ours, reference)


def test_reference_step_reads_padding_and_ours_does_not():
    """With padding the two differ only because the reference encoder reads it."""
    model = tiny_model().double().eval()
    sentences = [[1, 5, 6, 2], [1, 7, 2]]
    padded = pad_to(sentences, 6, 0)
    torch.manual_seed(0)
    ours = model(padded, padded.ne(0)).loss
    torch.manual_seed(0)
    reference = reference_loss(model, padded, kl_weight=1.0)
    assert not torch.isclose(ours, reference)
