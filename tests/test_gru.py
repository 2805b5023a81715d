"""The CPU training GRU (`modeling_demvae.gru`) against `nn.GRU`: same outputs, same gradients for every input."""

import pytest
import torch
from torch import nn

from modeling_demvae.gru import run_gru, scan_pays


def outputs_and_gradients(function, rnn, inputs, state, output_weights, state_weights):
    for tensor in (inputs, state, *rnn.parameters()):
        tensor.grad = None
    outputs, last = function()
    ((outputs * output_weights).sum() + (last * state_weights).sum()).backward()
    return [outputs.detach(), last.detach()] + [t.grad.clone() for t in (inputs, state, *rnn.parameters())]


@pytest.mark.parametrize("steps", [1, 7])
def test_scan_matches_nn_gru_values_and_gradients(steps):
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, batch_first=True).double()
    inputs = torch.randn(3, steps, 6, dtype=torch.double, requires_grad=True)
    state = torch.randn(1, 3, 5, dtype=torch.double, requires_grad=True)
    output_weights = torch.randn(3, steps, 5, dtype=torch.double)
    state_weights = torch.randn(1, 3, 5, dtype=torch.double)
    assert scan_pays(rnn, inputs)

    expected = outputs_and_gradients(lambda: rnn(inputs, state), rnn, inputs, state, output_weights, state_weights)
    actual = outputs_and_gradients(lambda: run_gru(rnn, inputs, state), rnn, inputs, state, output_weights,
                                   state_weights)
    names = ["outputs", "last state", "d inputs", "d state", *(f"d {n}" for n, _ in rnn.named_parameters())]
    for name, want, got in zip(names, expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"{name} differs from nn.GRU")


def test_scan_is_taken_in_cpu_training_and_not_in_inference():
    rnn = nn.GRU(4, 3, batch_first=True)
    inputs = torch.randn(2, 5, 4)
    outputs, _ = run_gru(rnn, inputs)
    assert type(outputs.grad_fn.next_functions[0][0]).__name__ == "_GRUScanBackward"  # (B, T, H) is a transpose
    with torch.no_grad():
        assert not scan_pays(rnn, inputs)
        torch.testing.assert_close(run_gru(rnn, inputs)[0], rnn(inputs)[0])
    assert run_gru(rnn, inputs)[1].shape == (1, 2, 3)  # a zero initial state when none is given
    torch.testing.assert_close(run_gru(rnn, inputs)[0], rnn(inputs)[0])
