"""Reverse perplexity (rPPL): train a fresh LSTM language model on sentences sampled from the model's prior and
measure its perplexity on the real test set. Low only when samples are fluent AND cover the data.
Under bf16 autocast the sampling decoder and the language model run their products in bf16, their losses in float32.

Protocol (spec section 6): 40,000 prior samples to train on and 3,000 more for early stopping (presets below
shrink this for quick runs). Samples are z ~ p(z) decoded greedily, batched.

Words of the test set never generated: the language model's vocabulary is the evaluated model's whole vocabulary
(the one the test set is tokenized with), not just the generated words. A word the samples never contain keeps
the (small) probability the softmax leaves it, so a model whose samples miss part of the data pays for it in rPPL,
which is the point of the metric; mapping such words to `<unk>` instead would reward samples with a poor
vocabulary. `unseen_test_token_rate` reports how many test tokens were never generated.
"""

import copy
import os
import pickle
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..modeling_demvae import IGNORE_INDEX
from .likelihood import exp_or_inf, next_token_targets, token_log_losses
from .sentences import as_id_lists, decode_sentences, length_sorted_batches, pad_batch

RPPL_PRESETS = {"paper": (40_000, 3_000), "quick": (4_000, 400), "smoke": (300, 60)}  # (train, validation) samples


class LSTMLanguageModel(nn.Module):
    """A one-layer word LSTM language model with tied input and output embeddings."""

    def __init__(self, vocab_size: int, *, hidden_size: int = 256, dropout: float = 0.3, pad_token_id: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_token_id)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.output.weight = self.embedding.weight
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(input_ids))
        if embedded.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast sends an LSTM with float32 inputs to oneDNN's bf16 LSTM, which fails on CPUs without
            # AVX-512 or Arm bf16; given bf16 inputs, PyTorch takes oneDNN's where the CPU has it and its own elsewhere
            embedded = embedded.to(torch.get_autocast_dtype("cpu"))
        hidden, _ = self.lstm(embedded)
        return self.output(self.dropout(hidden))

    def token_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Summed next-token NLL and the number of predicted tokens of a padded batch."""
        targets = next_token_targets(input_ids, attention_mask)
        return token_log_losses(self(input_ids)[:, :-1], targets).sum(), (targets != IGNORE_INDEX).sum()


@torch.no_grad()
def language_model_perplexity(lm: LSTMLanguageModel, sentences, *, max_tokens: int = 8192) -> float:
    """Per-token perplexity (`</s>` counted) of a language model on sentences with `<s>` and `</s>`."""
    sentences = as_id_lists(sentences)
    device = next(lm.parameters()).device
    was_training = lm.training
    lm.eval()
    total_nll, total_tokens = 0.0, 0
    for indices in length_sorted_batches(sentences, max_tokens):
        input_ids, attention_mask = pad_batch([sentences[i] for i in indices], lm.pad_token_id, device)
        nll, tokens = lm.token_nll(input_ids, attention_mask)
        total_nll, total_tokens = total_nll + nll.double().item(), total_tokens + tokens.item()
    lm.train(was_training)
    return exp_or_inf(total_nll / total_tokens)


def train_language_model(
    train_sentences,
    valid_sentences,
    *,
    vocab_size: int,
    pad_token_id: int = 0,
    hidden_size: int = 256,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    max_epochs: int = 30,
    patience: int = 2,
    seed: int = 0,
    device=None,
    progress: bool = False,
    checkpoint=None,
    after_epoch=None,
) -> tuple[LSTMLanguageModel, list[float]]:
    """Train with Adam on length-bucketed batches; stop when validation perplexity has not improved for
    `patience` epochs and return the best model and the validation perplexity after each epoch.

    With a `checkpoint` path, the training state is saved there after every epoch, and a training that finds one
    continues from it: an interrupted training (hours on 40,000 samples on a CPU) ends where an uninterrupted one
    would, losing at most an epoch. `after_epoch(history)`, when given, is called with the validation perplexities
    so far once each epoch's checkpoint is written (an evaluation saves its progress there and logs the epoch)."""
    train_sentences, valid_sentences = as_id_lists(train_sentences), as_id_lists(valid_sentences)
    if not train_sentences or not valid_sentences:
        raise ValueError("the language model needs non-empty training and validation sentences.")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm = LSTMLanguageModel(vocab_size, hidden_size=hidden_size, pad_token_id=pad_token_id).to(device)
    optimizer = torch.optim.Adam(lm.parameters(), lr=learning_rate)
    order = sorted(range(len(train_sentences)), key=lambda i: len(train_sentences[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    history, best_state, best_epoch, stopped = [], None, 0, False
    if checkpoint is not None and Path(checkpoint).is_file():
        try:
            saved = torch.load(checkpoint, map_location=device, weights_only=True)
            lm.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            generator.set_state(saved["generator"])
            history, best_state, best_epoch, stopped = (saved[key] for key in ("history", "best_state", "best_epoch",
                                                                               "stopped"))
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ValueError(f"the language model checkpoint {checkpoint} is damaged ({reason[:200]}); delete it to "
                             "train that language model again.") from None
    epochs = range(len(history), len(history) if stopped else max_epochs)
    for epoch in tqdm(epochs, desc="rPPL language model", disable=not progress):
        lm.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + epoch)  # dropout masks: same seed, same model
            for b in torch.randperm(len(batches), generator=generator).tolist():
                input_ids, attention_mask = pad_batch([train_sentences[i] for i in batches[b]], pad_token_id, device)
                nll, tokens = lm.token_nll(input_ids, attention_mask)
                optimizer.zero_grad()
                (nll / tokens).backward()
                nn.utils.clip_grad_norm_(lm.parameters(), 5.0)
                optimizer.step()
                torch.clear_autocast_cache()  # under the caller's autocast, its copies of the weights are now stale
        history.append(language_model_perplexity(lm, valid_sentences))
        if best_state is None or history[-1] < min(history[:-1]):
            best_state, best_epoch = copy.deepcopy(lm.state_dict()), epoch
        stopped = best_epoch != epoch and epoch - best_epoch >= patience
        if checkpoint is not None:
            save_atomically({"model": lm.state_dict(), "optimizer": optimizer.state_dict(),
                             "generator": generator.get_state(), "history": history, "best_state": best_state,
                             "best_epoch": best_epoch, "stopped": stopped}, Path(checkpoint))
        if after_epoch is not None:
            after_epoch(history)
        if stopped:
            break
    lm.load_state_dict(best_state)
    torch.clear_autocast_cache()  # the same for the best epoch's weights
    return lm.eval(), history


def save_atomically(state: dict, path: Path) -> None:
    """`torch.save` into a temporary file renamed into place: a crash leaves the old checkpoint or the new one."""
    temporary = path.with_name(f".tmp-{path.name}")
    torch.save(state, temporary)
    os.replace(temporary, path)


@torch.no_grad()
def sample_sentences(model, num_samples: int, *, batch_size: int = 500, seed: int = 0, progress: bool = False):
    """`num_samples` sentences from the prior (z ~ p(z), greedy decoding) as id lists with `<s>` and `</s>`;
    the latents are drawn first, so the sentences do not depend on `batch_size`.

    A model without a latent (the RNNLM) has a single greedy sentence, which would make its rPPL and wKL measure
    one sentence: its words are sampled from the decoder's distribution instead (then they depend on `batch_size`).
    """
    config = model.config
    ancestral = {} if config.decoder_latent_size else {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0}
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        latent = model.sample_prior(num_samples)
        words = decode_sentences(model, latent, batch_size=batch_size, progress=progress, **ancestral)
    return [[config.bos_token_id, *w, config.eos_token_id] for w in words]


def reverse_perplexity_from_samples(train_samples, valid_samples, test_sentences, *, vocab_size: int, **lm_kwargs):
    """rPPL of given generated sentences: train the language model on them, score the real test sentences."""
    lm, history = train_language_model(train_samples, valid_samples, vocab_size=vocab_size, **lm_kwargs)
    test_sentences = as_id_lists(test_sentences)
    generated_words = {token for sentence in train_samples for token in sentence}
    test_tokens = [token for sentence in test_sentences for token in sentence[1:]]
    unseen = sum(token not in generated_words for token in test_tokens)
    return {
        "rppl": language_model_perplexity(lm, test_sentences),
        "rppl_valid_ppl": min(history),
        "rppl_epochs": len(history),
        "rppl_train_samples": len(train_samples),
        "rppl_valid_samples": len(valid_samples),
        "unseen_test_token_rate": unseen / len(test_tokens),
    }


def reverse_perplexity_ceiling(train_sentences, valid_sentences, test_sentences, *, num_train: int = 40_000,
                               num_valid: int = 3_000, vocab_size: int, seed: int = 0, **lm_kwargs) -> dict:
    """The rPPL perfect samples would reach: the same language model trained on `num_train` random real training
    sentences (all when fewer), stopped on `num_valid` random real validation sentences, scored on the test set.
    A model's distance from it says how far its samples are from the data, whatever the language model."""
    if num_train < 1 or num_valid < 1:
        raise ValueError(f"num_train and num_valid must be positive, got {num_train} and {num_valid}.")
    generator = torch.Generator().manual_seed(seed)
    train, valid = (
        [sentences[i] for i in torch.randperm(len(sentences), generator=generator)[:count].tolist()]
        for sentences, count in ((as_id_lists(train_sentences), num_train), (as_id_lists(valid_sentences), num_valid))
    )
    return reverse_perplexity_from_samples(train, valid, test_sentences, vocab_size=vocab_size, seed=seed, **lm_kwargs)


def reverse_perplexity(model, test_sentences, *, num_train: int = 40_000, num_valid: int = 3_000, seed: int = 0,
                       progress: bool = False, **lm_kwargs) -> dict:
    """Sample `num_train + num_valid` sentences from the model's prior and return their rPPL on the test set."""
    if num_train < 1 or num_valid < 1:
        raise ValueError(f"num_train and num_valid must be positive, got {num_train} and {num_valid}.")
    samples = sample_sentences(model, num_train + num_valid, seed=seed, progress=progress)
    return reverse_perplexity_from_samples(
        samples[:num_train], samples[num_train:], test_sentences, vocab_size=model.config.vocab_size,
        pad_token_id=model.config.pad_token_id, seed=seed, device=model.device, progress=progress, **lm_kwargs
    )


__all__ = [
    "RPPL_PRESETS",
    "LSTMLanguageModel",
    "language_model_perplexity",
    "train_language_model",
    "sample_sentences",
    "reverse_perplexity_from_samples",
    "reverse_perplexity_ceiling",
    "reverse_perplexity",
]
