"""Generation from a DEM-VAE: latents drawn from the prior (one component, the attributes' labels, or the whole
mixture) or given, then decoded by transformers' `generate` with every `GenerationConfig` option.

`LatentGenerationMixin` sits before `GenerationMixin` in a model's bases: its `generate` draws the latents and
hands the decoding to transformers'. The helpers here serve the dialog model's `generate` too.
"""

import copy
import math

import torch
import torch.nn.functional as F
from transformers import GenerationConfig
from transformers.utils.deprecation import deprecate_kwarg

from .attributes import attribute_latents, with_fixed_variables
from .cache import checked_cache
from .configuration_demvae import DEMVAEConfig
from .networks import check_input_ids, mask_from
from .priors import checked_components


def repeat_rows(x: torch.Tensor, times: int) -> torch.Tensor:
    """Each row `times` times in a row (samples of one sentence adjacent); no copy when `times` is 1."""
    return x if times == 1 else x.repeat_interleave(times, 0)


def check_finite_options(options: dict) -> None:
    """Generation options that are numbers must be finite: top_p=nan would silently sample from nothing sensible."""
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"generate({name}={value}): {name} must be a finite number.")


def latents_per_sequence(generation_config: GenerationConfig, kwargs: dict) -> int:
    """The `num_return_sequences` asked for in `generate`'s `kwargs` (or its generation config, else the model's
    `generation_config`): each of them will decode a latent of its own, so the options are set to one sequence per
    latent (a copy of a given generation config, never the caller's)."""
    config = kwargs.get("generation_config") or generation_config
    draws = kwargs.pop("num_return_sequences", None) or config.num_return_sequences or 1
    if draws > 1 and kwargs.get("generation_config") is not None:
        kwargs["generation_config"] = copy.deepcopy(config)
        kwargs["generation_config"].num_return_sequences = 1
    elif draws > 1:
        kwargs["num_return_sequences"] = 1
    return draws


def greedy_generation_config(config: DEMVAEConfig) -> GenerationConfig:
    """Greedy decoding, as the paper's samples, up to a whole sentence of the config's length."""
    return GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                            pad_token_id=config.pad_token_id, max_new_tokens=config.max_sentence_length - 1,
                            do_sample=False)


class LatentGenerationMixin:
    """`sample_prior` and `generate` of the sentence model (see `DEMVAEForGeneration`)."""

    @torch.no_grad()
    def sample_prior(self, num_samples: int, component=None, *, attributes: dict | None = None,
                     generator: torch.Generator | None = None):
        """Decoder latents drawn from the prior, from one component (an int when G = 1, else one index per group)
        or, with `component=None`, from the whole mixture: (num_samples, D). `attributes` ({"act": "question"})
        fixes each named attribute's latent to its label's value (drawn uniformly among several) and draws the
        rest from the prior given it (in the categorical family, c from p(c | the fixed variables))."""
        config = self.config
        if attributes is not None:
            if component is not None:
                raise ValueError("pass either component= or attributes=, not both: attributes= fixes the attributes' "
                                 "latents and draws the other groups from the prior.")
            log_probs = self.prior.log_probabilities(self.prior.logits) if config.has_categorical_latent else None
            component, fixed_variables = attribute_latents(config, attributes, num_samples, generator=generator,
                                                           variable_log_probs=log_probs)
            return with_fixed_variables(config, self.sample_prior(num_samples, component, generator=generator),
                                        fixed_variables)
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
    @deprecate_kwarg("past_key_values", "6.0.0", new_name="cache")
    def generate(self, inputs=None, *, component=None, attributes: dict | None = None, num_samples: int | None = None,
                 latent=None, **kwargs):
        """Sentences decoded from latents: given ones, or drawn from `component`, from `attributes` ({"act":
        "question"}: the attributes' latents fixed, the rest from the prior; see `sample_prior`), or from the whole
        mixture.

        A prompt (`inputs` or `input_ids=`, left-padded with its `attention_mask` when rows differ in length) is
        continued; without one each sentence starts with `<s>`. Drawn latents: one per prompt row, or
        `num_samples` (a one-row prompt, or none, is repeated for each); under `num_return_sequences=n` each row
        gets n latents of its own, its n sequences adjacent, in any decoding mode. Given latents: one per prompt
        row, shared by that row's return sequences and beams. Every `GenerationConfig` option applies (greedy by
        default; `do_sample`, `top_k`, `top_p`, `num_beams`, `max_new_tokens`, `output_hidden_states`, ...).

        `inputs_embeds=` (decoder embeddings, (B, T, embed_size)) replaces or precedes the prompt's ids, as in
        transformers: the sequences returned then hold only the ids given and the new tokens. `cache=` (a
        `DEMVAECache` returned with `return_dict_in_generate=True`) continues its sentences, `out.sequences` as the
        prompt, from the latents they were decoded from. A prompt more than half `<unk>` is warned about, once.
        """
        if "generate_kwargs" in kwargs:  # text-generation pipelines pass their documented dict as one keyword
            named = {"component": component, "attributes": attributes, "num_samples": num_samples, "latent": latent}
            named = {key: value for key, value in named.items() if value is not None}
            return self.generate(inputs, **named, **(kwargs.pop("generate_kwargs") or {}), **kwargs)
        if inputs is not None and kwargs.get("input_ids") is not None:
            raise ValueError("pass the prompt as inputs or as input_ids=, not both.")
        prompt = kwargs.pop("input_ids", None) if inputs is None else inputs
        prompt_mask, prompt_embeds = kwargs.pop("attention_mask", None), kwargs.pop("inputs_embeds", None)
        check_finite_options(kwargs)
        if prompt is not None and prompt_embeds is None:  # else the mask covers the embeddings too
            check_input_ids(prompt, name="the prompt (input_ids)")
            mask = mask_from(prompt, prompt_mask, self.config.pad_token_id)
            empty = (~mask.any(1)).nonzero().flatten().tolist()
            if empty:  # nothing to continue, not even <s>: what to decode would be a guess
                raise ValueError(f"prompt row(s) {empty} are all padding (their attention_mask is 0 throughout); "
                                 "start each row with at least <s>, or leave the prompt out.")
            self._warn_if_mostly_unknown(prompt, mask, "of the prompt passed to generate()")
        if latent is None and component is None and attributes is None and kwargs.get("cache") is not None:
            latent = checked_cache(kwargs["cache"]).latent  # a continuation decodes from the latents it began with
        if latent is not None:
            if component is not None or attributes is not None:
                raise ValueError("pass either latent= or component= / attributes=, not both.")
            if num_samples is not None and num_samples != latent.shape[0]:
                raise ValueError(f"num_samples={num_samples} but latent has {latent.shape[0]} rows.")
            if latent.dim() != 2 or latent.shape[1] != self.config.decoder_latent_size:
                raise ValueError(
                    f"latent must have shape (n, {self.config.decoder_latent_size}), got {tuple(latent.shape)}."
                )
            if not torch.isfinite(latent).all():
                raise ValueError("latent holds NaN or infinite values; give finite latents (e.g. from sample_prior).")
            rows, draws = latent.shape[0], 1
        else:
            given_rows = next((x.shape[0] for x in (prompt, prompt_embeds) if x is not None), 1)
            rows = num_samples if num_samples is not None else given_rows
            draws = latents_per_sequence(self.generation_config, kwargs)
            latent = self.sample_prior(rows * draws, component, attributes=attributes)
        if prompt is None and prompt_embeds is None:
            prompt = torch.full((rows, 1), self.config.bos_token_id, device=self.device)
        prompt_rows = next(x.shape[0] for x in (prompt, prompt_embeds) if x is not None)
        if prompt_rows not in (1, rows):
            raise ValueError(f"the prompt has {prompt_rows} rows but {rows} sentences are asked for; give one "
                             "prompt row per sentence (or one for all), and num_return_sequences= for several each.")
        repeat = rows * draws // prompt_rows
        for name, value in (("attention_mask", prompt_mask), ("inputs_embeds", prompt_embeds)):
            if value is not None:
                kwargs[name] = repeat_rows(value, repeat)
        prompt = None if prompt is None else repeat_rows(prompt, repeat)
        return super().generate(prompt, latent=latent.to(self.device, self.dtype), **kwargs)


__all__ = ["LatentGenerationMixin", "check_finite_options", "greedy_generation_config", "latents_per_sequence",
           "repeat_rows"]
