"""Configuration of the dialog model: the response VAE's `DEMVAEConfig`, nested, and the context side's settings."""

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_demvae import DEMVAEConfig, check_model_type

FLOAT_FIELDS = ("consistency_weight", "initializer_range")
# the reference run's response VAE (spec section 9): 3 groups x 5 components x 16 dimensions, its `--beta 0.5`
REFERENCE_RESPONSE_SETTINGS = {"num_groups": 3, "num_components": 5, "latent_size": 16, "dispersion_weight": 0.5,
                               "use_mutual_information": True}


@strict
class DEMVAEDialogConfig(PreTrainedConfig):
    r"""
    Configuration of a [`DEMVAEForDialogGeneration`] model: responses generated through latent actions, the mixture
    components of a response DEM-VAE chosen by a policy from the context (the reference code's `AeED_GMM` on the
    Stanford Multi-Domain corpus). Defaults are the reference run's.

    The response VAE is this package's sentence model, so its settings are a whole `DEMVAEConfig`, `response_config`
    (saved nested in config.json): a sentence model's config and weights can start it. The vocabulary, the special
    token ids, the embedding size and the decoder's layout are the response VAE's; the response decoder of the
    dialog model has the response VAE's decoder layout (`decoder_hidden_size`, z concatenated to its inputs per
    `concat_latent_to_inputs`). Dropout everywhere is the response VAE's `dropout`.

    Args:
        response_config: The response VAE's `DEMVAEConfig` (or its dict). None: the reference's, 3 groups x 5
            components x 16 dimensions, dispersion_weight 0.5 (the reference's `--beta 0.5`), the MI term on. Its
            variant must have components a policy can choose: `"dem"` (a mixture prior) or `"discrete"` (DI-VAE
            latent actions, LAED's baseline).
        utterance_hidden_size: GRU units per direction of the bidirectional utterance encoder, whose token states
            are pooled by attention into one vector per turn.
        context_hidden_size: GRU units of the encoder over the turns; its state after the last turn is the context
            state the policy reads and the response decoder starts from.
        policy_hidden_size: Hidden units of the policy p(c_g | context), Linear-Tanh-Linear to G x K logits.
        attention_size: Hidden units of the attention scores (the utterance encoder's pooling).
        consistency_weight: Weight of the consistency term in stage 2: the response encoder's q(c|x) of the
            decoder's soft output, cross-entropy toward the components the decoder was given.
        context_turns: How many of the previous turns a response's context keeps (the most recent).
        max_utterance_length: Longest context turn in tokens, markers included; longer ones keep their last words.
        initializer_range: Weights of the context side are drawn from Uniform(-r, r), as the response VAE's.
        tie_word_embeddings: Whether the response decoder's output layer shares its input embedding (needs the
            response VAE's `decoder_hidden_size == embed_size`).
    """

    model_type = "demvae_dialog"
    sub_configs_defaults = {"response_config": SubConfigSpec(config_class=DEMVAEConfig,
                                                             init_kwargs=REFERENCE_RESPONSE_SETTINGS)}

    response_config: dict | DEMVAEConfig | None = None
    utterance_hidden_size: int = 256
    context_hidden_size: int = 512
    policy_hidden_size: int = 512
    attention_size: int = 256
    consistency_weight: float | int = 0.1
    context_turns: int = 30
    max_utterance_length: int = 40
    initializer_range: float | int = 0.1
    tie_word_embeddings: bool = True
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in FLOAT_FIELDS:  # accept 1 where 1.0 is meant
            setattr(self, name, float(getattr(self, name)))
        self._check_values()

    def _check_values(self):
        """Reject impossible settings at construction, naming the field and what it accepts."""
        for name in ("utterance_hidden_size", "context_hidden_size", "policy_hidden_size", "attention_size",
                     "context_turns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DEMVAEDialogConfig.{name} must be a positive integer, got {value!r}.")
        if self.max_utterance_length < 3:
            raise ValueError("DEMVAEDialogConfig.max_utterance_length must be at least 3 (<s>, the speaker and "
                             f"</s>), got {self.max_utterance_length}.")
        for name in FLOAT_FIELDS:
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"DEMVAEDialogConfig.{name} must be a non-negative number, got "
                                 f"{getattr(self, name)}.")
        response = self.response_config
        if response.variant not in ("dem", "discrete"):
            raise ValueError(f"DEMVAEDialogConfig.response_config.variant must be 'dem' or 'discrete' (components "
                             f"for the policy to choose), got {response.variant!r}.")
        if self.tie_word_embeddings and response.decoder_hidden_size != response.embed_size:
            raise ValueError("DEMVAEDialogConfig.tie_word_embeddings=True needs the response VAE's "
                             f"decoder_hidden_size == embed_size, got {response.decoder_hidden_size} and "
                             f"{response.embed_size}; make them equal or set tie_word_embeddings=False.")

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        check_model_type(config_dict, cls.model_type, pretrained_model_name_or_path, "a DEM-VAE dialog",
                         "a sentence DEM-VAE starts a dialog model with DEMVAEForDialogGeneration.from_response_vae")
        return config_dict, kwargs

    @property
    def paper_name(self) -> str:
        """The model's name: its response VAE's paper name with "latent actions" (e.g. "DGM-VAE + MI latent
        actions"; the reference's LAED baseline is "DI-VAE latent actions")."""
        return f"{self.response_config.paper_name} latent actions"

    # the response VAE's vocabulary and special tokens are the dialog model's (generation reads them here)
    @property
    def vocab_size(self) -> int:
        return self.response_config.vocab_size

    @property
    def pad_token_id(self) -> int | None:
        return self.response_config.pad_token_id

    @property
    def bos_token_id(self) -> int | None:
        return self.response_config.bos_token_id

    @property
    def eos_token_id(self) -> int | None:
        return self.response_config.eos_token_id


__all__ = ["DEMVAEDialogConfig"]
