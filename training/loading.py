"""Loading a saved DEM-VAE with the tokenizer saved beside it: the one loader of every command.

A folder that is not a model, or a model whose files are damaged, gives one line naming the folder and the problem
instead of a traceback from deep inside transformers.
"""

from pathlib import Path

from safetensors import SafetensorError
from transformers.utils import logging as hf_logging

from modeling_demvae import DEMVAEForGeneration, DEMVAETokenizer

RUN_SUMMARY = "training_summary.json"  # written beside the exported model by `demvae train`
LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError)


def one_line(error: BaseException) -> str:
    """The first non-empty line of an error message (libraries often add advice over several lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _checked_folder(source: str) -> None:
    """A local path must be a folder holding config.json; anything else may be a Hub id."""
    folder = Path(source).expanduser()
    if not folder.exists() and not source.startswith((".", "/", "~")):
        return
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no model found at {source}: expected a folder with config.json and model weights "
                                "(the output of `demvae train` or save_pretrained).")


def load_tokenizer(source) -> DEMVAETokenizer:
    """The word-level tokenizer saved with a model (folder or Hub id)."""
    try:
        return DEMVAETokenizer.from_pretrained(str(source))  # folders saved before the class existed too
    except LOAD_ERRORS as error:
        raise ValueError(f"no usable tokenizer beside the model at {source} ({one_line(error)}).") from None


def load_model_and_tokenizer(source, *, device=None) -> tuple[DEMVAEForGeneration, DEMVAETokenizer]:
    """A saved model in eval mode (on `device` when given) and its tokenizer; ValueError or FileNotFoundError with
    one line naming `source` and the problem."""
    source = str(source)
    _checked_folder(source)
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # loading a DEM-VAE takes a blink; its bar would bury the command's output
    try:
        model = DEMVAEForGeneration.from_pretrained(source)
    except LOAD_ERRORS as error:
        raise ValueError(f"cannot load the model at {source}: {one_line(error)}") from None
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
    model = model.eval() if device is None else model.to(device).eval()
    return model, load_tokenizer(source)


__all__ = ["RUN_SUMMARY", "load_model_and_tokenizer", "load_tokenizer", "one_line"]
