"""GRUs for CPU training: the recurrent weight gradient in one product over all steps, and several GRUs in step.

`nn.GRU`'s CPU backward adds the recurrent weight's gradient step by step: one (3H x B) @ (B x H) product and one
(3H x H) accumulation per token, with only B = 30 rows to share out. Here the backward runs the recurrence for the
state gradients alone, keeps every step's gate gradients, and takes the weight gradient in one product over all
T x B rows, as cuDNN does. GRUs of the same size that read different inputs (the encoder's two directions) advance
together, one batched product per step instead of one each. Same weights, same function: `nn.GRU` runs wherever this
does not pay (GPUs, inference).

Under CPU bf16 autocast the matrix products run in bf16 (the GEMMs accumulate in float32) on bf16 copies of the
float32 weights, while the gate sums, the nonlinearities and the recurrent state stay in float32: rounding a state
to bf16 at every step would compound over the sentence, a product's rounding does not.
"""

from collections.abc import Sequence

import torch
from torch import nn


def add_product(addend, matrices, others, products_dtype, out=None):
    """`addend + matrices @ others` (batched), the product in `products_dtype` when given (`others` already in it),
    the sum in the addend's precision."""
    if products_dtype is None:
        return torch.baddbmm(addend, matrices, others, out=out)
    return torch.add(addend, torch.bmm(matrices.to(products_dtype), others), out=out)


class _GRUScan(torch.autograd.Function):
    """D GRUs over precomputed input projections `gates_x` (D, T, B, 3H) from states `h0` (D, B, H), with recurrent
    weights (D, 3H, H) and biases (D, 3H), in PyTorch's gate order (r, z, n):
    n = tanh(x_n + r * (W_hn h + b_hn)), h_t = (1 - z) * n + z * h_{t-1}. Returns every state, (T, D, B, H).
    With `products_dtype` (bf16) the recurrent products, forward and backward, run in it; all else in the weights'
    dtype. Under autocast it runs with autocast off, on float32 inputs (`custom_fwd`), and so does its backward."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, gates_x, h0, weight_hh, bias_hh, products_dtype=None):
        steps, hidden = gates_x.shape[1], h0.shape[-1]
        outputs = gates_x.new_empty(steps, *h0.shape)  # step-major: every out= below writes a contiguous block
        reset_update = gates_x.new_empty(steps, *h0.shape[:2], 2 * hidden)
        candidate = gates_x.new_empty(steps, *h0.shape)
        gates_h = gates_x.new_empty(steps, *h0.shape[:2], 3 * hidden)
        weight = weight_hh if products_dtype is None else weight_hh.to(products_dtype)
        h, weight_t, bias = h0, weight.transpose(1, 2), bias_hh.unsqueeze(1)
        for t in range(steps):
            add_product(bias, h, weight_t, products_dtype, out=gates_h[t])
            torch.sigmoid(gates_x[:, t, :, : 2 * hidden] + gates_h[t, ..., : 2 * hidden], out=reset_update[t])
            reset, update = reset_update[t, ..., :hidden], reset_update[t, ..., hidden:]
            torch.tanh(torch.addcmul(gates_x[:, t, :, 2 * hidden:], reset, gates_h[t, ..., 2 * hidden:]),
                       out=candidate[t])
            h = torch.lerp(candidate[t], h, update, out=outputs[t])
        ctx.save_for_backward(h0, weight, outputs, reset_update, candidate, gates_h)
        ctx.products_dtype = products_dtype
        return outputs

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_outputs):
        h0, weight, outputs, reset_update, candidate, gates_h = ctx.saved_tensors
        products_dtype = ctx.products_dtype
        steps, directions, batch, hidden = outputs.shape
        grad_gates_h = grad_outputs.new_empty(steps, directions, batch, 3 * hidden)  # d / d (W_hh h + b_hh)
        grad_candidate = grad_outputs.new_empty(steps, directions, batch, hidden)  # d / d (x_n + r * (...))
        grad_h = torch.zeros_like(h0)
        for t in reversed(range(steps)):
            grad_h = grad_h + grad_outputs[t]
            h_previous = outputs[t - 1] if t else h0
            reset, update = reset_update[t, ..., :hidden], reset_update[t, ..., hidden:]
            torch.mul(grad_h * (1 - update), 1 - candidate[t].square(), out=grad_candidate[t])
            grad_reset = grad_candidate[t] * gates_h[t, ..., 2 * hidden:] * reset * (1 - reset)
            grad_update = grad_h * (h_previous - candidate[t]) * update * (1 - update)
            torch.cat((grad_reset, grad_update, grad_candidate[t] * reset), dim=-1, out=grad_gates_h[t])
            grad_h = add_product(grad_h * update, grad_gates_h[t], weight, products_dtype)
        by_direction = grad_gates_h.transpose(0, 1).reshape(directions, -1, 3 * hidden)
        previous = torch.cat((h0.unsqueeze(0), outputs[:-1])).transpose(0, 1).reshape(directions, -1, hidden)
        low = products_dtype or previous.dtype
        grad_weight = torch.bmm(by_direction.transpose(1, 2).to(low), previous.to(low)).to(previous.dtype)
        grad_gates_x = torch.cat((grad_gates_h[..., : 2 * hidden], grad_candidate), dim=-1).transpose(0, 1)
        return grad_gates_x, grad_h, grad_weight, by_direction.sum(1), None


def scan_pays(rnn: nn.GRU, inputs: torch.Tensor) -> bool:
    """Training on a CPU, in the parameters' own precision or under bf16 autocast, eagerly: where the batched weight
    gradient is faster. torch.compile and torch.export trace `nn.GRU` instead."""
    return (
        inputs.device.type == "cpu"
        and not (torch.compiler.is_compiling() or torch.compiler.is_exporting())
        and torch.is_grad_enabled()
        and rnn.weight_hh_l0.requires_grad
        and (not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") == torch.bfloat16)
        and rnn.num_layers == 1
        and not rnn.bidirectional
        and rnn.batch_first
        and rnn.bias
    )


def run_grus(rnns: Sequence[nn.GRU], inputs: Sequence[torch.Tensor], states: Sequence[torch.Tensor] | None = None):
    """`[rnn(x, h) for rnn, x, h in zip(rnns, inputs, states)]` for batch-first, one-layer GRUs of one size over
    inputs of one shape (B, T, I): a list of (outputs (B, T, H), last state (1, B, H)). States default to zeros.
    A state from a bf16 product (under autocast) is taken in the weights' precision, which the recurrence keeps."""
    if not all(scan_pays(rnn, x) for rnn, x in zip(rnns, inputs, strict=True)):
        states = [h if h is None else h.to(rnn.weight_hh_l0.dtype)
                  for rnn, h in zip(rnns, states or [None] * len(rnns), strict=True)]
        return [rnn(x, h) for rnn, x, h in zip(rnns, inputs, states, strict=True)]
    stacked = torch.stack(list(inputs))  # (D, B, T, I)
    if states is None:
        h0 = stacked.new_zeros(len(rnns), stacked.shape[1], rnns[0].hidden_size)
    else:
        h0 = torch.cat(list(states))
    weight_ih, bias_ih, weight_hh, bias_hh = (
        torch.stack([getattr(rnn, name) for rnn in rnns])
        for name in ("weight_ih_l0", "bias_ih_l0", "weight_hh_l0", "bias_hh_l0")
    )
    directions, batch, steps, _ = stacked.shape
    time_major = stacked.transpose(1, 2).flatten(1, 2)  # (D, T * B, I)
    gates_x = torch.baddbmm(bias_ih.unsqueeze(1), time_major, weight_ih.transpose(1, 2))  # bf16 under autocast
    products_dtype = torch.bfloat16 if torch.is_autocast_enabled("cpu") else None
    outputs = _GRUScan.apply(gates_x.view(directions, steps, batch, -1), h0, weight_hh, bias_hh, products_dtype)
    return [(outputs[:, d].transpose(0, 1), outputs[-1:, d]) for d in range(directions)]


def run_gru(rnn: nn.GRU, inputs: torch.Tensor, state: torch.Tensor | None = None):
    """`rnn(inputs, state)` for a batch-first, one-layer GRU: (outputs (B, T, H), last state (1, B, H))."""
    return run_grus([rnn], [inputs], None if state is None else [state])[0]


__all__ = ["run_gru", "run_grus"]
