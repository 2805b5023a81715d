"""DEM-VAE configuration: one dataclass holding the architecture, the latent layout and the loss switches."""

import math
from dataclasses import field

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

VARIANTS = ("dem", "vae", "discrete", "semi", "rnnlm")
PRIOR_FAMILIES = ("gaussian", "categorical")
FLOAT_FIELDS = ("dispersion_weight", "mutual_information_bonus", "kl_annealing_slope", "dropout", "gumbel_temperature",
                "initializer_range",
                "attribute_loss_weight")
ATTRIBUTE_KEYS = ("group", "variable", "labels", "supervised", "values")


@strict
class DEMVAEConfig(PreTrainedConfig):
    r"""
    Configuration of a [`DEMVAEForGeneration`] model (Shi et al., ICML 2020). Defaults are the reference
    Penn Treebank DGM-VAE: a 512-unit bidirectional GRU encoder, 20 mixture groups of 5 two-dimensional
    Gaussian components, a 512-unit GRU decoder, and dispersion weight 0.8.

    Args:
        vocab_size: Number of tokens in the vocabulary.
        embed_size: Size of the encoder and decoder word embeddings.
        encoder_hidden_size: GRU units per direction in the encoder.
        bidirectional_encoder: Whether the encoder reads the sentence in both directions.
        decoder_hidden_size: GRU units in the decoder; must equal `embed_size` when weights are tied.
        num_groups: G, the number of independent mixture groups in the latent.
        num_components: K, the number of mixture components (or discrete codes) per group.
        latent_size: d, the dimension of each group's continuous latent; for the categorical family, the number of
            categorical variables per group.
        prior_family: Exponential family of the mixture components: `"gaussian"` (diagonal Gaussians: GM-VAE,
            DGM-VAE) or `"categorical"` (d categorical variables of `categorical_size` values per group, the paper's
            CM-VAE and DCM-VAE; variant `"dem"` only). The decoder then sees z one-hot, laid out (G, d, V).
        categorical_size: V, the number of values of each categorical variable (categorical family only; >= 2).
        variant: `"dem"` (mixture prior: GM-VAE when `dispersion_weight` is 0, DGM-VAE otherwise), `"vae"`
            (one Gaussian latent with an N(0, I) prior), `"discrete"` (DI-VAE), `"semi"` (semi-VAE: Gaussian and
            discrete latents side by side) or `"rnnlm"` (the decoder alone).
        dispersion_weight: The paper's beta in [0, 1]; the objective is ELBO + beta * L_d.
        use_mutual_information: Whether to drop the I(x; c) penalty hidden in the ELBO (the "+L_mi" variants).
        mutual_information_bonus: Weight lambda >= 0 of I(x; c) (the batch estimate `mi`) subtracted from the loss on
            top of that: q(c|x) is pushed to be confident and different across sentences. The unsupervised
            categorical family keeps its components in use only with it (and `anneal_component_terms` false).
        anneal_component_terms: Whether the KL-annealing weight also scales the terms of the components (agg_ckl and
            the mi penalty or bonus); false keeps them at full weight from the first step. Adam moves q(c|x), whose
            only gradients come from the KL-weighted terms, at full speed whatever the weight: early in the warm-up
            it can collapse onto one component before the terms that keep the components in use weigh anything.
        kl_annealing: Whether KL terms are weighted by w_t = sigmoid(slope * (step - midpoint)).
        kl_annealing_slope: Slope of the annealing sigmoid.
        kl_annealing_midpoint: Step at which the annealing weight reaches 0.5.
        dropout: Dropout on embeddings and decoder outputs.
        concat_latent_to_inputs: Whether the latent is concatenated to every decoder input embedding.
        num_posterior_samples: Samples of z per sentence averaged in the reconstruction term.
        deterministic_eval: Whether a model in eval mode reconstructs from the posterior mean of z (and the argmax
            codes) instead of a sample, so that two forward passes agree; training always samples.
        gumbel_temperature: Gumbel-softmax temperature of the discrete latent in training (the DI-VAE and semi-VAE
            codes, the categorical family's z).
        gumbel_hard: Whether the categorical family's z is drawn in training with the straight-through Gumbel
            estimator, as the reference BMVAE draws it: the one-hot Gumbel-max sample forward, the relaxed
            Gumbel-softmax sample's gradient backward; false feeds the decoder the relaxed sample itself. The DI-VAE
            and semi-VAE codes are always relaxed in training.
        max_sentence_length: Longest sentence in tokens, `<s>` and `</s>` included; the default generation length.
        attributes: Label columns tied to discrete latents, name -> `{"group": g, "variable": None, "labels": [...],
            "supervised": bool, "values": {label: [latent values]}}`, kept sorted by name (as config.json keeps
            them): the order of `forward`'s `attribute_labels` columns. `variable` None ties the attribute to group
            g's component c_g (num_components >= number of labels when supervised). A supervised attribute (`demvae
            train --supervise`) trains q(c_g|x) toward its label, label i being component i (`values` may be left
            out); an unsupervised one (`demvae label-components`) maps each label to the components whose majority
            label it is. `generate(attributes={"act": "question"})` fixes the latent to the label's value(s).
        attribute_loss_weight: Weight of the supervised attributes' cross-entropy in the loss (not annealed).
    """

    model_type = "demvae"

    vocab_size: int = 10000
    embed_size: int = 512
    encoder_hidden_size: int = 512
    bidirectional_encoder: bool = True
    decoder_hidden_size: int = 512
    num_groups: int = 20
    num_components: int = 5
    latent_size: int = 2
    prior_family: str = "gaussian"
    categorical_size: int = 10
    variant: str = "dem"
    dispersion_weight: float | int = 0.8
    use_mutual_information: bool = True
    mutual_information_bonus: float | int = 0.0
    anneal_component_terms: bool = True
    kl_annealing: bool = True
    kl_annealing_slope: float | int = 0.0025
    kl_annealing_midpoint: int = 2500
    dropout: float | int = 0.3
    concat_latent_to_inputs: bool = True
    num_posterior_samples: int = 1
    deterministic_eval: bool = False
    gumbel_temperature: float | int = 1.0
    gumbel_hard: bool = True
    max_sentence_length: int = 40
    attributes: dict = field(default_factory=dict)
    attribute_loss_weight: float | int = 1.0
    initializer_range: float | int = 0.1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    unk_token_id: int | None = 3
    tie_word_embeddings: bool = True
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in FLOAT_FIELDS:  # accept 1 where 1.0 is meant (JSON and command lines drop the ".0")
            setattr(self, name, float(getattr(self, name)))
        self._check_values()

    def _check_values(self):
        """Reject impossible settings at construction, naming the field and what it accepts."""
        for name in ("vocab_size", "embed_size", "encoder_hidden_size", "decoder_hidden_size", "num_groups",
                     "num_components", "latent_size", "num_posterior_samples", "max_sentence_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DEMVAEConfig.{name} must be a positive integer, got {value!r}.")
        for name in FLOAT_FIELDS:  # NaN passes every comparison below
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"DEMVAEConfig.{name} must be a finite number, got {getattr(self, name)}.")
        if self.max_sentence_length < 2:
            raise ValueError(
                f"DEMVAEConfig.max_sentence_length must be at least 2 (<s> and </s>), got {self.max_sentence_length}."
            )
        if self.variant not in VARIANTS:
            raise ValueError(f"DEMVAEConfig.variant must be one of {VARIANTS}, got {self.variant!r}.")
        if self.prior_family not in PRIOR_FAMILIES:
            raise ValueError(f"DEMVAEConfig.prior_family must be one of {PRIOR_FAMILIES}, got {self.prior_family!r}.")
        if self.categorical_size < 2:  # the strict dataclass has checked that it is an int
            raise ValueError(f"DEMVAEConfig.categorical_size (V) must be an integer >= 2, got {self.categorical_size}.")
        if self.prior_family == "categorical" and self.variant != "dem":
            raise ValueError(f"DEMVAEConfig.prior_family='categorical' is a mixture prior: it needs variant='dem', "
                             f"got variant={self.variant!r} (the other variants take prior_family='gaussian').")
        if not 0.0 <= self.dispersion_weight <= 1.0:
            raise ValueError(f"DEMVAEConfig.dispersion_weight (beta) must lie in [0, 1], got {self.dispersion_weight}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DEMVAEConfig.dropout must lie in [0, 1), got {self.dropout}.")
        if self.gumbel_temperature <= 0:
            raise ValueError(f"DEMVAEConfig.gumbel_temperature must be positive, got {self.gumbel_temperature}.")
        if self.initializer_range < 0:
            raise ValueError(f"DEMVAEConfig.initializer_range must be non-negative, got {self.initializer_range}.")
        if self.mutual_information_bonus < 0:
            raise ValueError(f"DEMVAEConfig.mutual_information_bonus must be non-negative, got "
                             f"{self.mutual_information_bonus}.")
        if self.attribute_loss_weight < 0:
            raise ValueError(f"DEMVAEConfig.attribute_loss_weight must be non-negative, got "
                             f"{self.attribute_loss_weight}.")
        self.attributes = self._checked_attributes()
        if self.kl_annealing_slope <= 0:
            raise ValueError(f"DEMVAEConfig.kl_annealing_slope must be positive, got {self.kl_annealing_slope}.")
        if self.tie_word_embeddings and self.decoder_hidden_size != self.embed_size:
            raise ValueError(
                "DEMVAEConfig.tie_word_embeddings=True needs decoder_hidden_size == embed_size, got "
                f"{self.decoder_hidden_size} and {self.embed_size}; make them equal or set tie_word_embeddings=False."
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"DEMVAEConfig.{name} must be None or in [0, vocab_size={self.vocab_size}), got {value}."
                )

    def _checked_attributes(self) -> dict:
        """`attributes` sorted by name with every key filled in (a supervised label i is latent value i), or a
        one-line error naming the attribute and what it accepts."""
        if not isinstance(self.attributes, dict):
            raise ValueError(f"DEMVAEConfig.attributes must be a dict of name -> spec, got {self.attributes!r}.")
        checked, tied = {}, {}
        for name, spec in sorted(self.attributes.items()):
            where = f"DEMVAEConfig.attributes[{name!r}]"
            if not isinstance(spec, dict) or set(spec) - set(ATTRIBUTE_KEYS):
                raise ValueError(f"{where} must be a dict with keys among {ATTRIBUTE_KEYS}, got {spec!r}.")
            if not self.has_discrete_latent:
                raise ValueError(f"{where}: variant={self.variant!r} has no discrete latent to tie an attribute to; "
                                 "use variant 'dem', 'discrete' or 'semi'.")
            group, variable, labels = spec.get("group"), spec.get("variable"), spec.get("labels")
            supervised = spec.get("supervised", True)
            if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < self.num_groups:
                raise ValueError(f"{where}: group must be an integer in [0, num_groups={self.num_groups}), got "
                                 f"{group!r}.")
            size, latent = self.num_components, f"group {group}'s component (num_components)"
            if variable is not None:
                if self.prior_family != "categorical":
                    raise ValueError(f"{where}: variable={variable!r} ties the attribute to a categorical variable "
                                     "of z, which only prior_family='categorical' has; use variable None (the "
                                     "group's component c_g).")
                if isinstance(variable, bool) or not isinstance(variable, int) or not 0 <= variable < self.latent_size:
                    raise ValueError(f"{where}: variable must be None or an integer in [0, latent_size="
                                     f"{self.latent_size}), got {variable!r}.")
                size, latent = self.categorical_size, f"variable {variable} of group {group} (categorical_size)"
            if (not isinstance(labels, list) or not labels or len(set(labels)) != len(labels)
                    or not all(isinstance(label, str) and label for label in labels)):
                raise ValueError(f"{where}: labels must be a non-empty list of distinct label names, got {labels!r}.")
            if not isinstance(supervised, bool):
                raise ValueError(f"{where}: supervised must be true or false, got {supervised!r}.")
            if supervised and len(labels) > size:
                raise ValueError(f"{where} has {len(labels)} labels but {latent} takes {size} values; raise it to at "
                                 f"least {len(labels)}.")
            identity = {label: [index] for index, label in enumerate(labels)}
            values = spec.get("values", identity if supervised else None)
            if not isinstance(values, dict) or set(values) != set(labels):
                raise ValueError(f"{where}: values must map each label of {labels} to a list of latent values, got "
                                 f"{values!r}.")
            values = {label: values[label] for label in labels}
            flat = [v for vs in values.values() for v in (vs if isinstance(vs, list) else [None])]
            if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < size for v in flat) or (
                    len(set(flat)) != len(flat)):
                raise ValueError(f"{where}: values must hold distinct integers in [0, {size}) (each latent value "
                                 f"under one label at most), got {values!r}.")
            if supervised and values != identity:
                raise ValueError(f"{where}: a supervised attribute maps label i to latent value i ({identity}), got "
                                 f"{values!r}.")
            if supervised and (group, variable) in tied:
                raise ValueError(f"{where} and attributes[{tied[group, variable]!r}] supervise the same latent; give "
                                 "each supervised attribute its own group (or variable).")
            if supervised:
                tied[group, variable] = name
            checked[name] = {"group": group, "variable": variable, "labels": list(labels), "supervised": supervised,
                             "values": {label: list(vs) for label, vs in values.items()}}
        return checked

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        check_model_type(config_dict, cls.model_type, pretrained_model_name_or_path, "a DEM-VAE",
                         "load it with its own class or AutoModel")
        return config_dict, kwargs

    @property
    def paper_name(self) -> str:
        """The paper's name of this model: DGM-VAE or GM-VAE (+ MI), DCM-VAE or CM-VAE (+ MI) for the categorical
        family, VAE, DI-VAE, semi-VAE (+ MI) or RNNLM.

        DI-VAE's batch-prior regularization is its definition (the MI switch on), so it takes no "+ MI"."""
        mi = " + MI" if self.use_mutual_information else ""
        if self.variant == "dem":
            family = "C" if self.prior_family == "categorical" else "G"
            return ("D" if self.dispersion_weight > 0 else "") + family + "M-VAE" + mi
        return {"vae": "VAE", "discrete": "DI-VAE", "semi": "semi-VAE" + mi, "rnnlm": "RNNLM"}[self.variant]

    @property
    def has_mixture_prior(self) -> bool:
        return self.variant == "dem"

    @property
    def has_continuous_latent(self) -> bool:
        return self.variant in ("vae", "semi") or (self.variant == "dem" and self.prior_family == "gaussian")

    @property
    def has_categorical_latent(self) -> bool:
        """Whether z is the categorical family's: G x d categorical variables of V values, fed one-hot."""
        return self.variant == "dem" and self.prior_family == "categorical"

    @property
    def has_discrete_latent(self) -> bool:
        """Whether q(c|x) is computed: the mixture's component posterior or the discrete codes."""
        return self.variant in ("dem", "discrete", "semi")

    @property
    def continuous_size(self) -> int:
        return self.num_groups * self.latent_size if self.has_continuous_latent else 0

    @property
    def decoder_latent_size(self) -> int:
        """Width of the vector the decoder is conditioned on: z (Gaussian, or one-hot categorical (G, d, V)), the
        one-hot codes, or z and codes."""
        codes = self.num_groups * self.num_components if self.variant in ("discrete", "semi") else 0
        categorical = self.num_groups * self.latent_size * self.categorical_size if self.has_categorical_latent else 0
        return self.continuous_size + codes + categorical

    def kl_weight(self, step: int) -> float:
        """The annealing weight w_t of the KL terms at a training step (1 when annealing is off)."""
        if not self.kl_annealing:
            return 1.0
        x = -self.kl_annealing_slope * (step - self.kl_annealing_midpoint)
        return 1.0 / (1.0 + math.exp(min(x, 700.0)))


def check_model_type(config_dict: dict, model_type: str, origin, kind: str, advice: str) -> None:
    """Refuse another architecture's checkpoint instead of warning and loading it into the wrong model."""
    found = config_dict.get("model_type", model_type)
    if found != model_type:
        raise ValueError(f"{origin} holds a {found!r} model, not {kind} one (model_type {model_type!r}); {advice}.")


__all__ = ["DEMVAEConfig", "check_model_type"]
