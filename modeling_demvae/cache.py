"""The decoder's state between generation steps, as a transformers `Cache`: the GRU state and each row's latent (and,
for the dialog model's response decoder, the context it attends to)."""

import torch
from transformers import Cache


class DEMVAECache(Cache):
    """The decoder's state between decoding steps: the GRU state `state` (1, B, H) after the positions read so far,
    the latent `latent` (B, D) that the decoder reads at every step, and the number of positions read, padding
    included (`get_seq_length`), by which `generate` skips the part of a continued prompt the state has read.

    `generate(..., return_dict_in_generate=True)` returns it as `cache`; passing it back (`cache=out.cache`, with
    `out.sequences` as the prompt) continues those sentences. A GRU state cannot be rewound, so it cannot be cropped
    (no assisted decoding), and it is not a static cache to compile; beam search reorders its rows."""

    is_compileable = False
    is_croppable = False
    is_linear = (False,)  # it counts the positions it has read: `generate` slices a continued prompt by them

    def __init__(self, state: torch.Tensor, latent: torch.Tensor, seq_length: int = 0):
        super().__init__(layers=[])
        self.state, self.latent, self.seq_length = state, latent, seq_length

    def advance(self, state: torch.Tensor, num_positions: int) -> None:
        """Take the state after `num_positions` more positions."""
        self.state, self.seq_length = state, self.seq_length + num_positions

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seq_length

    @property
    def batch_size(self) -> int:
        return self.state.shape[1]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        indices = indices.to(self.state.device)
        self.state, self.latent = self.state[:, indices], self.latent[indices]

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.state, self.latent = self.state.repeat_interleave(repeats, 1), self.latent.repeat_interleave(repeats, 0)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a GRU state cannot be rewound: DEMVAECache cannot be cropped (so DEM-VAE has no "
                                  "assisted or prompt-lookup decoding).")


class DEMVAEDialogCache(DEMVAECache):
    """The dialog model's response decoder state: a `DEMVAECache` (GRU state, latent, positions read) and the
    context it attends to at every step, the turn states `memory` (B, M, C) and which of them are real turns,
    `memory_mask` (B, M). Its rows follow beam search and repeats as the state's do."""

    def __init__(self, state: torch.Tensor, latent: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                 seq_length: int = 0):
        super().__init__(state, latent, seq_length)
        self.memory, self.memory_mask = memory, memory_mask

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        indices = indices.to(self.memory.device)
        self.memory, self.memory_mask = self.memory[indices], self.memory_mask[indices]

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.memory = self.memory.repeat_interleave(repeats, 0)
        self.memory_mask = self.memory_mask.repeat_interleave(repeats, 0)


def checked_cache(cache) -> DEMVAECache | None:
    if cache is not None and not isinstance(cache, DEMVAECache):
        raise TypeError(f"cache must be the DEMVAECache that a decoding call returned (out.cache), got "
                        f"{type(cache).__name__}.")
    return cache


__all__ = ["DEMVAECache", "DEMVAEDialogCache", "checked_cache"]
