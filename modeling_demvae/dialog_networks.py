"""The context side of the dialog model: each turn encoded by a bidirectional GRU pooled by attention, a GRU over the
turns, and the response decoder's attention over the turns' states. Everything is masked: padded tokens within a
turn and padded turns never reach a state that is used (the reference code masks none of them).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .configuration_dialog import DEMVAEDialogConfig
from .gru import run_gru
from .networks import SentenceEncoder, real_tokens_first, state_at


@dataclass
class DialogContext(ModelOutput):
    """An encoded context: the turns' states `memory` (B, M, C), real turns first, with `memory_mask` (B, M) saying
    which are real, and the state after the last turn, `state` (B, C)."""

    memory: torch.Tensor | None = None
    memory_mask: torch.Tensor | None = None
    state: torch.Tensor | None = None


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension where `mask` is true; masked entries get exactly 0 (each row needs one)."""
    return scores.masked_fill(~mask, float("-inf")).softmax(-1)


class AttentionPooling(nn.Module):
    """One vector from a sequence of states: weights softmax(v^T tanh(W h_t)) over the real positions."""

    def __init__(self, input_size: int, attention_size: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(input_size, attention_size), nn.Tanh(),
                                   nn.Linear(attention_size, 1, bias=False))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = masked_softmax(self.score(states).squeeze(-1), mask)
        return torch.einsum("bt,bth->bh", weights, states)


class ContextEncoder(nn.Module):
    """Turns (B, T, L) -> each turn's tokens through a bidirectional GRU, pooled by attention (the speaker is the
    turn's marker token) -> a GRU over the turns. Only real turns are encoded, and padded tokens are masked out of
    the pooling, so padding changes nothing; turns and their tokens may be padded on either side."""

    def __init__(self, config: DEMVAEDialogConfig):
        super().__init__()
        response = config.response_config
        self.utterance_encoder = SentenceEncoder(
            response.vocab_size, response.embed_size, config.utterance_hidden_size, dropout=response.dropout,
            pad_token_id=response.pad_token_id,
        )
        self.pooling = AttentionPooling(2 * config.utterance_hidden_size, config.attention_size)
        self.turn_rnn = nn.GRU(2 * config.utterance_hidden_size, config.context_hidden_size, batch_first=True)

    def encode_turns(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, L) turns with at least one real token each -> (N, 2 * utterance_hidden_size)."""
        packed, lengths, _ = real_tokens_first(input_ids, mask)
        states = self.utterance_encoder.outputs(self.utterance_encoder.embed(packed), lengths)
        inside = torch.arange(packed.shape[1], device=packed.device) < lengths.unsqueeze(1)
        return self.pooling(states, inside)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> DialogContext:
        turn_mask = mask.any(-1)  # (B, T): a turn with no real token is padding
        turns = input_ids.new_zeros(*turn_mask.shape, 2 * self.utterance_encoder.forward_rnn.hidden_size,
                                    dtype=self.turn_rnn.weight_ih_l0.dtype)
        turns[turn_mask] = self.encode_turns(input_ids[turn_mask], mask[turn_mask]).to(turns.dtype)
        packed, num_turns, _ = real_tokens_first(turns, turn_mask)
        memory, _ = run_gru(self.turn_rnn, packed)
        memory_mask = torch.arange(memory.shape[1], device=memory.device) < num_turns.unsqueeze(1)
        return DialogContext(memory=memory, memory_mask=memory_mask, state=state_at(memory, num_turns - 1))


class TurnAttention(nn.Module):
    """The response decoder's attention over the context's turns (Luong's, after the GRU): scores h_t W m_j over the
    real turns, the attended vector a_t, and the output tanh(W_o [h_t; a_t])."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.query = nn.Linear(query_size, memory_size, bias=False)
        self.output = nn.Linear(query_size + memory_size, query_size)

    def forward(self, hidden: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        scores = self.query(hidden) @ memory.transpose(1, 2)  # (B, T, M)
        attended = masked_softmax(scores, memory_mask.unsqueeze(1)) @ memory
        return torch.tanh(self.output(torch.cat((hidden, attended), dim=-1)))


__all__ = ["AttentionPooling", "ContextEncoder", "DialogContext", "TurnAttention", "masked_softmax"]
