"""DEM-VAE: a GRU sentence VAE with a dispersed exponential-family mixture prior (Shi et al., ICML 2020).

x --GRU encoder--> q(z|x), q(c|x) --z--> GRU decoder --> p(x|z), with p(z) a mixture of K components in each of
G groups. The baselines of the paper (VAE, DI-VAE, semi-VAE, RNNLM) share the same backbone and are config variants.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg

from .attributes import IGNORE_INDEX, attribute_loss
from .cache import DEMVAECache, checked_cache
from .configuration_demvae import DEMVAEConfig
from .generation_demvae import LatentGenerationMixin, greedy_generation_config, repeat_rows
from .networks import (
    DEMVAEPosterior,
    GRUDecoder,
    PosteriorHeads,
    SentenceEncoder,
    at_positions,
    check_input_ids,
    check_nonempty_rows,
    mask_from,
    real_tokens_first,
    token_nll,
)
from .priors import PRIOR_CLASSES, CategoricalMixturePrior, GaussianMixturePrior

logger = logging.get_logger(__name__)


@dataclass
class DEMVAEOutput(ModelOutput):
    """Loss terms are per-sentence batch means in nats, summed over groups; `elbo` is the usual negative number.

    `latent` is the decoder's conditioning vector, (B, D), or (B, S, D) with S > 1 posterior samples.
    `cache` is the decoder's state (`DEMVAECache`) while decoding. `attribute_loss` (with `attribute_labels`) is
    the supervised attributes' cross-entropy, included in `loss` with `config.attribute_loss_weight`.
    `hidden_states` (with `output_hidden_states`) is a one-tuple, the decoder GRU's outputs (B, T, H) that the output
    layer reads (of the first posterior sample): the GRU is the decoder's only layer.
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
    cache: DEMVAECache | None = None
    attribute_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def straight_through(relaxed: torch.Tensor) -> torch.Tensor:
    """The one-hot argmax of a relaxed sample in the forward pass, with the relaxed sample's gradient backward
    (exactly one-hot: hard + (soft - soft) adds an exact zero)."""
    hard = F.one_hot(relaxed.argmax(-1), relaxed.shape[-1]).to(relaxed.dtype)
    return hard + (relaxed - relaxed.detach())


def categorical_entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)


class DEMVAEPreTrainedModel(PreTrainedModel):
    config: DEMVAEConfig
    config_class = DEMVAEConfig
    base_model_prefix = "demvae"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True  # per GRU layer: the encoder's pair and the decoder's
    _is_stateful = True  # the GRU state cannot be rewound, so no assisted generation

    def _init_weights(self, module):
        """Uniform(-r, r) for weights as in the reference code, zero biases, N(0, 1) component means and categorical
        logits (as the reference code: identical components would get identical gradients and never move apart)."""
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
        elif isinstance(module, CategoricalMixturePrior):
            init.normal_(module.logits, 0.0, 1.0)

    # the decoder's embedding and output layer (`decoder`, `lm_head`), which every model here has
    def get_input_embeddings(self):
        return self.decoder.embedding

    def set_input_embeddings(self, value):
        self.decoder.embedding = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value


class DEMVAEForGeneration(DEMVAEPreTrainedModel, LatentGenerationMixin, GenerationMixin):
    """The DEM-VAE (and its baselines, by `config.variant`) with training losses and component-wise generation."""

    _tied_weights_keys = {"lm_head.weight": "decoder.embedding.weight"}

    def __init__(self, config: DEMVAEConfig):
        super().__init__(config)
        if config.variant != "rnnlm":
            self.encoder = SentenceEncoder.from_config(config)
            encoder_size = config.encoder_hidden_size * (2 if config.bidirectional_encoder else 1)
            self.posterior = PosteriorHeads(config, encoder_size)
        if config.has_mixture_prior:
            family = {"categorical_size": config.categorical_size} if config.has_categorical_latent else {}
            self.prior = PRIOR_CLASSES[config.prior_family](
                num_groups=config.num_groups, num_components=config.num_components, latent_size=config.latent_size,
                **family,
            )
        elif config.has_continuous_latent:  # VAE and semi-VAE: z ~ N(0, I)
            self.prior = GaussianMixturePrior(
                num_groups=1, num_components=1, latent_size=config.continuous_size, learnable=False
            )
        self.decoder = GRUDecoder(config)
        self.lm_head = nn.Linear(config.decoder_hidden_size, config.vocab_size)
        self.post_init()
        self.generation_config = greedy_generation_config(config)

    def _resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of=None, mean_resizing=True):
        """The encoder reads the same vocabulary as the decoder: its embedding is resized with the decoder's and the
        tied output layer, so every embedding the vocabulary indexes grows or shrinks together."""
        embeddings = super()._resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        if hasattr(self, "encoder"):
            old = self.encoder.embedding
            self.encoder.embedding = self._get_resized_embeddings(old, embeddings.num_embeddings,
                                                                  mean_resizing=mean_resizing)
            self.encoder.embedding.requires_grad_(old.weight.requires_grad)
        return embeddings

    # ----- inference network -----

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
               check_vocabulary: bool = True) -> DEMVAEPosterior:
        """Posterior parameters q(z|x) and component probabilities q(c|x) for a batch of sentences, padded on either
        side. `check_vocabulary` warns when sentences are mostly `<unk>` (text of another vocabulary); the package's
        own passes over a corpus, tokenized with the model's tokenizer, turn it off: a corpus's rare words are not
        a wrong vocabulary."""
        if self.config.variant == "rnnlm":
            raise ValueError("variant='rnnlm' has no latent variable to encode.")
        check_input_ids(input_ids)
        mask = mask_from(input_ids, attention_mask, self.config.pad_token_id)
        if check_vocabulary:
            self._warn_if_mostly_unknown(input_ids, mask, "passed to encode()")
        packed, lengths, _ = real_tokens_first(input_ids, mask)
        return self._posterior(packed, lengths)

    def _warn_if_mostly_unknown(self, input_ids: torch.Tensor, mask: torch.Tensor, where: str) -> None:
        """One warning when any sentence's words (real tokens but `<s>`, `</s>` and padding) are more than half
        `<unk>`: text tokenized with another vocabulary than the model's. Elementwise ops and one host read, so not
        while torch.compile or torch.export traces the model (a branch on the data would break the graph)."""
        config = self.config
        if config.unk_token_id is None or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return
        words = mask.bool()
        for special in (config.pad_token_id, config.bos_token_id, config.eos_token_id):
            if special is not None:
                words = words & input_ids.ne(special)
        counts = torch.stack(((words & input_ids.eq(config.unk_token_id)).sum(1), words.sum(1)))  # (2, B)
        mostly_unknown = 2 * counts[0] > counts[1]
        if not mostly_unknown.any():
            return
        unknown, total = counts[:, mostly_unknown].sum(1).tolist()
        sentences = int(mostly_unknown.sum())
        logger.warning(
            f"{unknown} of the {total} words of {sentences} of the {input_ids.shape[0]} sentence(s) {where} are "
            f"unknown to this model's vocabulary (<unk>, id {config.unk_token_id}): the model was trained on another "
            "vocabulary. Tokenize with the model's own tokenizer; text it does not know decodes poorly."
        )

    def _posterior(self, packed_ids: torch.Tensor, lengths: torch.Tensor) -> DEMVAEPosterior:
        check_nonempty_rows(lengths)
        return self.posterior(self.encoder(self.encoder.embed(packed_ids), lengths))

    def posterior_noise_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the noise `forward` draws for `batch_size` sentences (S = num_posterior_samples): "gaussian"
        (B, S, G*d) for z and "gumbel" for the discrete latent the decoder sees, (B, S, G, K) for the codes or
        (B, S, G, d, V) for the categorical family's z, each only where the model has it."""
        config, samples, shapes = self.config, self.config.num_posterior_samples, {}
        if config.has_continuous_latent:
            shapes["gaussian"] = (batch_size, samples, config.continuous_size)
        if config.variant in ("discrete", "semi"):
            shapes["gumbel"] = (batch_size, samples, config.num_groups, config.num_components)
        if config.has_categorical_latent:
            shapes["gumbel"] = (batch_size, samples, config.num_groups, config.latent_size, config.categorical_size)
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

        `sample=False` gives the posterior mode (the mean of z, the argmax code or categorical value), as used for
        reconstruction. `noise` (see `posterior_noise`) replaces fresh draws: z = mean + std * gaussian, and the
        discrete latent (the codes, or the categorical family's z) is softmax((logits + gumbel) / tau) in training
        (for the categorical family with `gumbel_hard`, its straight-through one-hot) and the Gumbel-max sample,
        one-hot argmax(logits + gumbel), otherwise.
        """
        parts = []
        if posterior.mean is not None:
            mean = repeat_rows(posterior.mean, num_samples)
            if sample:
                std = (0.5 * repeat_rows(posterior.logvar, num_samples)).exp()
                gaussian = torch.randn_like(std) if noise is None else noise["gaussian"].flatten(0, 1).to(std.dtype)
                mean = mean + std * gaussian
            parts.append(mean)
        discrete_logits = (posterior.latent_logits if self.config.has_categorical_latent
                           else posterior.component_logits if self.config.variant in ("discrete", "semi") else None)
        if discrete_logits is not None:
            logits = repeat_rows(discrete_logits, num_samples)
            gumbel = None if noise is None else noise["gumbel"].flatten(0, 1).to(logits.dtype)
            if not sample:
                codes = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
            elif self.training:  # the Gumbel-softmax relaxation, drawn as F.gumbel_softmax draws it
                if gumbel is None:
                    gumbel = -torch.empty_like(logits).exponential_().log()
                codes = ((logits + gumbel) / self.config.gumbel_temperature).softmax(-1)
                if self.config.has_categorical_latent and self.config.gumbel_hard:
                    codes = straight_through(codes)
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
        They are computed in the parameters' precision even under autocast: the dispersion is the difference of two
        sums that bf16 would round away.
        """
        with torch.autocast(self.device.type, enabled=False):
            posterior = DEMVAEPosterior(**{name: value.to(self.dtype) for name, value in posterior.items()})
            probs = posterior.component_probs
            zero = torch.zeros(batch_size, device=self.device)
            terms = {"zkl": zero, "dispersion": zero, "ckl": zero, "agg_ckl": zero.sum(), "mi": zero.sum()}
            if self.config.has_mixture_prior:
                posterior_parameters = [posterior[name] for name in self.prior.posterior_fields]
                terms["zkl"] = self.prior.kl_to_averaged(*posterior_parameters, probs)
                terms["dispersion"] = self.prior.dispersion(probs)
            elif posterior.mean is not None:  # N(0, I) prior: one group, one component
                terms["zkl"] = self.prior.kl_to_averaged(posterior.mean, posterior.logvar,
                                                         zero.new_ones(batch_size, 1, 1))
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

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "6.0.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        latent: torch.Tensor | None = None,
        cache: DEMVAECache | None = None,
        use_cache: bool | None = None,
        kl_weight: float | None = None,
        posterior_noise: dict[str, torch.Tensor] | None = None,
        aggregate_component_probs: torch.Tensor | None = None,
        attribute_labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> DEMVAEOutput:
        r"""
        Without `latent`: encode `input_ids`, sample z from q(z|x), reconstruct, and return the loss and every term.
        Sentences may be padded on either side (`attention_mask`, else the pad id, says which tokens are real).
        Reconstruction targets are `labels` (aligned with `input_ids`, shifted inside; -100 is ignored) or, without
        labels, the real tokens. `kl_weight` is the annealing weight w_t of the KL terms (default 1: no annealing).
        In eval mode with `config.deterministic_eval`, z is the posterior mode (the mean, the argmax codes or
        categorical values), not a sample.
        `posterior_noise` (see `posterior_noise`) replaces the fresh draws of z and of the codes.
        `aggregate_component_probs` (G, K) is q_bar(c), the mean of q(c|x) over a larger batch of which this one is an
        equal slice, the slices' losses averaged (processes, accumulation micro-batches). agg_ckl and mi, and the
        gradient, are then the larger batch's, exactly: q_bar enters as `aggregate + (m - m.detach())`, m the
        slice's mean of q(c|x), whose value is the global q_bar and whose gradient is m's. A term F(q_bar) thus has
        the gradient F'(q_bar) dm (the surrogate sum_i <dF/dq_i, q_i> at the global q_bar), and the slices' mean of
        dm is dq_bar: F'(q_bar) dq_bar, the larger batch's gradient by the chain rule.
        `attribute_labels` (B, len(config.attributes)): label ids of the supervised attributes, -100 where a sentence
        is unlabelled; their cross-entropy (see `attributes.attribute_loss`) is added to the loss, not annealed.

        With `latent` (B, D) or `cache` (a `DEMVAECache`, which holds its latent): decode only, from the cache's
        state when given; this is what `generate` calls. The new tokens are `input_ids` or their decoder embeddings
        `inputs_embeds` (B, T, embed_size). `attention_mask` then covers the cached and the new tokens; padded
        positions leave the state as it is. A given `latent` is decoded from rather than the cache's.

        `output_hidden_states` (default `config.output_hidden_states`) adds `hidden_states`, the decoder GRU's outputs.
        `return_dict=False` (or `config.return_dict=False`) returns a tuple of the output's non-None fields.
        """
        config = self.config
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if latent is not None or cache is not None:
            return self._decode(input_ids, inputs_embeds, latent, checked_cache(cache), use_cache, attention_mask,
                                output_hidden_states)
        if inputs_embeds is not None:
            raise ValueError("inputs_embeds are decoder inputs, read after a latent: pass latent= (or cache=) with "
                             "them; the encoder reads input_ids (the token ids of the sentences).")
        check_input_ids(input_ids)
        batch, samples = input_ids.shape[0], config.num_posterior_samples
        self._check_batch_inputs(batch, posterior_noise, aggregate_component_probs, attribute_labels)
        mask = mask_from(input_ids, attention_mask, config.pad_token_id)
        packed, lengths, order = real_tokens_first(input_ids, mask)
        # position t predicts token t + 1 of the sentence: shifting the labels (not the logits) spares a copy of the
        # logits; targets are built in the sentence's own order, then put back at the input's positions
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        sentence_labels = packed if labels is None else labels.gather(1, order)
        targets = F.pad(sentence_labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        targets = targets.masked_fill(positions >= lengths.unsqueeze(1) - 1, IGNORE_INDEX)
        to_input_positions = order.argsort(1)

        if config.variant == "rnnlm":
            posterior = DEMVAEPosterior()
            latent = torch.zeros(batch * samples, 0, device=input_ids.device, dtype=self.dtype)
        else:
            posterior = self._posterior(packed, lengths)
            sample = self.training or not config.deterministic_eval
            latent = self.posterior_latent(posterior, num_samples=samples, sample=sample, noise=posterior_noise)
        hidden, _ = self.decoder(self.decoder.embed(repeat_rows(packed, samples)), latent)
        index = repeat_rows(to_input_positions, samples)
        hidden = at_positions(hidden, index)
        logits = self.lm_head(hidden)
        nll = token_nll(logits, repeat_rows(targets, samples).gather(1, index), IGNORE_INDEX)
        nll = nll.view(batch, samples, -1).sum(-1).mean(1)

        terms = self.latent_terms(posterior, batch, aggregate_component_probs)
        weight = 1.0 if kl_weight is None else float(kl_weight)  # a Python number: no host-to-device copy
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"kl_weight must be a finite number >= 0 (the annealing weight), got {kl_weight!r}.")
        latent_kl = terms["zkl"].mean() + (1.0 - config.dispersion_weight) * terms["dispersion"].mean()
        component_kl = (terms["agg_ckl"] + (0.0 if config.use_mutual_information else terms["mi"])
                        - config.mutual_information_bonus * terms["mi"])
        elbo = -(nll + terms["zkl"] + terms["dispersion"] + terms["ckl"])
        loss = nll.mean() + weight * latent_kl + (weight if config.anneal_component_terms else 1.0) * component_kl
        supervised = None
        if attribute_labels is not None:
            supervised = attribute_loss(config, posterior, attribute_labels.to(input_ids.device))
            loss = loss + config.attribute_loss_weight * supervised
        latent, logits = latent.view(batch, samples, -1), logits.view(batch, samples, *logits.shape[1:])
        # the first sample's, as the logits; with one, the very tensor the output layer reads (gradients reach it)
        first_hidden = hidden if samples == 1 else hidden.view(batch, samples, *hidden.shape[1:])[:, 0]
        return DEMVAEOutput(
            loss=loss,
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
            attribute_loss=supervised,
            hidden_states=(first_hidden,) if output_hidden_states else None,
        )

    def _check_batch_inputs(self, batch_size: int, posterior_noise, aggregate_component_probs,
                            attribute_labels) -> None:
        if posterior_noise is not None:
            expected = self.posterior_noise_shapes(batch_size)
            given = {name: tuple(value.shape) for name, value in posterior_noise.items()}
            if given != expected:
                raise ValueError(f"posterior_noise must hold {expected} for this batch of {batch_size} "
                                 f"(see posterior_noise()), got {given}.")
        if attribute_labels is not None and not self.config.attributes:
            raise ValueError("attribute_labels needs attributes in the config (DEMVAEConfig.attributes, or `demvae "
                             "train --supervise COLUMN`); this model has none.")
        if aggregate_component_probs is not None:
            expected = (self.config.num_groups, self.config.num_components)
            if not self.config.has_discrete_latent:
                raise ValueError(f"variant={self.config.variant!r} has no q(c|x); drop aggregate_component_probs.")
            if tuple(aggregate_component_probs.shape) != expected:
                raise ValueError(f"aggregate_component_probs must have shape {expected} (groups, components), got "
                                 f"{tuple(aggregate_component_probs.shape)}.")

    def _decode(self, input_ids, inputs_embeds, latent, cache, use_cache, attention_mask,
                output_hidden_states) -> DEMVAEOutput:
        """Decode the new tokens (`input_ids`, or their embeddings) from `cache`; the mask's last columns say which
        of them are real. The cache, given or new, advances in place."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass the tokens to decode as input_ids or as inputs_embeds, exactly one of them.")
        if inputs_embeds is None:
            embedded = self.decoder.embed(input_ids)
        elif inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.embed_size:
            raise ValueError(f"inputs_embeds must have shape (batch, length, {self.config.embed_size}) (the decoder's "
                             f"embed_size), got {tuple(inputs_embeds.shape)}.")
        else:
            embedded = inputs_embeds.to(self.dtype)
        new_positions = embedded.shape[1]
        mask = (attention_mask[:, -new_positions:].bool() if attention_mask is not None
                else embedded.new_ones(embedded.shape[:2], dtype=torch.bool))
        packed, lengths, order = real_tokens_first(embedded, mask)
        latent = (cache.latent if latent is None else latent).to(self.dtype)
        hidden, state = self.decoder(packed, latent, None if cache is None else cache.state, lengths)
        hidden = at_positions(hidden, order.argsort(1))
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache:
            cache = DEMVAECache(state, latent) if cache is None else cache
            cache.advance(state, new_positions)
        return DEMVAEOutput(logits=self.lm_head(hidden), latent=latent, cache=cache if use_cache else None,
                            hidden_states=(hidden,) if output_hidden_states else None)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is the GRU state (a DEMVAECache the decoder makes), not attention keys and values


__all__ = ["DEMVAEConfig", "DEMVAEForGeneration", "DEMVAEPreTrainedModel", "DEMVAEOutput",
           "DEMVAEPosterior"]
