"""Conversations as the dialog model reads them: turns `<s> <speaker> words </s>`, the most recent `context_turns`,
each cut to `max_utterance_length` tokens keeping its markers and its last words, padded into (batch, turns, tokens).
A whole conversation written as one sequence (as the dialog tokenizer's chat template writes it) is split into those
turns and the turn it leaves open, the response's start.
"""

from collections.abc import Sequence

import torch


def clipped_turn(ids: Sequence[int], max_length: int) -> list[int]:
    """A turn of at most `max_length` tokens: its two markers (`<s>` and the speaker) and its last tokens (the words
    nearest the response, and `</s>`), as the reference keeps a turn's last tokens."""
    return list(ids) if len(ids) <= max_length else [*ids[:2], *ids[len(ids) - (max_length - 2):]]


def context_tensors(contexts: Sequence[Sequence[Sequence[int]]], pad_token_id: int):
    """Contexts (lists of turns of token ids) as right-padded (B, T, L) ids and their attention mask."""
    turns = max(len(context) for context in contexts)
    tokens = max(len(turn) for context in contexts for turn in context)
    ids = torch.full((len(contexts), turns, tokens), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, context in enumerate(contexts):
        for index, turn in enumerate(context):
            ids[row, index, :len(turn)] = torch.as_tensor(turn, dtype=torch.long)
            mask[row, index, :len(turn)] = 1
    return ids, mask


def conversation_turns(ids: Sequence[int], bos_token_id: int, eos_token_id: int):
    """One conversation's tokens as its complete turns (each from a `<s>` to its `</s>`) and the turn left open at
    the end (`[<s>]` when none is)."""
    starts = [position for position, token in enumerate(ids) if token == bos_token_id]
    if not starts or starts[0] != 0:
        raise ValueError("a conversation must start with <s>: write it with the dialog tokenizer's chat template "
                         "(tokenizer.apply_chat_template(messages, add_generation_prompt=True)).")
    turns = [list(ids[start:end]) for start, end in zip(starts, [*starts[1:], len(ids)])]
    if turns[-1][-1] == eos_token_id:
        return turns, [bos_token_id]
    return turns[:-1], turns[-1]


def split_conversations(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config):
    """(B, length) conversations, padded on either side -> the contexts (B, T, L) with their mask, and the open turns
    left-padded (B, P) with theirs, at most `config.context_turns` turns of `config.max_utterance_length` tokens."""
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    contexts, prompts = [], []
    for row, row_mask in zip(input_ids.tolist(), mask.tolist()):
        real = [token for token, keep in zip(row, row_mask) if keep]
        turns, prompt = conversation_turns(real, config.bos_token_id, config.eos_token_id)
        if not turns:
            raise ValueError("a conversation needs at least one complete turn before the response.")
        contexts.append([clipped_turn(turn, config.max_utterance_length) for turn in turns[-config.context_turns:]])
        prompts.append(prompt)
    context_ids, context_mask = context_tensors(contexts, config.pad_token_id)
    width = max(len(prompt) for prompt in prompts)
    prompt_ids = torch.full((len(prompts), width), config.pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    for row, prompt in enumerate(prompts):
        prompt_ids[row, width - len(prompt):] = torch.as_tensor(prompt, dtype=torch.long)
        prompt_mask[row, width - len(prompt):] = 1
    device = input_ids.device
    return context_ids.to(device), context_mask.to(device), prompt_ids.to(device), prompt_mask.to(device)


__all__ = ["clipped_turn", "context_tensors", "conversation_turns", "split_conversations"]
