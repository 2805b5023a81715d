"""Checks that every command runs before its work: numbers in range, output paths writable, model files kept.

A bad option fails in milliseconds with one line naming it and what it accepts, not after an hour of training.
"""

import argparse
import math
import tempfile
from pathlib import Path

from .model_folder import checkpoints_folder_of, written_by_demvae


def _accepted(integer: bool, minimum, maximum, above, below) -> str:
    """What a range accepts, in words: "a positive integer", "a number in (0, 1]", ..."""
    if integer and maximum is None and below is None and (minimum, above) in ((1, None), (0, None)):
        return "a positive integer" if minimum == 1 else "a non-negative integer"
    if not integer and maximum is None and below is None and (minimum, above) == (None, 0):
        return "a positive finite number"
    lower = f"[{minimum}" if minimum is not None else f"({above}" if above is not None else "(-inf"
    upper = f"{maximum}]" if maximum is not None else f"{below})" if below is not None else "inf)"
    return f"{'an integer' if integer else 'a number'} in {lower}, {upper}"


def check_number(name: str, value, *, integer: bool = False, minimum=None, maximum=None, above=None, below=None):
    """`value` itself when it is a finite number (an int when `integer`) within the bounds (`minimum`/`maximum`
    inclusive, `above`/`below` exclusive); else a ValueError naming `name` and the accepted values."""
    kinds = (int,) if integer else (int, float)
    fits = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and not (
        (minimum is not None and value < minimum) or (maximum is not None and value > maximum)
        or (above is not None and value <= above) or (below is not None and value >= below))
    if not fits:
        raise ValueError(f"{name} must be {_accepted(integer, minimum, maximum, above, below)}, got {value!r}.")
    return value


def number(kind=int, **bounds):
    """An argparse `type=` that parses `kind` and range-checks it (bounds as in `check_number`)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        try:
            return check_number("the value", value, integer=kind is int, **bounds)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("the value ").removesuffix(".")) from None

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def device(text: str) -> str:
    """An argparse `type=` for --device: a torch device name, and a GPU this machine has."""
    import torch  # here, not at the top: --help must not wait for torch

    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if parsed.type == "cuda" and (parsed.index or 0) >= gpus:
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {gpus} CUDA GPU(s); use cpu")
    return text


def _given(path, option: str) -> Path:
    """The path an option gives, refused when empty (Path("") would be the current folder)."""
    if not str(path).strip():
        raise ValueError(f"{option} is empty; give a path.")
    return Path(path)


def checked_output_folder(path, option: str) -> Path:
    """A folder the command may write into: an existing writable folder, or one that can be made there, and none
    in a run's checkpoints (which the run renames and deletes)."""
    path = _given(path, option)
    if (checkpoints := checkpoints_folder_of(path)) is not None:
        raise ValueError(f"{option} {path} is in the checkpoints of the run in {checkpoints.parent}, which that run "
                         "replaces and deletes; give another folder.")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f": {existing} is a file"
        raise ValueError(f"{option} {path}{where or ' is a file'}, not a folder; give a folder path.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot write in {existing} ({error.strerror or error}); give a "
                         "writable folder.") from None
    return path


def checked_output_file(path, option: str, *, replaces: tuple[str, ...] = ()) -> Path:
    """A file the command may write: not a folder, not a file that another demvae command wrote (a model's, a
    checkpoint's, an evaluation's progress, a card, a picture: see `written_by_demvae`; the names in `replaces`
    are the command's own), in a writable folder."""
    path = _given(path, option)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file path.")
    if (written := written_by_demvae(path, replaces=replaces)) is not None:
        what, damaged = written
        raise ValueError(f"{option} {path} is {what}; writing it would damage {damaged}, give another file name.")
    checked_output_folder(path.parent, option)
    return path


__all__ = ["check_number", "checked_output_file", "checked_output_folder", "device", "number"]
