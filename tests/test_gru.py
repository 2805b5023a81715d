"""The CPU training GRUs (`modeling_demvae.gru`) against `nn.GRU`: same outputs, same gradients for every input."""

import pytest
import torch
from torch import nn

from modeling_demvae.gru import run_gru, run_grus, scan_pays


def outputs_and_gradients(results, leaves, output_weights, state_weights):
    """Run `results()` (a list of (outputs, last state)), backpropagate a fixed linear function of all of them, and
    return every output, last state and gradient."""
    for tensor in leaves:
        tensor.grad = None
    pairs = results()
    loss = sum((outputs * w).sum() + (last * v).sum()
               for (outputs, last), w, v in zip(pairs, output_weights, state_weights, strict=True))
    loss.backward()
    return [t.detach() for pair in pairs for t in pair] + [t.grad.clone() for t in leaves]


@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("given_states", [True, False])
def test_scan_matches_nn_gru_values_and_gradients(steps, directions, given_states):
    torch.manual_seed(0)
    rnns = [nn.GRU(6, 5, batch_first=True).double() for _ in range(directions)]
    inputs = [torch.randn(3, steps, 6, dtype=torch.double, requires_grad=True) for _ in range(directions)]
    states = [torch.randn(1, 3, 5, dtype=torch.double, requires_grad=True) for _ in range(directions)]
    output_weights = [torch.randn(3, steps, 5, dtype=torch.double) for _ in range(directions)]
    state_weights = [torch.randn(1, 3, 5, dtype=torch.double) for _ in range(directions)]
    leaves = [*inputs, *(states if given_states else []), *(p for rnn in rnns for p in rnn.parameters())]
    assert all(scan_pays(rnn, x) for rnn, x in zip(rnns, inputs, strict=True))

    def reference():
        return [rnn(x, h if given_states else None) for rnn, x, h in zip(rnns, inputs, states, strict=True)]

    def scanned():
        return run_grus(rnns, inputs, states if given_states else None)

    expected = outputs_and_gradients(reference, leaves, output_weights, state_weights)
    actual = outputs_and_gradients(scanned, leaves, output_weights, state_weights)
    assert len(actual) == len(expected) == 2 * directions + len(leaves)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"result {index} differs from nn.GRU")


def test_scan_is_taken_in_cpu_training_and_not_in_inference():
    rnn = nn.GRU(4, 3, batch_first=True)
    inputs = torch.randn(2, 5, 4)
    outputs, last = run_gru(rnn, inputs)
    assert type(outputs.grad_fn.next_functions[0][0].next_functions[0][0]).__name__ == "_GRUScanBackward"
    assert last.shape == (1, 2, 3)  # a zero initial state when none is given
    torch.testing.assert_close(outputs, rnn(inputs)[0])
    with torch.no_grad():
        assert not scan_pays(rnn, inputs)
        torch.testing.assert_close(run_gru(rnn, inputs)[0], rnn(inputs)[0])


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("given_states", [True, False])
def test_scan_under_bf16_autocast_matches_nn_gru_within_bf16_rounding(directions, given_states):
    """float32 GRUs under CPU bf16 autocast: the scan runs (not nn.GRU), its products in bf16 (the result moves away
    from float32 by bf16's rounding, not float32's), and every output and gradient stays within bf16 tolerance of a
    float64 nn.GRU on the same weights. States and outputs come back in float32."""
    torch.manual_seed(0)
    batch, steps, inputs_size, hidden = 5, 9, 16, 24
    rnns = [nn.GRU(inputs_size, hidden, batch_first=True) for _ in range(directions)]
    inputs = [torch.randn(batch, steps, inputs_size, requires_grad=True) for _ in range(directions)]
    states = [torch.randn(1, batch, hidden, requires_grad=True) for _ in range(directions)]
    output_weights = [torch.randn(batch, steps, hidden) for _ in range(directions)]
    state_weights = [torch.randn(1, batch, hidden) for _ in range(directions)]
    leaves = [*inputs, *(states if given_states else []), *(p for rnn in rnns for p in rnn.parameters())]

    def in_float64():
        return [torch.func.functional_call(rnn, {name: p.double() for name, p in rnn.named_parameters()},
                                           (x.double(), h.double() if given_states else None))
                for rnn, x, h in zip(rnns, inputs, states, strict=True)]

    def scanned():
        return run_grus(rnns, inputs, states if given_states else None)

    def scanned_in_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert all(scan_pays(rnn, x) for rnn, x in zip(rnns, inputs, strict=True))
            pairs = scanned()
        backward = pairs[0][0].grad_fn.next_functions[0][0].next_functions[0][0]
        assert type(backward).__name__ == "_GRUScanBackward"
        assert all(t.dtype == torch.float32 for pair in pairs for t in pair)
        return pairs

    expected = outputs_and_gradients(in_float64, leaves, output_weights, state_weights)
    in_float32 = outputs_and_gradients(scanned, leaves, output_weights, state_weights)
    actual = outputs_and_gradients(scanned_in_bf16, leaves, output_weights, state_weights)
    assert len(actual) == len(expected) == 2 * directions + len(leaves)
    for index, (want, float32, got) in enumerate(zip(expected, in_float32, actual, strict=True)):
        scale = want.abs().max().item()
        error = (got.double() - want).abs().max().item()
        assert error <= 2e-2 * scale, f"result {index}: {error:.2e} from float64 (largest value {scale:.2e})"
        assert (got - want).norm() <= 1e-2 * want.norm(), f"result {index} differs from nn.GRU past bf16 rounding"
        assert (float32.double() - want).abs().max() <= 1e-5 * scale, f"result {index}: the float32 scan is off"
        assert (got - float32).abs().max() >= 1e-4 * scale, f"result {index}: no bf16 rounding, so no bf16 product"
