"""Checks that every command runs before its work: numbers in range, output paths writable, model files kept.

A bad option fails in milliseconds with one line naming it and what it accepts, not after an hour of training.
"""

import argparse
import math
import os
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


THREADS_PER_CORE = 4  # more threads than this per core only slow a process down (and absurd counts crash OpenMP)


def most_threads() -> int:
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def check_threads(name: str, value) -> int:
    """A thread count this machine can run: 1 to THREADS_PER_CORE x its cores, which the message names."""
    check_number(name, value, integer=True, minimum=1)
    if value > most_threads():
        raise ValueError(f"{name} must be at most {most_threads()} ({THREADS_PER_CORE} x this machine's "
                         f"{os.cpu_count() or 1} cores), got {value}.")
    return value


def thread_count(text: str) -> int:
    """An argparse `type=` for --num-threads (see `check_threads`)."""
    try:
        return check_threads("the value", number(int, minimum=1)(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("the value ").removesuffix(".")) from None


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (Linux's MemAvailable, else the free pages), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed_bytes: float, what: str) -> None:
    """Refuse, before anything is allocated, a size whose memory (an estimate) exceeds what this machine has free:
    one line instead of the allocator's error, or the system killing the process, after the work before it."""
    free = available_memory()
    if free is not None and needed_bytes > free:
        raise ValueError(f"{what} needs about {needed_bytes / 2**30:,.1f} GiB of memory, and this machine has "
                         f"{free / 2**30:,.1f} GiB free; give smaller sizes.")


def decoding_bytes(config: dict, rows: int) -> int:
    """About the memory of decoding `rows` sentences at once with a model of this config (config.json's settings):
    per row, a step's logits and their softmax, the decoder's state and the tokens so far."""
    vocabulary, hidden = config.get("vocab_size", 10_000), config.get("decoder_hidden_size", 512)
    return rows * (4 * (3 * vocabulary + 8 * hidden) + 8 * config.get("max_sentence_length", 40))


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


__all__ = ["available_memory", "check_memory", "decoding_bytes", "check_number", "check_threads", "checked_output_file",
           "checked_output_folder", "device", "number", "thread_count"]
