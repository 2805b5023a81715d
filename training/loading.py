"""Loading a saved DEM-VAE with the tokenizer saved beside it: the one loader of every command.

A folder that is not a model, or a model whose files are damaged, gives one line naming the folder and the problem
instead of a traceback from deep inside transformers.
"""

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers.utils import logging as hf_logging

import modeling_demvae
from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, DEMVAETokenizer

RUN_SUMMARY = "training_summary.json"  # written beside the exported model by `demvae train`
LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError, StrictDataclassError)
JSON_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json")
# a saved model's own files: what save_pretrained, the tokenizer and `demvae train` write, and the modeling source
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "tokenizer*.json", "special_tokens_map.json",
                       "added_tokens.json", "*.safetensors", "*.safetensors.index.json", RUN_SUMMARY,
                       *(path.name for path in Path(modeling_demvae.__file__).parent.glob("*.py")))


def one_line(error: BaseException) -> str:
    """The first non-empty line of an error message (libraries often add advice over several lines); the whole
    message joined for a config field's type error, whose first line names only the field."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, StrictDataclassError):
        return " ".join(lines)
    return lines[0] if lines else type(error).__name__


def model_files(folder) -> list[Path]:
    """The files of the model saved in `folder` (none when it holds no config.json or weights): the ones that
    commands writing beside a model must never replace."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / "model.safetensors").is_file():
        return []
    return sorted({path for pattern in MODEL_FILE_PATTERNS for path in folder.glob(pattern) if path.is_file()})


def checked_model_folder(source: str) -> Path | None:
    """A local path must be a folder holding config.json, and its JSON files must hold JSON objects; anything else
    may be a Hub id (None)."""
    folder = Path(source).expanduser()
    if not folder.exists() and not source.startswith((".", "/", "~")):
        return None
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no model found at {source}: expected a folder with config.json and model weights "
                                "(the output of `demvae train` or save_pretrained).")
    for name in JSON_FILES:
        if not (folder / name).is_file():
            continue
        try:
            content = json.loads((folder / name).read_bytes())
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"cannot load the model at {source}: {name} is not valid JSON ({error}).") from None
        if not isinstance(content, dict):
            raise ValueError(f"cannot load the model at {source}: {name} holds a JSON {type(content).__name__}, "
                             "not an object of settings.")
    if (folder / "model.safetensors").is_file():
        try:  # the header lists every tensor's bytes: a truncated or foreign file fails here
            with safe_open(folder / "model.safetensors", "pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise ValueError(f"cannot load the model at {source}: model.safetensors is damaged or truncated "
                             f"({one_line(error)}).") from None
    return folder


def _shape_mismatch(folder: Path) -> str | None:
    """The first tensor of model.safetensors whose shape differs from the one config.json gives it, in words."""
    with torch.device("meta"):
        expected = DEMVAEForGeneration(DEMVAEConfig.from_pretrained(folder)).state_dict()
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


def load_model_and_tokenizer(source, *, device=None) -> tuple[DEMVAEForGeneration, DEMVAETokenizer]:
    """A saved model in eval mode (on `device` when given) and its tokenizer; ValueError or FileNotFoundError with
    one line naming `source` and the problem."""
    source = str(source)
    folder = checked_model_folder(source)
    try:
        with quiet_progress_bars():
            model = DEMVAEForGeneration.from_pretrained(source)
    except LOAD_ERRORS as error:
        reason = one_line(error)
        if folder is not None and (folder / "model.safetensors").is_file():
            try:  # transformers' own report of mismatched shapes goes to its logger, not into the error
                reason = _shape_mismatch(folder) or reason
            except LOAD_ERRORS:
                pass
        raise ValueError(f"cannot load the model at {source}: {reason}") from None
    model = model.eval() if device is None else model.to(device).eval()
    return model, load_tokenizer(source)


__all__ = [
    "RUN_SUMMARY",
    "checked_model_folder",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "model_files",
    "one_line",
    "quiet_progress_bars",
]
