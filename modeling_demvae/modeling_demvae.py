"""DEM-VAE: a GRU sentence VAE with a dispersed exponential-family mixture prior (Shi et al., ICML 2020).

x --GRU encoder--> q(z|x), q(c|x) --z--> GRU decoder --> p(x|z), with p(z) a mixture of K components in each of
G groups. The baselines of the paper (VAE, DI-VAE, semi-VAE, RNNLM) share the same backbone and are config variants.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_demvae import DEMVAEConfig
from .gru import run_gru, run_grus
from .priors import PRIOR_CLASSES, GaussianMixturePrior, checked_components

IGNORE_INDEX = -100


@dataclass
class DEMVAEPosterior(ModelOutput):
    """q(z, c | x) = q(z|x) q(c|x): Gaussian parameters (B, G*d) and component probabilities (B, G, K)."""

    mean: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    component_logits: torch.Tensor | None = None
    component_probs: torch.Tensor | None = None


@dataclass
class DEMVAEOutput(ModelOutput):
    """Loss terms are per-sentence batch means in nats, summed over groups; `elbo` is the usual negative number.

    `latent` is the decoder's conditioning vector, (B, D), or (B, S, D) with S > 1 posterior samples.
    `cache` is the decoder's GRU state, (1, B, H), during generation.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    nll: torch.Tensor | None = None
    zkl: torch.Tensor | None = None
    dispersion: torch.Tensor | None = None
    agg_ckl: torch.Tensor | None = None
    mi: torch.Tensor | None = None
    elbo: torch.Tensor | None = None
    kl_weight: torch.Tensor | None = None
    component_probs: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    posterior_mean: torch.Tensor | None = None
    posterior_logvar: torch.Tensor | None = None
    cache: torch.Tensor | None = None


def lengths_from(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int | None):
    """Real token count per sentence, from the attention mask or, failing that, from the pad id."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids) if pad_token_id is None else input_ids.ne(pad_token_id)
    return attention_mask.long().sum(-1)


def check_nonempty_rows(lengths: torch.Tensor) -> None:
    """Every sentence needs a token. On an accelerator the check is asynchronous, so it never stalls the step."""
    message = "every sentence needs at least one token; found an empty row in the batch."
    if lengths.device.type == "cpu":
        if (lengths < 1).any():
            raise ValueError(message)
    else:
        torch._assert_async((lengths > 0).all(), message)


def repeat_rows(x: torch.Tensor, times: int) -> torch.Tensor:
    """Each row `times` times in a row (samples of one sentence adjacent); no copy when `times` is 1."""
    return x if times == 1 else x.repeat_interleave(times, 0)


def categorical_entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)


def state_at(outputs: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """A GRU's outputs (B, T, H) at each sentence's last real position `last` (B,): padding never reaches them."""
    return outputs.gather(1, last.view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])).squeeze(1)


class SentenceEncoder(nn.Module):
    """Embedding + GRU read left to right and, per sentence, right to left from its last real token.

    Each direction's state is taken at the sentence's last real token, so padding never reaches the encoding (the
    reference code's encoder reads it). Two plain GRU runs over the padded batch beat packed sequences: no sorting,
    no host-device synchronisation, and length-bucketed batches carry little padding. In CPU training the two
    directions advance in step (`gru.run_grus`)."""

    def __init__(self, config: DEMVAEConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embed_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.forward_rnn = nn.GRU(config.embed_size, config.encoder_hidden_size, batch_first=True)
        self.backward_rnn = (
            nn.GRU(config.embed_size, config.encoder_hidden_size, batch_first=True)
            if config.bidirectional_encoder
            else None
        )

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(input_ids))
        last = lengths - 1
        rnns, inputs = [self.forward_rnn], [embedded]
        if self.backward_rnn is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            inside = positions < lengths.unsqueeze(1)
            reverse = torch.where(inside, last.unsqueeze(1) - positions, positions)  # flip each sentence in place
            rnns.append(self.backward_rnn)
            inputs.append(embedded.gather(1, reverse.unsqueeze(-1).expand_as(embedded)))
        return torch.cat([state_at(outputs, last) for outputs, _ in run_grus(rnns, inputs)], dim=-1)


class PosteriorHeads(nn.Module):
    """The three heads on the encoder state: q(z|x) mean and log-variance, and q(c|x) logits."""

    def __init__(self, config: DEMVAEConfig, encoder_size: int):
        super().__init__()
        self.num_groups, self.num_components = config.num_groups, config.num_components
        if config.has_continuous_latent:
            self.mean = nn.Linear(encoder_size, config.continuous_size)
            self.logvar = nn.Linear(encoder_size, config.continuous_size)
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
        if hasattr(self, "component_logits"):
            logits = self.component_logits(encoded).view(-1, self.num_groups, self.num_components)
            posterior.component_logits, posterior.component_probs = logits, logits.softmax(-1)
        return posterior


class GRUDecoder(nn.Module):
    """GRU language model conditioned on a latent: h_0 = W z, and z concatenated to every input embedding."""

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

    def forward(self, input_ids, latent, state=None):
        """Run the GRU from `state` (or the latent's initial state). It is causal, so right padding only produces
        outputs past each sentence's end, which the loss ignores."""
        inputs = self.dropout(self.embedding(input_ids))
        if self.concat_latent:
            inputs = torch.cat((inputs, latent.unsqueeze(1).expand(-1, inputs.shape[1], -1)), dim=-1)
        outputs, state = run_gru(self.rnn, inputs, self.initial_state(latent) if state is None else state)
        return self.dropout(outputs), state


class DEMVAEPreTrainedModel(PreTrainedModel):
    config: DEMVAEConfig
    config_class = DEMVAEConfig
    base_model_prefix = "demvae"
    main_input_name = "input_ids"
    _is_stateful = True  # the GRU state cannot be rewound, so no assisted generation

    def _init_weights(self, module):
        """Uniform(-r, r) for weights as in the reference code, zero biases, N(0, 1) component means."""
        r = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.uniform_(module.weight, -r, r)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                (init.zeros_ if name.startswith("bias") else lambda p: init.uniform_(p, -r, r))(param)
        elif isinstance(module, GaussianMixturePrior):
            if isinstance(module.means, nn.Parameter):
                init.normal_(module.means, 0.0, 1.0)
            else:  # the VAE's fixed N(0, I): not in the checkpoint, so from_pretrained relies on this
                init.zeros_(module.means)
            init.zeros_(module.log_variances)


class DEMVAEForGeneration(DEMVAEPreTrainedModel, GenerationMixin):
    """The DEM-VAE (and its baselines, by `config.variant`) with training losses and component-wise generation."""

    _tied_weights_keys = {"lm_head.weight": "decoder.embedding.weight"}

    def __init__(self, config: DEMVAEConfig):
        super().__init__(config)
        if config.variant != "rnnlm":
            self.encoder = SentenceEncoder(config)
            encoder_size = config.encoder_hidden_size * (2 if config.bidirectional_encoder else 1)
            self.posterior = PosteriorHeads(config, encoder_size)
        if config.has_mixture_prior:
            self.prior = PRIOR_CLASSES[config.prior_family](
                num_groups=config.num_groups, num_components=config.num_components, latent_size=config.latent_size
            )
        elif config.has_continuous_latent:  # VAE and semi-VAE: z ~ N(0, I)
            self.prior = GaussianMixturePrior(
                num_groups=1, num_components=1, latent_size=config.continuous_size, learnable=False
            )
        self.decoder = GRUDecoder(config)
        self.lm_head = nn.Linear(config.decoder_hidden_size, config.vocab_size)
        self.post_init()
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            max_new_tokens=config.max_sentence_length - 1,
            do_sample=False,
        )

    def get_input_embeddings(self):
        return self.decoder.embedding

    def set_input_embeddings(self, value):
        self.decoder.embedding = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    # ----- inference network -----

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> DEMVAEPosterior:
        """Posterior parameters q(z|x) and component probabilities q(c|x) for a batch of sentences."""
        if self.config.variant == "rnnlm":
            raise ValueError("variant='rnnlm' has no latent variable to encode.")
        if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            shape = tuple(input_ids.shape)
            raise ValueError(f"input_ids must be a non-empty (batch, length) tensor, got shape {shape}.")
        lengths = lengths_from(input_ids, attention_mask, self.config.pad_token_id)
        check_nonempty_rows(lengths)
        return self.posterior(self.encoder(input_ids, lengths))

    def posterior_noise_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the noise `forward` draws for `batch_size` sentences (S = num_posterior_samples): "gaussian"
        (B, S, G*d) for z and "gumbel" (B, S, G, K) for the discrete codes, each only where the variant has it."""
        config, samples, shapes = self.config, self.config.num_posterior_samples, {}
        if config.has_continuous_latent:
            shapes["gaussian"] = (batch_size, samples, config.continuous_size)
        if config.variant in ("discrete", "semi"):
            shapes["gumbel"] = (batch_size, samples, config.num_groups, config.num_components)
        return shapes

    def posterior_noise(self, batch_size: int, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Standard normal and standard Gumbel noise for `forward(posterior_noise=...)`, drawn from `generator`.

        One row per sentence: the noise of a whole batch can be drawn once and sliced among processes and
        micro-batches, so that each sentence's latent does not depend on how the batch is split."""
        shapes, noise = self.posterior_noise_shapes(batch_size), {}
        if "gaussian" in shapes:
            noise["gaussian"] = torch.randn(shapes["gaussian"], generator=generator, device=self.device)
        if "gumbel" in shapes:  # minus the log of an Exp(1) draw is Gumbel(0, 1)
            noise["gumbel"] = -torch.empty(shapes["gumbel"], device=self.device).exponential_(generator=generator).log()
        return noise

    def posterior_latent(self, posterior: DEMVAEPosterior, *, num_samples: int = 1, sample: bool = True,
                         noise: dict[str, torch.Tensor] | None = None):
        """Decoder latents from q(z, c|x): (B * num_samples, D), samples of one sentence adjacent.

        `sample=False` gives the posterior mode (the mean of z, the argmax code), as used for reconstruction.
        `noise` (see `posterior_noise`) replaces fresh draws: z = mean + std * gaussian, and the codes are
        softmax((logits + gumbel) / tau) in training and the Gumbel-max sample argmax(logits + gumbel) otherwise.
        """
        parts = []
        if posterior.mean is not None:
            mean = repeat_rows(posterior.mean, num_samples)
            if sample:
                std = (0.5 * repeat_rows(posterior.logvar, num_samples)).exp()
                gaussian = torch.randn_like(std) if noise is None else noise["gaussian"].flatten(0, 1).to(std.dtype)
                mean = mean + std * gaussian
            parts.append(mean)
        if self.config.variant in ("discrete", "semi"):
            logits = repeat_rows(posterior.component_logits, num_samples)
            gumbel = None if noise is None else noise["gumbel"].flatten(0, 1).to(logits.dtype)
            if not sample:
                codes = F.one_hot(logits.argmax(-1), self.config.num_components).to(logits.dtype)
            elif self.training:  # the Gumbel-softmax relaxation, drawn as F.gumbel_softmax draws it
                if gumbel is None:
                    gumbel = -torch.empty_like(logits).exponential_().log()
                codes = ((logits + gumbel) / self.config.gumbel_temperature).softmax(-1)
            else:
                index = torch.distributions.Categorical(logits=logits).sample() if gumbel is None else (
                    (logits + gumbel).argmax(-1))
                codes = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
            parts.append(codes.flatten(1))
        return torch.cat(parts, dim=-1)

    def latent_terms(self, posterior: DEMVAEPosterior, batch_size: int,
                     aggregate_component_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sentence zkl, dispersion and KL(q(c|x) || U) (B,), and the batch's agg_ckl and mi (scalars).

        With `aggregate_component_probs` (see `forward`), q_bar is that of the larger batch this one is a slice of.
        """
        probs = posterior.component_probs
        zero = torch.zeros(batch_size, device=self.device)
        terms = {"zkl": zero, "dispersion": zero, "ckl": zero, "agg_ckl": zero.sum(), "mi": zero.sum()}
        if self.config.has_mixture_prior:
            terms["zkl"] = self.prior.kl_to_averaged(posterior.mean, posterior.logvar, probs)
            terms["dispersion"] = self.prior.dispersion(probs)
        elif posterior.mean is not None:  # N(0, I) prior: one group, one component
            terms["zkl"] = self.prior.kl_to_averaged(posterior.mean, posterior.logvar, zero.new_ones(batch_size, 1, 1))
        if probs is not None:
            log_k = math.log(self.config.num_components)
            aggregate = probs.mean(0)
            if aggregate_component_probs is not None:  # the larger batch's value, this slice's gradient
                aggregate = aggregate_component_probs.detach() + (aggregate - aggregate.detach())
            terms["ckl"] = (log_k - categorical_entropy(probs)).sum(-1)
            terms["agg_ckl"] = (log_k - categorical_entropy(aggregate)).sum()
            terms["mi"] = (categorical_entropy(aggregate) - categorical_entropy(probs).mean(0)).sum()
        return terms

    # ----- forward -----

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        latent: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
        use_cache: bool | None = None,
        kl_weight: float | None = None,
        posterior_noise: dict[str, torch.Tensor] | None = None,
        aggregate_component_probs: torch.Tensor | None = None,
        **kwargs,
    ) -> DEMVAEOutput:
        r"""
        Without `latent`: encode `input_ids`, sample z from q(z|x), reconstruct, and return the loss and every term.
        Reconstruction targets are `labels` (shifted inside; -100 is ignored) or, without labels, the unpadded input.
        `kl_weight` is the annealing weight w_t of the KL terms (default 1: no annealing).
        `posterior_noise` (see `posterior_noise`) replaces the fresh draws of z and of the codes.
        `aggregate_component_probs` (G, K) is q_bar(c), the mean of q(c|x) over a larger batch of which this one is an
        equal slice, the slices' losses averaged (processes, accumulation micro-batches). agg_ckl and mi, and the
        gradient, are then the larger batch's, exactly: q_bar enters as `aggregate + (m - m.detach())`, m the
        slice's mean of q(c|x), whose value is the global q_bar and whose gradient is m's. A term F(q_bar) thus has
        the gradient F'(q_bar) dm (the surrogate sum_i <dF/dq_i, q_i> at the global q_bar), and the slices' mean of
        dm is dq_bar: F'(q_bar) dq_bar, the larger batch's gradient by the chain rule.

        With `latent` (B, D): decode only, from `cache` (the GRU state) when given; this is what `generate` calls.
        """
        if latent is not None:
            return self._decode(input_ids, latent, cache, use_cache)
        if input_ids is None or input_ids.dim() != 2 or input_ids.numel() == 0:
            shape = None if input_ids is None else tuple(input_ids.shape)
            raise ValueError(f"input_ids must be a non-empty (batch, length) tensor, got shape {shape}.")
        config, batch, samples = self.config, input_ids.shape[0], self.config.num_posterior_samples
        self._check_batch_inputs(batch, posterior_noise, aggregate_component_probs)
        lengths = lengths_from(input_ids, attention_mask, config.pad_token_id)
        if labels is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            labels = input_ids.masked_fill(positions >= lengths.unsqueeze(1), IGNORE_INDEX)

        if config.variant == "rnnlm":
            posterior = DEMVAEPosterior()
            latent = torch.zeros(batch * samples, 0, device=input_ids.device, dtype=self.dtype)
        else:
            posterior = self.encode(input_ids, attention_mask)
            latent = self.posterior_latent(posterior, num_samples=samples, noise=posterior_noise)
        hidden, _ = self.decoder(repeat_rows(input_ids, samples), latent)
        logits = self.lm_head(hidden)
        # position t predicts token t + 1: shifting the labels (not the logits) spares a copy of the logits
        targets = F.pad(repeat_rows(labels, samples)[:, 1:], (0, 1), value=IGNORE_INDEX)
        token_nll = F.cross_entropy(
            logits.flatten(0, 1).to(torch.promote_types(logits.dtype, torch.float32)),
            targets.flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        )
        nll = token_nll.view(batch, samples, -1).sum(-1).mean(1)

        terms = self.latent_terms(posterior, batch, aggregate_component_probs)
        weight = 1.0 if kl_weight is None else float(kl_weight)  # a Python number: no host-to-device copy
        regularizer = (
            terms["agg_ckl"]
            + (0.0 if config.use_mutual_information else terms["mi"])
            + terms["zkl"].mean()
            + (1.0 - config.dispersion_weight) * terms["dispersion"].mean()
        )
        elbo = -(nll + terms["zkl"] + terms["dispersion"] + terms["ckl"])
        latent, logits = latent.view(batch, samples, -1), logits.view(batch, samples, *logits.shape[1:])
        return DEMVAEOutput(
            loss=nll.mean() + weight * regularizer,
            logits=logits[:, 0],
            nll=nll.mean(),
            zkl=terms["zkl"].mean(),
            dispersion=terms["dispersion"].mean(),
            agg_ckl=terms["agg_ckl"],
            mi=terms["mi"],
            elbo=elbo.mean(),
            kl_weight=torch.tensor(weight),
            component_probs=posterior.component_probs,
            latent=latent[:, 0] if samples == 1 else latent,
            posterior_mean=posterior.mean,
            posterior_logvar=posterior.logvar,
        )

    def _check_batch_inputs(self, batch_size: int, posterior_noise, aggregate_component_probs) -> None:
        if posterior_noise is not None:
            expected = self.posterior_noise_shapes(batch_size)
            given = {name: tuple(value.shape) for name, value in posterior_noise.items()}
            if given != expected:
                raise ValueError(f"posterior_noise must hold {expected} for this batch of {batch_size} "
                                 f"(see posterior_noise()), got {given}.")
        if aggregate_component_probs is not None:
            expected = (self.config.num_groups, self.config.num_components)
            if not self.config.has_discrete_latent:
                raise ValueError(f"variant={self.config.variant!r} has no q(c|x); drop aggregate_component_probs.")
            if tuple(aggregate_component_probs.shape) != expected:
                raise ValueError(f"aggregate_component_probs must have shape {expected} (groups, components), got "
                                 f"{tuple(aggregate_component_probs.shape)}.")

    def _decode(self, input_ids, latent, cache, use_cache) -> DEMVAEOutput:
        hidden, state = self.decoder(input_ids, latent.to(self.dtype), cache)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        return DEMVAEOutput(logits=self.lm_head(hidden), latent=latent, cache=state if use_cache else None)

    # ----- generation -----

    @torch.no_grad()
    def sample_prior(self, num_samples: int, component=None, *, generator: torch.Generator | None = None):
        """Decoder latents drawn from the prior, from one component (an int when G = 1, else one index per group)
        or, with `component=None`, from the whole mixture: (num_samples, D)."""
        config = self.config
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
        if component is not None and not config.has_discrete_latent:
            raise ValueError(f"variant={config.variant!r} has no mixture components; call without component=.")
        if config.variant == "rnnlm":
            return torch.zeros(num_samples, 0, device=self.device, dtype=self.dtype)
        if config.has_mixture_prior:
            return self.prior.sample(num_samples, component, generator=generator)
        parts = []
        if config.has_continuous_latent:
            parts.append(self.prior.sample(num_samples, generator=generator))
        if config.has_discrete_latent:
            indices = (
                torch.randint(config.num_components, (num_samples, config.num_groups), generator=generator)
                if component is None
                else checked_components(component, config.num_groups, config.num_components, num_samples)
            )
            parts.append(F.one_hot(indices.to(self.device), config.num_components).to(self.dtype).flatten(1))
        return torch.cat(parts, dim=-1)

    @torch.no_grad()
    def generate(self, inputs=None, *, component=None, num_samples: int | None = None, latent=None, **kwargs):
        """Sentences decoded from latents: given ones, or `num_samples` drawn from `component` (or the mixture).

        Every `GenerationConfig` option applies (greedy by default; `do_sample`, `top_k`, `top_p`, `num_beams`,
        `max_new_tokens`, ...). `inputs` is an optional prompt; by default each sentence starts with `<s>`.
        """
        if latent is None:
            latent = self.sample_prior(1 if num_samples is None else num_samples, component)
        elif component is not None:
            raise ValueError("pass either latent= or component=, not both.")
        elif num_samples is not None and num_samples != latent.shape[0]:
            raise ValueError(f"num_samples={num_samples} but latent has {latent.shape[0]} rows.")
        if latent.dim() != 2 or latent.shape[1] != self.config.decoder_latent_size:
            raise ValueError(
                f"latent must have shape (n, {self.config.decoder_latent_size}), got {tuple(latent.shape)}."
            )
        latent = latent.to(self.device, self.dtype)
        if inputs is None:
            inputs = torch.full((latent.shape[0], 1), self.config.bos_token_id, device=self.device)
        kwargs.setdefault("attention_mask", torch.ones_like(inputs))
        return super().generate(inputs, latent=latent, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, cache=None, latent=None, use_cache=None, **kwargs):
        """One new token per step on top of the kept GRU state; the whole prefix only when there is no state."""
        if cache is not None:
            input_ids = input_ids[:, -1:]
        return {"input_ids": input_ids, "latent": latent, "cache": cache, "use_cache": use_cache}

    @staticmethod
    def _reorder_cache(cache: torch.Tensor, beam_idx: torch.Tensor) -> torch.Tensor:
        return cache.index_select(1, beam_idx.to(cache.device))

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is the GRU state, not attention keys and values


__all__ = ["DEMVAEConfig", "DEMVAEForGeneration", "DEMVAEPreTrainedModel", "DEMVAEOutput", "DEMVAEPosterior"]
