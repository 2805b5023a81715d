"""DEM-VAE for Hugging Face transformers: `DEMVAEConfig`, `DEMVAEForGeneration` and a word-level tokenizer.

Importing the package registers the classes with `AutoConfig`, `AutoModelForCausalLM` and `AutoTokenizer`, so that
`AutoModelForCausalLM.from_pretrained(folder)` finds them; saved models also carry their modeling source for
`trust_remote_code=True` where the package is not installed.
"""

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .cache import DEMVAECache
from .configuration_demvae import DEMVAEConfig
from .modeling_demvae import DEMVAEForGeneration, DEMVAEOutput, DEMVAEPosterior
from .priors import ExponentialFamilyMixture, GaussianMixturePrior
from .tokenization_demvae import DEMVAETokenizer, build_tokenizer

AutoConfig.register(DEMVAEConfig.model_type, DEMVAEConfig, exist_ok=True)
AutoModelForCausalLM.register(DEMVAEConfig, DEMVAEForGeneration, exist_ok=True)
AutoTokenizer.register(DEMVAEConfig, tokenizer_class=DEMVAETokenizer, exist_ok=True)
DEMVAEConfig.register_for_auto_class()
DEMVAEForGeneration.register_for_auto_class("AutoModelForCausalLM")
DEMVAETokenizer.register_for_auto_class("AutoTokenizer")

__version__ = "0.1.0"

__all__ = [
    "DEMVAECache",
    "DEMVAEConfig",
    "DEMVAEForGeneration",
    "DEMVAEOutput",
    "DEMVAEPosterior",
    "DEMVAETokenizer",
    "ExponentialFamilyMixture",
    "GaussianMixturePrior",
    "build_tokenizer",
]
