"""The networks of DEM-VAE: a GRU sentence encoder, the heads of q(z|x) and q(c|x), and a GRU decoder conditioned on
the latent, with the padding helpers they share. Sentences may be padded on either side: each network moves a
sentence's real tokens to the front first, so padding never reaches a state that is used.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_demvae import DEMVAEConfig
from .gru import run_gru, run_grus


@dataclass
class DEMVAEPosterior(ModelOutput):
    """q(z, c | x) = q(z|x) q(c|x): Gaussian parameters (B, G*d), or for the categorical family the logits of z
    (B, G, d, V), and component probabilities (B, G, K)."""

    mean: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    latent_logits: torch.Tensor | None = None
    component_logits: torch.Tensor | None = None
    component_probs: torch.Tensor | None = None


def mask_from(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int | None):
    """Which tokens are real: the attention mask (of the ids' shape) or, failing that, the tokens that are not the pad
    id."""
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids, {tuple(input_ids.shape)}, got "
                             f"{tuple(attention_mask.shape)}.")
        return attention_mask.bool()
    return torch.ones_like(input_ids, dtype=torch.bool) if pad_token_id is None else input_ids.ne(pad_token_id)


def at_positions(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Each row of `values` (B, T, ...) at its own `positions` (B, T'): (B, T', ...)."""
    index = positions.view(*positions.shape, *(1,) * (values.dim() - 2))
    return values.gather(1, index.expand(*positions.shape, *values.shape[2:]))


def real_tokens_first(tokens: torch.Tensor, mask: torch.Tensor):
    """Each row's real tokens (ids (B, T) or embeddings (B, T, E)) moved to its front, in order: any padding (left,
    right) becomes right padding.

    Returns the reordered tokens, the lengths (B,) and the order (B, T), whose `argsort(1)` puts positions back. A
    stable sort on the mask, with no branch on the data, so that compiled and exported graphs take this path too."""
    order = torch.argsort(mask.logical_not().to(torch.uint8), dim=1, stable=True)
    return at_positions(tokens, order), mask.long().sum(-1), order


def check_nonempty_rows(lengths: torch.Tensor) -> None:
    """Every sentence needs a token. Eager on a CPU: a ValueError. On an accelerator, and while torch.compile or
    torch.export traces the model (where a branch on the data cannot be), an assertion op: asynchronous, so it
    never stalls the step, and part of the graph."""
    message = "every sentence needs at least one token; found an empty row in the batch."
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
    if lengths.device.type == "cpu" and not tracing:
        if (lengths < 1).any():
            raise ValueError(message)
    else:
        torch._assert_async((lengths > 0).all(), message)


def check_input_ids(input_ids: torch.Tensor | None, name: str = "input_ids") -> None:
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        shape = None if input_ids is None else tuple(input_ids.shape)
        raise ValueError(f"{name} must be a non-empty (batch, length) tensor, got shape {shape}.")


def state_at(outputs: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """A GRU's outputs (B, T, H) at each sentence's last real position `last` (B,): padding never reaches them."""
    return at_positions(outputs, last.unsqueeze(1)).squeeze(1)


class SentenceEncoder(GradientCheckpointingLayer):
    """Embedding + GRU read left to right and, per sentence, right to left from its last real token.

    Sentences come right-padded (`real_tokens_first`). Each direction's state is taken at the sentence's last real
    token, so padding never reaches the encoding (the reference code's encoder reads it). Two plain GRU runs over the
    padded batch beat packed sequences: no host-device synchronisation, and length-bucketed batches carry little
    padding. In CPU training the two directions advance in step (`gru.run_grus`). Under gradient checkpointing the
    GRUs' activations are recomputed in the backward pass; the embedding stays outside, so the checkpointed input
    carries a gradient."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, *, bidirectional: bool = True,
                 dropout: float = 0.0, pad_token_id: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=pad_token_id)
        self.dropout = nn.Dropout(dropout)
        self.forward_rnn = nn.GRU(embed_size, hidden_size, batch_first=True)
        self.backward_rnn = nn.GRU(embed_size, hidden_size, batch_first=True) if bidirectional else None

    @classmethod
    def from_config(cls, config: DEMVAEConfig) -> "SentenceEncoder":
        """The sentence model's encoder: its vocabulary, embedding and encoder sizes."""
        return cls(config.vocab_size, config.embed_size, config.encoder_hidden_size,
                   bidirectional=config.bidirectional_encoder, dropout=config.dropout,
                   pad_token_id=config.pad_token_id)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embedding(input_ids))

    def _directions(self, embedded: torch.Tensor, lengths: torch.Tensor):
        """Each direction's GRU outputs, the backward one's in each sentence's reversed order, and that order (B, T)
        (its own inverse: positions past a sentence's end stay where they are)."""
        rnns, inputs, reverse = [self.forward_rnn], [embedded], None
        if self.backward_rnn is not None:
            positions = torch.arange(embedded.shape[1], device=embedded.device)
            inside = positions < lengths.unsqueeze(1)
            reverse = torch.where(inside, (lengths - 1).unsqueeze(1) - positions, positions)  # flip each in place
            rnns.append(self.backward_rnn)
            inputs.append(at_positions(embedded, reverse))
        return [outputs for outputs, _ in run_grus(rnns, inputs)], reverse

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The sentence's encoding (B, directions * H): each direction's state after its last real token."""
        directions, _ = self._directions(embedded, lengths)
        return torch.cat([state_at(outputs, lengths - 1) for outputs in directions], dim=-1)

    def outputs(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every token's states (B, T, directions * H), each direction's after reading up to that token from its
        side; positions past a sentence's end hold padding's states, for the caller to mask."""
        directions, reverse = self._directions(embedded, lengths)
        if reverse is not None:
            directions[1] = at_positions(directions[1], reverse)
        return torch.cat(directions, dim=-1)


class PosteriorHeads(nn.Module):
    """The heads on the encoder state: q(z|x) mean and log-variance (or, categorical family, its logits), and q(c|x)
    logits. The categorical logits come from Linear, tanh, Linear, as in the reference code's BMVAE."""

    def __init__(self, config: DEMVAEConfig, encoder_size: int):
        super().__init__()
        self.num_groups, self.num_components = config.num_groups, config.num_components
        self.latent_shape = (config.num_groups, config.latent_size, config.categorical_size)
        if config.has_continuous_latent:
            self.mean = nn.Linear(encoder_size, config.continuous_size)
            self.logvar = nn.Linear(encoder_size, config.continuous_size)
        if config.has_categorical_latent:
            self.latent_logits = nn.Sequential(
                nn.Linear(encoder_size, encoder_size),
                nn.Tanh(),
                nn.Linear(encoder_size, config.decoder_latent_size),
            )
        if config.has_discrete_latent:
            self.component_logits = nn.Sequential(
                nn.Linear(encoder_size, encoder_size),
                nn.ReLU(),
                nn.Linear(encoder_size, config.num_groups * config.num_components),
            )

    def forward(self, encoded: torch.Tensor) -> DEMVAEPosterior:
        posterior = DEMVAEPosterior()
        if hasattr(self, "mean"):
            posterior.mean, posterior.logvar = self.mean(encoded), self.logvar(encoded)
        if hasattr(self, "latent_logits"):
            posterior.latent_logits = self.latent_logits(encoded).view(-1, *self.latent_shape)
        if hasattr(self, "component_logits"):
            logits = self.component_logits(encoded).view(-1, self.num_groups, self.num_components)
            posterior.component_logits, posterior.component_probs = logits, logits.softmax(-1)
        return posterior


class GRUDecoder(GradientCheckpointingLayer):
    """GRU language model conditioned on a latent: h_0 = W z, and z concatenated to every input embedding.

    Under gradient checkpointing the GRU's activations are recomputed in the backward pass (see `SentenceEncoder`)."""

    def __init__(self, config: DEMVAEConfig):
        super().__init__()
        latent_size = config.decoder_latent_size
        self.concat_latent = config.concat_latent_to_inputs and latent_size > 0
        self.embedding = nn.Embedding(config.vocab_size, config.embed_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.latent_to_hidden = nn.Linear(latent_size, config.decoder_hidden_size, bias=False) if latent_size else None
        input_size = config.embed_size + (latent_size if self.concat_latent else 0)
        self.rnn = nn.GRU(input_size, config.decoder_hidden_size, batch_first=True)

    def initial_state(self, latent: torch.Tensor) -> torch.Tensor:
        if self.latent_to_hidden is None:
            return latent.new_zeros(1, latent.shape[0], self.rnn.hidden_size)
        return self.latent_to_hidden(latent).unsqueeze(0)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embedding(input_ids))

    def forward(self, embedded, latent, state=None, lengths=None):
        """Run the GRU over right-padded inputs from `state` (or the latent's initial state). It is causal, so right
        padding only produces outputs past each sentence's end, which the loss ignores. The state returned is the
        one after each sentence's last real token when `lengths` are given (a row with none keeps `state`: a finished
        sentence's padding while decoding), else after the last position."""
        if self.concat_latent:
            embedded = torch.cat((embedded, latent.unsqueeze(1).expand(-1, embedded.shape[1], -1)), dim=-1)
        initial = self.initial_state(latent) if state is None else state
        outputs, state = run_gru(self.rnn, embedded, initial)
        if lengths is not None:
            last = state_at(outputs, (lengths - 1).clamp_min(0)).unsqueeze(0)
            state = torch.where(lengths.gt(0).view(1, -1, 1), last, initial.to(last.dtype))
        return self.dropout(outputs), state


NLL_ROWS = 512  # token positions whose float32 log-softmax is held at once


def token_nll(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The cross-entropy of each token position (`logits` (..., vocab), `targets` (...)), in float32 whatever the
    logits' dtype, `NLL_ROWS` positions at a time: a validation batch's float32 copy and log-softmax at once (100
    sentences x 40 tokens x 10,000 words) would take 320 MB beside its logits. Each position's value does not depend
    on the slicing; in training, autograd keeps every slice's log-softmax as it kept the whole one."""
    flat, flat_targets = logits.flatten(0, -2), targets.flatten()
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.cat([F.cross_entropy(rows.to(dtype), row_targets, ignore_index=ignore_index, reduction="none")
                      for rows, row_targets in zip(flat.split(NLL_ROWS), flat_targets.split(NLL_ROWS), strict=True)]
                     ).view_as(targets)


__all__ = [
    "DEMVAEPosterior",
    "GRUDecoder",
    "PosteriorHeads",
    "SentenceEncoder",
    "at_positions",
    "check_input_ids",
    "check_nonempty_rows",
    "mask_from",
    "real_tokens_first",
    "token_nll",
    "state_at",
]
