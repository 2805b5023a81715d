"""DEM-VAE dialog response generation with interpretable latent actions (the paper's dialog experiment, the
reference code's `AeED_GMM`).

A response VAE (this package's sentence DEM-VAE over responses) gives every response a posterior component c per
group: its latent action. A context encoder reads the previous turns, a policy p(c_g | context) chooses the action,
and a response decoder, started from the context state and the action's z, attends to the turns while it writes.
Training has two stages: the response VAE alone (stage 1), then, with the VAE and its prior frozen, the context side
(stage 2: decoder NLL given the gold response's posterior z, the policy's cross-entropy toward its posterior c, and
a consistency term).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin
from transformers.generation.utils import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from transformers.utils import ModelOutput, can_return_tuple

from .attributes import IGNORE_INDEX
from .cache import DEMVAEDialogCache, checked_cache
from .configuration_dialog import DEMVAEDialogConfig
from .conversation import split_conversations
from .dialog_networks import ContextEncoder, DialogContext, TurnAttention
from .generation_demvae import greedy_generation_config, latents_per_sequence, repeat_rows
from .modeling_demvae import DEMVAEForGeneration, DEMVAEOutput, DEMVAEPreTrainedModel
from .networks import GRUDecoder, at_positions, check_input_ids, mask_from, real_tokens_first, token_nll
from .priors import checked_components


@dataclass
class DEMVAEDialogOutput(ModelOutput):
    """Stage-2 loss terms, per response, summed over groups, batch means in nats.

    `loss` = nll + policy_loss + consistency_weight * consistency. `components` (B, G) is the gold response's
    posterior c (the argmax of q(c|x)), the policy's target; `policy_logits` (B, G, K) the policy's logits. While
    decoding, only `logits` and `cache` (a `DEMVAEDialogCache`).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    nll: torch.Tensor | None = None
    policy_loss: torch.Tensor | None = None
    consistency: torch.Tensor | None = None
    policy_logits: torch.Tensor | None = None
    components: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    cache: DEMVAEDialogCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class DialogGenerateOutput(GenerateDecoderOnlyOutput):
    """`generate`'s output with `components` (n, G): the latent action each sequence was decoded from."""

    components: torch.LongTensor | None = None


@dataclass
class DialogGenerateBeamOutput(GenerateBeamDecoderOnlyOutput):
    """Beam search's output with `components` (n, G): the latent action each sequence was decoded from."""

    components: torch.LongTensor | None = None


def grouped_cross_entropy(logits: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """-log p(c_g) of (B, G, K) logits at (B, G) components, summed over groups, batch mean."""
    per_group = F.cross_entropy(logits.flatten(0, 1), components.flatten(), reduction="none")
    return per_group.view_as(components).sum(1).mean()


class DEMVAEDialogPreTrainedModel(DEMVAEPreTrainedModel):
    """The sentence model's weight initialisation, read from the dialog config (its `initializer_range`); the
    response VAE, a model of its own, initialises itself."""

    config: DEMVAEDialogConfig
    config_class = DEMVAEDialogConfig
    base_model_prefix = "demvae_dialog"


class DEMVAEForDialogGeneration(DEMVAEDialogPreTrainedModel, GenerationMixin):
    """Responses generated through latent actions: a policy chooses the response VAE's components from the context,
    and a response decoder writes from the chosen component's z and the context."""

    _tied_weights_keys = {"lm_head.weight": "decoder.embedding.weight"}

    def __init__(self, config: DEMVAEDialogConfig):
        super().__init__(config)
        response = config.response_config
        self.response_vae = DEMVAEForGeneration(response)
        self.context_encoder = ContextEncoder(config)
        self.policy_network = nn.Sequential(
            nn.Linear(config.context_hidden_size, config.policy_hidden_size),
            nn.Tanh(),
            nn.Linear(config.policy_hidden_size, response.num_groups * response.num_components),
        )
        self.decoder = GRUDecoder(response)  # the response VAE's decoder layout, conditioned on the same z
        self.context_to_hidden = nn.Linear(config.context_hidden_size, response.decoder_hidden_size, bias=False)
        self.attention = TurnAttention(response.decoder_hidden_size, config.context_hidden_size)
        self.lm_head = nn.Linear(response.decoder_hidden_size, response.vocab_size)
        self.response_vae_frozen = False
        self.post_init()
        self.generation_config = greedy_generation_config(response)

    @classmethod
    def from_response_vae(cls, response_vae: DEMVAEForGeneration, **settings) -> "DEMVAEForDialogGeneration":
        """A dialog model whose response VAE starts as `response_vae` (a trained sentence DEM-VAE over responses, with
        the dialog tokenizer's vocabulary): its config and weights; `settings` are the context side's."""
        model = cls(DEMVAEDialogConfig(response_config=response_vae.config.to_dict(), **settings))
        model.response_vae.load_state_dict(response_vae.state_dict())
        return model.to(response_vae.device, response_vae.dtype)

    # ----- stages -----

    def freeze_response_vae(self) -> None:
        """Stage 2: the response VAE and its prior stop learning (no gradients) and stay in eval mode (no dropout)
        whatever `train()` is called with, so that the posterior the context side learns toward holds still."""
        self.response_vae.requires_grad_(False)
        self.response_vae_frozen = True
        self.response_vae.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.response_vae_frozen:
            self.response_vae.eval()
        return self

    # ----- the context side -----

    def encode_context(self, context_input_ids: torch.Tensor,
                       context_attention_mask: torch.Tensor | None = None) -> DialogContext:
        """The turns' states and the context state of (B, turns, tokens) contexts; a turn with no real token
        (`context_attention_mask`, else the pad id) is padding. Every context needs a turn."""
        if context_input_ids is None or context_input_ids.dim() != 3 or 0 in context_input_ids.shape:
            shape = None if context_input_ids is None else tuple(context_input_ids.shape)
            raise ValueError(f"context_input_ids must be a non-empty (batch, turns, tokens) tensor, got shape {shape}.")
        mask = mask_from(context_input_ids, context_attention_mask, self.config.pad_token_id)
        if not mask.flatten(1).any(1).all():
            raise ValueError("every context needs at least one turn with a token; found a row with none.")
        return self.context_encoder(context_input_ids, mask)

    def policy_logits(self, context: DialogContext) -> torch.Tensor:
        response = self.config.response_config
        return self.policy_network(context.state).view(-1, response.num_groups, response.num_components)

    def policy(self, context_input_ids: torch.Tensor, context_attention_mask: torch.Tensor | None = None):
        """p(c_g | context) for every group: (B, G, K), each group's row summing to 1."""
        return self.policy_logits(self.encode_context(context_input_ids, context_attention_mask)).softmax(-1)

    def component_latent(self, components: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """The decoder latent of the given components (n, G): z at the components' mode (a Gaussian's mean), or
        drawn from p(z|c) with `sample`; for DI-VAE latent actions, the one-hot codes themselves."""
        vae, response = self.response_vae, self.config.response_config
        if response.variant == "discrete":
            return F.one_hot(components, response.num_components).to(self.dtype).flatten(1)
        if sample:
            return vae.prior.sample(components.shape[0], components)
        return vae.prior.mode(components)

    # ----- the response decoder -----

    def _decode(self, embedded, lengths, latent, context: DialogContext, cache, use_cache):
        """Decoder GRU over right-padded `embedded` from the cache's state (or, with none, from W z + W' s_ctx), then
        attention over the turns: (logits, the decoder GRU's outputs, the advanced cache or None)."""
        if cache is None:
            state = self.decoder.initial_state(latent) + self.context_to_hidden(context.state).unsqueeze(0)
            memory, memory_mask = context.memory, context.memory_mask
        else:
            state, latent, memory, memory_mask = cache.state, cache.latent, cache.memory, cache.memory_mask
        hidden, state = self.decoder(embedded, latent, state, lengths)
        logits = self.lm_head(self.attention(hidden, memory, memory_mask))
        if use_cache:
            cache = DEMVAEDialogCache(state, latent, memory, memory_mask) if cache is None else cache
            cache.advance(state, embedded.shape[1])
        return logits, hidden, cache if use_cache else None

    def consistency_loss(self, logits: torch.Tensor, response_ids: torch.Tensor, lengths: torch.Tensor,
                         components: torch.Tensor) -> torch.Tensor:
        """The reference's consistency term: the decoder's soft output, as expected embeddings (softmax(logits) @ the
        response encoder's embedding) after the response's `<s>`, read by the response encoder into q(c|x), and its
        cross-entropy toward the components the decoder was given. `logits` (B, T, V) predict tokens 1..T of the
        right-padded `response_ids`."""
        encoder = self.response_vae.encoder
        expected = logits[:, :-1].softmax(-1).to(encoder.embedding.weight.dtype) @ encoder.embedding.weight
        embedded = torch.cat((encoder.embedding(response_ids[:, :1]), expected), dim=1)
        posterior = self.response_vae.posterior(encoder(encoder.dropout(embedded), lengths))
        return grouped_cross_entropy(posterior.component_logits, components)

    # ----- forward -----

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        context_input_ids: torch.LongTensor | None = None,
        context_attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        stage: int = 2,
        kl_weight: float | None = None,
        posterior_noise: dict[str, torch.Tensor] | None = None,
        aggregate_component_probs: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        context_memory: torch.Tensor | None = None,
        context_memory_mask: torch.Tensor | None = None,
        context_state: torch.Tensor | None = None,
        cache: DEMVAEDialogCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> DEMVAEDialogOutput | DEMVAEOutput:
        r"""
        Training (`input_ids` the responses, right- or left-padded, `context_input_ids` (B, turns, tokens) their
        contexts):
        - `stage=1`: the response VAE's loss and terms as the sentence model computes them (a `DEMVAEOutput`; the
          context is not read; `kl_weight`, `posterior_noise` and `aggregate_component_probs` as the sentence
          model takes them).
        - `stage=2`: the gold response's posterior under the response VAE gives z (a sample in training, the mean in
          eval mode) and c (the argmax of q(c|x) per group), both without gradient; the loss is the decoder's NLL of
          the response given z and the context, the policy's cross-entropy toward c, and `consistency_weight` times
          the consistency term (`consistency_loss`). Freeze the response VAE first (`freeze_response_vae`).
          `posterior_noise` (the response VAE's `posterior_noise`; its first sample) replaces the fresh draw of z.
          `labels` (aligned with `input_ids`, -100 ignored) replace the response's tokens as targets.

        Decoding (what `generate` calls): `latent` (B, D) with the encoded context (`context_state`,
        `context_memory`, `context_memory_mask`), or a `cache`, and the new tokens `input_ids`; `attention_mask`
        covers the cached and the new tokens.
        """
        output_hidden_states = (self.config.output_hidden_states if output_hidden_states is None
                                else output_hidden_states)
        if latent is not None or cache is not None:
            return self._decoding_step(input_ids, attention_mask, latent, context_state, context_memory,
                                       context_memory_mask, checked_cache(cache), use_cache, output_hidden_states)
        if stage == 1:
            return self.response_vae(input_ids, attention_mask, labels=labels, kl_weight=kl_weight,
                                     posterior_noise=posterior_noise,
                                     aggregate_component_probs=aggregate_component_probs,
                                     output_hidden_states=output_hidden_states)
        if stage != 2:
            raise ValueError(f"stage must be 1 (the response VAE) or 2 (the context side), got {stage!r}.")
        check_input_ids(input_ids, name="input_ids (the responses)")
        mask = mask_from(input_ids, attention_mask, self.config.pad_token_id)
        packed, lengths, order = real_tokens_first(input_ids, mask)
        with torch.no_grad():
            posterior = self.response_vae._posterior(packed, lengths)
            noise = None if posterior_noise is None else {name: value[:, :1] for name, value in posterior_noise.items()}
            latent = self.response_vae.posterior_latent(posterior, sample=self.training, noise=noise)
            components = posterior.component_probs.argmax(-1)
        context = self.encode_context(context_input_ids, context_attention_mask)
        policy_logits = self.policy_logits(context)
        logits, hidden, _ = self._decode(self.decoder.embed(packed), None, latent, context, None, False)

        sentence_labels = packed if labels is None else labels.gather(1, order)
        targets = F.pad(sentence_labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        positions = torch.arange(packed.shape[1], device=packed.device)
        targets = targets.masked_fill(positions >= lengths.unsqueeze(1) - 1, IGNORE_INDEX)
        nll = token_nll(logits, targets, IGNORE_INDEX).sum(1).mean()
        policy_loss = grouped_cross_entropy(policy_logits, components)
        consistency = self.consistency_loss(logits, packed, lengths, components)
        to_input_positions = order.argsort(1)
        return DEMVAEDialogOutput(
            loss=nll + policy_loss + self.config.consistency_weight * consistency,
            logits=at_positions(logits, to_input_positions),
            nll=nll,
            policy_loss=policy_loss,
            consistency=consistency,
            policy_logits=policy_logits,
            components=components,
            latent=latent,
            hidden_states=(at_positions(hidden, to_input_positions),) if output_hidden_states else None,
        )

    def _decoding_step(self, input_ids, attention_mask, latent, context_state, context_memory, context_memory_mask,
                       cache, use_cache, output_hidden_states) -> DEMVAEDialogOutput:
        """The new tokens `input_ids` decoded from the cache or, with none, from the latent and the encoded context;
        the mask's last columns say which of them are real (padded positions leave the state as it is)."""
        if cache is None and None in (context_state, context_memory, context_memory_mask):
            raise ValueError("decoding without a cache needs the encoded context: context_state, context_memory and "
                             "context_memory_mask (see encode_context), with latent.")
        check_input_ids(input_ids)
        mask = (attention_mask[:, -input_ids.shape[1]:].bool() if attention_mask is not None
                else torch.ones_like(input_ids, dtype=torch.bool))
        packed, lengths, order = real_tokens_first(self.decoder.embed(input_ids), mask)
        context = DialogContext(memory=context_memory, memory_mask=context_memory_mask, state=context_state)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        logits, hidden, cache = self._decode(packed, lengths, None if latent is None else latent.to(self.dtype),
                                             context, cache, use_cache)
        to_input_positions = order.argsort(1)
        return DEMVAEDialogOutput(logits=at_positions(logits, to_input_positions), cache=cache,
                                  hidden_states=(at_positions(hidden, to_input_positions),)
                                  if output_hidden_states else None)

    # ----- generation -----

    @torch.no_grad()
    def generate(self, inputs=None, *, context_input_ids=None, context_attention_mask=None, component=None,
                 sample_latent: bool = False, **kwargs):
        """Responses to contexts, through latent actions.

        The conversation is either `context_input_ids` (B, turns, tokens) with `context_attention_mask` (the data
        pipeline's layout), the response's start then being `inputs` / `input_ids` (left-padded, default `<s>`);
        or, without `context_input_ids`, a whole conversation as one sequence per row, `inputs` / `input_ids`, as
        `tokenizer.apply_chat_template(messages, add_generation_prompt=True)` writes it: its complete turns (each
        `<s> ... </s>`) are the context, at most `context_turns`, each cut to `max_utterance_length`, and the turn it
        leaves open (`<s> <sys>`) the response's start. The sequences returned are then the conversations followed
        by the new tokens, as a causal LM continues its prompt.

        Each group's component is the policy's argmax, or drawn from p(c|context) when sampling (`do_sample`);
        `component=` (an int when G = 1, one index per group, or (B, G)) replaces the policy's choice. The decoder
        starts from z at the component's mean (`sample_latent=True`: drawn from p(z|c)). Every `GenerationConfig`
        option applies; `num_return_sequences=n` gives each row n actions of its own (the same one when greedy).
        With `return_dict_in_generate=True` the output carries `components` (n, G), one row per sequence.
        """
        if "generate_kwargs" in kwargs:  # text-generation pipelines pass their documented dict as one keyword
            return self.generate(inputs, context_input_ids=context_input_ids,
                                 context_attention_mask=context_attention_mask, component=component,
                                 sample_latent=sample_latent, **kwargs.pop("generate_kwargs") or {}, **kwargs)
        if inputs is not None and kwargs.get("input_ids") is not None:
            raise ValueError("pass the prompt as inputs or as input_ids=, not both.")
        prompt = kwargs.pop("input_ids", None) if inputs is None else inputs
        prompt_mask, conversations = kwargs.pop("attention_mask", None), None
        if context_input_ids is None:
            if prompt is None:
                raise ValueError("give the conversation: context_input_ids (batch, turns, tokens), or one sequence "
                                 "per conversation as tokenizer.apply_chat_template(messages, "
                                 "add_generation_prompt=True, return_dict=True) writes it (input_ids).")
            conversations = prompt
            context_input_ids, context_attention_mask, prompt, prompt_mask = split_conversations(
                prompt, prompt_mask, self.config)
        context = self.encode_context(context_input_ids.to(self.device), context_attention_mask)
        rows = context.state.shape[0]
        draws = latents_per_sequence(self.generation_config, kwargs)
        do_sample = kwargs.get("do_sample", (kwargs.get("generation_config") or self.generation_config).do_sample)
        context = DialogContext(**{name: repeat_rows(value, draws) for name, value in context.items()})
        if component is not None:
            components = checked_components(component, self.config.response_config.num_groups,
                                            self.config.response_config.num_components, rows * draws).to(self.device)
        else:
            probs = self.policy_logits(context).softmax(-1)
            components = (torch.multinomial(probs.flatten(0, 1), 1).view(probs.shape[:2]) if do_sample
                          else probs.argmax(-1))
        latent = self.component_latent(components, sample=sample_latent)
        if prompt is None:
            prompt = torch.full((rows, 1), self.config.bos_token_id, device=self.device)
        check_input_ids(prompt, name="the response's start (input_ids)")
        if prompt.shape[0] not in (1, rows):
            raise ValueError(f"the response's start has {prompt.shape[0]} rows for {rows} contexts; give one per "
                             "context (or one for all).")
        repeat = rows * draws // prompt.shape[0]
        if prompt_mask is not None:
            kwargs["attention_mask"] = repeat_rows(prompt_mask, repeat)
        out = super().generate(repeat_rows(prompt, repeat), latent=latent, context_state=context.state,
                               context_memory=context.memory, context_memory_mask=context.memory_mask, **kwargs)
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        if conversations is not None:  # the whole conversation, then the new tokens
            sequences = torch.cat((repeat_rows(conversations.to(sequences.device), draws),
                                   sequences[:, prompt.shape[1]:]), dim=1)
        if isinstance(out, torch.Tensor):
            return sequences
        output_class = DialogGenerateBeamOutput if isinstance(out, GenerateBeamDecoderOnlyOutput) else (
            DialogGenerateOutput)
        return output_class(**{**out, "sequences": sequences}, components=components)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is the GRU state and the context (a DEMVAEDialogCache), not attention keys


__all__ = ["DEMVAEDialogOutput", "DEMVAEForDialogGeneration", "DialogGenerateBeamOutput", "DialogGenerateOutput"]
