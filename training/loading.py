"""Loading a saved DEM-VAE with the tokenizer saved beside it: the one loader of every command.

A folder that is not a model, or a model whose files are damaged, gives one line naming the folder and the problem
instead of a traceback from deep inside transformers.
"""

from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers.utils import logging as hf_logging

from modeling_demvae import DEMVAEForDialogGeneration, DEMVAEForGeneration, DEMVAETokenizer

from .model_folder import SPECIAL_IDS, checked_model_folder, is_dialog_model, one_line

LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError, StrictDataclassError)


def model_class(folder: Path | None) -> type:
    """The class of the model saved in `folder`: the dialog model for a dialog config, else (and for a Hub id) the
    sentence model."""
    return DEMVAEForDialogGeneration if is_dialog_model(folder) else DEMVAEForGeneration


def _shape_mismatch(folder: Path) -> str | None:
    """The first tensor of model.safetensors whose shape differs from the one config.json gives it, in words."""
    model_type = model_class(folder)
    with torch.device("meta"):
        expected = model_type(model_type.config_class.from_pretrained(folder)).state_dict()
    with safe_open(folder / "model.safetensors", "pt") as weights:
        for name in weights.keys():
            shape = list(weights.get_slice(name).get_shape())
            if name in expected and shape != list(expected[name].shape):
                return (f"model.safetensors does not fit config.json: {name} has shape {shape} in the file, "
                        f"{list(expected[name].shape)} for the config")
    return None


def load_tokenizer(source) -> DEMVAETokenizer:
    """The word-level tokenizer saved with a model (folder or Hub id)."""
    if Path(source).is_dir() and not (Path(source) / "tokenizer.json").is_file():
        raise ValueError(f"no tokenizer.json beside the model at {source}; save the tokenizer it was trained "
                         "with there (tokenizer.save_pretrained).")
    try:
        return DEMVAETokenizer.from_pretrained(str(source))  # folders saved before the class existed too
    except LOAD_ERRORS as error:
        reason = f"an entry {error.args[0]!r} is missing" if isinstance(error, KeyError) else one_line(error)
        raise ValueError(f"no usable tokenizer beside the model at {source} ({reason}).") from None


@contextmanager
def quiet_progress_bars():
    """Loading and saving a DEM-VAE takes a blink; transformers' bars would only bury a command's output."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_model_and_tokenizer(source, *, device=None) -> tuple[DEMVAEForGeneration | DEMVAEForDialogGeneration,
                                                             DEMVAETokenizer]:
    """A saved model (a sentence or a dialog model, as its config says) in eval mode (on `device` when given) and
    its tokenizer; ValueError or FileNotFoundError with one line naming `source` and the problem."""
    source = str(source)
    folder = checked_model_folder(source)
    try:
        with quiet_progress_bars():
            model, loading = model_class(folder).from_pretrained(source, output_loading_info=True)
    except LOAD_ERRORS as error:
        reason = one_line(error, whole=isinstance(error, StrictDataclassError))
        if folder is not None and (folder / "model.safetensors").is_file():
            try:  # transformers' own report of mismatched shapes goes to its logger, not into the error
                reason = _shape_mismatch(folder) or reason
            except LOAD_ERRORS:
                pass
        raise ValueError(f"cannot load the model at {source}: {reason}") from None
    if loading["missing_keys"]:  # transformers would start them random, e.g. an lm_head once untied in config.json
        raise ValueError(f"cannot load the model at {source}: config.json asks for weights that model.safetensors "
                         f"lacks ({', '.join(sorted(loading['missing_keys']))}), which would start random; the config "
                         "was edited (e.g. tie_word_embeddings) or belongs to other weights.")
    tokenizer = load_tokenizer(source)
    check_tokenizer_fits(model.config, tokenizer, source)
    model = model.eval() if device is None else model.to(device).eval()
    return model, tokenizer


def check_tokenizer_fits(config, tokenizer, source) -> None:
    """The tokenizer saved beside a model must be the one it was trained with: the same vocabulary size and special
    ids. Another one would load and decode every id into the wrong word. A dialog model's are its response VAE's."""
    config = getattr(config, "response_config", config)
    pairs = [("tokens", len(tokenizer), "vocab_size", config.vocab_size),
             *((name, getattr(tokenizer, name), name, getattr(config, name)) for name in SPECIAL_IDS)]
    for what, in_tokenizer, field, in_config in pairs:
        if in_tokenizer != in_config:
            raise ValueError(f"the tokenizer beside the model at {source} has {in_tokenizer} {what}, config.json "
                             f"{field} {in_config}: tokenizer.json belongs to another model; save the tokenizer the "
                             "model was trained with there.")


__all__ = ["check_tokenizer_fits", "load_model_and_tokenizer", "load_tokenizer", "model_class", "quiet_progress_bars"]
