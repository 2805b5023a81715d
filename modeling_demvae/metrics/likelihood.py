"""Importance-weighted log-likelihood, ELBO and perplexity of sentences under a DEM-VAE (or a baseline).

    log p(x) ~= logsumexp_s [ log p(x|z_s) + log p(z_s, c_s) - log q(z_s, c_s|x) ] - log S,  (z_s, c_s) ~ q(z, c|x)

The proposal and densities follow the decoder: whatever it is conditioned on is sampled, the rest is summed out.
- dem: the decoder sees only z, so c is summed out exactly: log p(z) is the mixture density, the proposal q(z|x)
  (for the categorical family a product of categoricals, z drawn one-hot by Gumbel-max).
- vae: the proposal q(z|x), the prior N(0, I).
- discrete: summing over K^G codes is intractable, so codes are sampled from q(c|x); p(c) is uniform.
- semi: z and codes are both sampled, from q(z|x) q(c|x).
- rnnlm: no latent; log p(x) is exact.
All sentences and samples of a batch go through the decoder together; weights are summed in float64 and combined
with log-sum-exp, so a sentence with a tiny likelihood is kept (the reference code dropped those that underflowed).

Under bf16 autocast the encoder, the decoder and the output layer run their products in bf16; the latents are drawn
in float32 from the posterior they computed (a bf16-rounded latent would not be the draw whose density enters the
weight), and the log-softmax, densities and weights stay in float32 and float64.
"""

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..modeling_demvae import IGNORE_INDEX, DEMVAEPosterior
from ..priors import gaussian_log_density
from .sentences import as_id_lists, length_sorted_batches, pad_batch

CPU_LOSS_TOKENS = 32  # logits rows per cross-entropy call when scoring on a CPU: a float32 block stays in cache


def sentence_log_likelihood_given_latent(model, input_ids, attention_mask, latent) -> torch.Tensor:
    """log p(x|latent) per row, teacher-forced, in float64: (R, L) ids and (R, D) latents -> (R,)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, latent=latent).logits
    return -token_log_losses(logits[:, :-1], next_token_targets(input_ids, attention_mask)).double().sum(-1)


def next_token_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The token each position predicts, (R, L - 1), IGNORE_INDEX where that is padding."""
    return input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, IGNORE_INDEX)


def token_log_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy of (R, L, V) logits against (R, L) targets (IGNORE_INDEX: none), in float32. The
    vocabulary is kept the last, contiguous dimension: on a CPU, a softmax over a strided dimension costs as much
    again as the output layer's matrix product. Scoring on a CPU (no gradient), a few rows go at a time
    (`loss_rows`): the float32 copy and the softmax of the whole (R * L, V) block are bound by memory traffic,
    while a block of about CPU_LOSS_TOKENS tokens stays in cache, about 5x faster with the same numbers."""
    rows = loss_rows(logits)
    blocks = [slice(start, start + rows) for start in range(0, max(len(logits), 1), rows)]
    losses = [F.cross_entropy(logits[block].float().flatten(0, 1), targets[block].flatten(),
                              ignore_index=IGNORE_INDEX, reduction="none") for block in blocks]
    return torch.cat(losses).view(targets.shape)


def loss_rows(logits: torch.Tensor) -> int:
    """Rows of (R, L, V) logits per cross-entropy call: all of them on an accelerator (one kernel each) or under
    autograd (a blocked backward adds every block's gradient into a full-size one), else blocks of about
    CPU_LOSS_TOKENS tokens."""
    if logits.device.type != "cpu" or (torch.is_grad_enabled() and logits.requires_grad):
        return max(len(logits), 1)
    return max(1, CPU_LOSS_TOKENS // max(logits.shape[1], 1))


def log_importance_terms(model, posterior, latent, repeats: int) -> torch.Tensor:
    """log p(z, c) - log q(z, c|x) for latents drawn by `model.posterior_latent` (rows of a sentence adjacent)."""
    config = model.config
    log_ratio = latent.new_zeros(latent.shape[0], dtype=torch.float64)
    if config.has_continuous_latent:
        z = latent[:, : config.continuous_size].double()
        mean = posterior.mean.double().repeat_interleave(repeats, 0)
        logvar = posterior.logvar.double().repeat_interleave(repeats, 0)
        log_ratio += model.prior.log_prob(z).double() - gaussian_log_density(z, mean, logvar).sum(-1)
    if config.has_categorical_latent:
        z = latent.double()
        log_q = F.log_softmax(posterior.latent_logits.double(), -1).repeat_interleave(repeats, 0)
        log_ratio += model.prior.log_prob(z) - (z.view_as(log_q) * log_q).sum(dim=(1, 2, 3))
    if config.variant in ("discrete", "semi"):
        codes = latent[:, config.continuous_size :].double().view(-1, config.num_groups, config.num_components)
        log_q = F.log_softmax(posterior.component_logits.double(), -1).repeat_interleave(repeats, 0)
        log_ratio += -config.num_groups * math.log(config.num_components) - (codes * log_q).sum(dim=(1, 2))
    return log_ratio


@torch.no_grad()
def sentence_log_likelihoods(
    model,
    sentences,
    *,
    num_samples: int = 500,
    max_tokens: int = 16384,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Per sentence, in input order (float64): the importance-weighted `log_likelihood`, the model's `elbo`
    (-(nll + zkl + dispersion + KL(q(c|x)||U)), its reconstruction term averaged over the same samples),
    and `num_tokens`, the predicted tokens (words and `</s>`).

    `max_tokens` bounds the padded tokens of one decoder call (memory ~ max_tokens * vocab_size floats).
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
    sentences = as_id_lists(sentences)
    config = model.config
    samples = 1 if config.variant == "rnnlm" else num_samples
    log_likelihood = torch.empty(len(sentences), dtype=torch.float64)
    elbo = torch.empty(len(sentences), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
            torch.manual_seed(seed)
            batches = length_sorted_batches(sentences, max_tokens, rows_per_sentence=samples)
            for indices in tqdm(batches, desc="nll", disable=not progress):
                batch = [sentences[i] for i in indices]
                batch_ll, batch_elbo = _batch_log_likelihood(model, batch, samples, max_tokens)
                log_likelihood[indices], elbo[indices] = batch_ll, batch_elbo
    finally:
        model.train(was_training)
    num_tokens = torch.tensor([len(s) - 1 for s in sentences], dtype=torch.float64)
    return {"log_likelihood": log_likelihood, "elbo": elbo, "num_tokens": num_tokens}


def _batch_log_likelihood(model, batch, samples: int, max_tokens: int):
    """log p(x) and ELBO of the sentences of one batch, decoding all (sentence, sample) rows in chunks."""
    input_ids, attention_mask = pad_batch(batch, model.config.pad_token_id, model.device)
    if model.config.variant == "rnnlm":
        latent = torch.zeros(len(batch), 0, device=model.device, dtype=model.dtype)
        log_px = sentence_log_likelihood_given_latent(model, input_ids, attention_mask, latent).cpu()
        return log_px, log_px
    posterior = model.encode(input_ids, attention_mask, check_vocabulary=False)
    posterior = DEMVAEPosterior(**{name: value.to(torch.promote_types(value.dtype, torch.float32))
                                   for name, value in posterior.items()})
    latent = model.posterior_latent(posterior, num_samples=samples)
    rows_per_call = max(1, max_tokens // input_ids.shape[1])
    row_ids, row_mask = input_ids.repeat_interleave(samples, 0), attention_mask.repeat_interleave(samples, 0)
    log_px_given_z = torch.cat([
        sentence_log_likelihood_given_latent(
            model, row_ids[start : start + rows_per_call], row_mask[start : start + rows_per_call],
            latent[start : start + rows_per_call],
        )
        for start in range(0, latent.shape[0], rows_per_call)
    ]).view(len(batch), samples)
    log_weights = log_px_given_z + log_importance_terms(model, posterior, latent, samples).view(len(batch), samples)
    log_px = torch.logsumexp(log_weights, dim=1) - math.log(samples)
    terms = model.latent_terms(posterior, len(batch))
    kl = (terms["zkl"] + terms["dispersion"] + terms["ckl"]).double()
    return log_px.cpu(), (log_px_given_z.mean(1) - kl).cpu()


def exp_or_inf(value: float) -> float:
    """exp, with infinity for an untrained model's huge per-token loss instead of an OverflowError."""
    return math.exp(value) if value < 709.0 else math.inf


def nll_summary(result: dict[str, torch.Tensor], num_samples: int) -> dict[str, float]:
    """Corpus summary of per-sentence results (`sentence_log_likelihoods`, or several of them concatenated):
    `nll` (mean -log p(x) per sentence, nats), `ppl` (per-token perplexity from it, `</s>` counted as a token) and
    `elbo` (mean per sentence, the usual negative number)."""
    total_nll = -result["log_likelihood"].sum().item()
    return {
        "nll": total_nll / len(result["log_likelihood"]),
        "ppl": exp_or_inf(total_nll / result["num_tokens"].sum().item()),
        "elbo": result["elbo"].mean().item(),
        "num_sentences": len(result["log_likelihood"]),
        "nll_samples": num_samples,
    }


def importance_weighted_nll(model, sentences, *, num_samples: int = 500, **kwargs) -> dict[str, float]:
    """`nll_summary` of the sentences' importance-weighted estimates; keyword arguments as for
    `sentence_log_likelihoods`."""
    result = sentence_log_likelihoods(model, sentences, num_samples=num_samples, **kwargs)
    return nll_summary(result, 1 if model.config.variant == "rnnlm" else num_samples)


__all__ = ["sentence_log_likelihoods", "importance_weighted_nll", "nll_summary", "sentence_log_likelihood_given_latent",
           "token_log_losses"]
