"""A single-layer GRU for CPU training whose recurrent weight gradient is one matrix product over all steps.

`nn.GRU`'s CPU backward adds the recurrent weight's gradient step by step: one (3H x B) @ (B x H) product and one
(3H x H) accumulation per token, with only B = 30 rows to share out. Here the backward runs the recurrence for the
state gradients alone, keeps every step's gate gradients, and takes the weight gradient in one product over all
T x B rows, as cuDNN does. Same weights, same function: `nn.GRU` is used wherever this does not pay (GPUs, autocast,
inference).
"""

import torch
import torch.nn.functional as F
from torch import nn


class _GRUScan(torch.autograd.Function):
    """h_t = (1 - z) * n + z * h_{t-1} over precomputed input projections `gates_x` (T, B, 3H), PyTorch's gate order
    (r, z, n) and its n = tanh(x_n + r * (W_hn h + b_hn))."""

    @staticmethod
    def forward(ctx, gates_x, h0, weight_hh, bias_hh):
        steps, hidden = gates_x.shape[0], h0.shape[-1]
        outputs = gates_x.new_empty(steps, *h0.shape)
        reset_update = gates_x.new_empty(steps, h0.shape[0], 2 * hidden)
        candidate = gates_x.new_empty(steps, *h0.shape)
        gates_h = gates_x.new_empty(steps, h0.shape[0], 3 * hidden)
        h = h0
        for t in range(steps):
            torch.addmm(bias_hh, h, weight_hh.t(), out=gates_h[t])
            torch.sigmoid(gates_x[t, :, : 2 * hidden] + gates_h[t, :, : 2 * hidden], out=reset_update[t])
            reset, update = reset_update[t, :, :hidden], reset_update[t, :, hidden:]
            torch.tanh(torch.addcmul(gates_x[t, :, 2 * hidden:], reset, gates_h[t, :, 2 * hidden:]), out=candidate[t])
            h = torch.lerp(candidate[t], h, update, out=outputs[t])
        ctx.save_for_backward(h0, weight_hh, outputs, reset_update, candidate, gates_h)
        return outputs

    @staticmethod
    def backward(ctx, grad_outputs):
        h0, weight_hh, outputs, reset_update, candidate, gates_h = ctx.saved_tensors
        steps, batch, hidden = outputs.shape
        grad_gates_h = grad_outputs.new_empty(steps, batch, 3 * hidden)  # d loss / d (W_hh h + b_hh), per step
        grad_candidate = grad_outputs.new_empty(steps, batch, hidden)  # d loss / d (x_n + r * (W_hn h + b_hn))
        grad_h = torch.zeros_like(h0)
        for t in reversed(range(steps)):
            grad_h = grad_h + grad_outputs[t]
            h_previous = outputs[t - 1] if t else h0
            reset, update = reset_update[t, :, :hidden], reset_update[t, :, hidden:]
            torch.mul(grad_h * (1 - update), 1 - candidate[t].square(), out=grad_candidate[t])
            grad_reset = grad_candidate[t] * gates_h[t, :, 2 * hidden:] * reset * (1 - reset)
            grad_update = grad_h * (h_previous - candidate[t]) * update * (1 - update)
            torch.cat((grad_reset, grad_update, grad_candidate[t] * reset), dim=-1, out=grad_gates_h[t])
            grad_h = torch.addmm(grad_h * update, grad_gates_h[t], weight_hh)
        previous = torch.cat((h0.unsqueeze(0), outputs[:-1]))
        flat_grad = grad_gates_h.view(-1, 3 * hidden)
        grad_weight = flat_grad.t() @ previous.view(-1, hidden)
        grad_gates_x = torch.cat((grad_gates_h[..., : 2 * hidden], grad_candidate), dim=-1)
        return grad_gates_x, grad_h, grad_weight, flat_grad.sum(0)


def scan_pays(rnn: nn.GRU, inputs: torch.Tensor) -> bool:
    """Training on a CPU in the parameters' own precision: where the batched weight gradient is faster."""
    return (
        inputs.device.type == "cpu"
        and torch.is_grad_enabled()
        and rnn.weight_hh_l0.requires_grad
        and not torch.is_autocast_enabled("cpu")
        and rnn.num_layers == 1
        and not rnn.bidirectional
        and rnn.batch_first
        and rnn.bias
    )


def run_gru(rnn: nn.GRU, inputs: torch.Tensor, state: torch.Tensor | None = None):
    """`rnn(inputs, state)` for a batch-first, one-layer GRU: (outputs (B, T, H), last state (1, B, H))."""
    if not scan_pays(rnn, inputs):
        return rnn(inputs, state)
    if state is None:
        state = inputs.new_zeros(1, inputs.shape[0], rnn.hidden_size)
    gates_x = F.linear(inputs.transpose(0, 1), rnn.weight_ih_l0, rnn.bias_ih_l0)
    outputs = _GRUScan.apply(gates_x, state[0], rnn.weight_hh_l0, rnn.bias_hh_l0)
    return outputs.transpose(0, 1), outputs[-1:]


__all__ = ["run_gru"]
