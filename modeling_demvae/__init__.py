"""DEM-VAE for Hugging Face transformers: `DEMVAEConfig`, `DEMVAEForGeneration` and a word-level tokenizer; the
dialog model `DEMVAEDialogConfig`, `DEMVAEForDialogGeneration` (responses through latent actions).

Importing the package registers the classes with `AutoConfig`, `AutoModelForCausalLM` and `AutoTokenizer`, so that
`AutoModelForCausalLM.from_pretrained(folder)` finds them; saved models also carry their modeling source for
`trust_remote_code=True` where the package is not installed. The dialog model is a causal LM of transformers' kind:
it continues a conversation written as one sequence by its tokenizer's chat template, as text-generation pipelines
and `generate` expect, with its context read by its own encoder.
"""

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .cache import DEMVAECache, DEMVAEDialogCache
from .configuration_demvae import DEMVAEConfig
from .configuration_dialog import DEMVAEDialogConfig
from .modeling_demvae import DEMVAEForGeneration, DEMVAEOutput, DEMVAEPosterior
from .modeling_dialog import DEMVAEDialogOutput, DEMVAEForDialogGeneration
from .priors import ExponentialFamilyMixture, GaussianMixturePrior
from .tokenization_demvae import DEMVAETokenizer, build_tokenizer

for config_class, model_class in ((DEMVAEConfig, DEMVAEForGeneration), (DEMVAEDialogConfig, DEMVAEForDialogGeneration)):
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)
    AutoTokenizer.register(config_class, tokenizer_class=DEMVAETokenizer, exist_ok=True)
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModelForCausalLM")
DEMVAETokenizer.register_for_auto_class("AutoTokenizer")

__version__ = "0.1.0"

__all__ = [
    "DEMVAECache",
    "DEMVAEConfig",
    "DEMVAEDialogCache",
    "DEMVAEDialogConfig",
    "DEMVAEDialogOutput",
    "DEMVAEForDialogGeneration",
    "DEMVAEForGeneration",
    "DEMVAEOutput",
    "DEMVAEPosterior",
    "DEMVAETokenizer",
    "ExponentialFamilyMixture",
    "GaussianMixturePrior",
    "build_tokenizer",
]
