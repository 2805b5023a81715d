"""A run in an output folder: never trained over by accident, identified by the settings its trajectory depends on
(so that --resume continues the same run or refuses with the differences), stopped by Ctrl-C between steps, and
timed over all its starts."""

import hashlib
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import numpy as np

from .checks import checked_output_folder
from .model_folder import TEMPORARY_PREFIX, TRASH_PREFIX, model_files


def check_output_dir(output_dir, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder that cannot be written, and one that holds an earlier run's model or checkpoints
    unless --resume or --overwrite says what to do with them."""
    output = checked_output_folder(output_dir, "--output-dir")
    checkpoints = output / "checkpoints"
    has_checkpoints = checkpoints.is_dir() and any(not path.name.startswith((TEMPORARY_PREFIX, TRASH_PREFIX))
                                                   for path in checkpoints.iterdir())
    has_model = bool(model_files(output))
    if overwrite or not (has_model or has_checkpoints) or (resume and has_checkpoints):
        return
    if resume:
        raise ValueError(f"--resume: {output} holds a model but no checkpoint to resume from; --overwrite replaces "
                         "the model, or give another --output-dir.")
    held = " and ".join(name for name, held in (("a model", has_model), ("checkpoints", has_checkpoints)) if held)
    raise ValueError(f"{output} already holds {held} of an earlier run; --resume continues it, --overwrite replaces "
                     "it, or give another --output-dir.")


LOCK_FILE = ".demvae-train.lock"  # in the output folder; it holds the process id of the run that trains there


def _lock_holder(handle) -> str:
    handle.seek(0)
    return handle.read().strip() or "unknown"


def _in_use(output, holder: str) -> ValueError:
    return ValueError(f"{output} is in use: another `demvae train` (process {holder}) is training into it; wait for "
                      "it to end, or give another --output-dir.")


def check_not_in_use(output_dir) -> None:
    """Refuse, before any work, an output folder whose lock another process holds (see `output_lock`)."""
    import fcntl  # here: POSIX only, and only for train

    path = Path(output_dir) / LOCK_FILE
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(output_dir, _lock_holder(handle)) from None


@contextmanager
def output_lock(output_dir):
    """Within, this process alone trains into `output_dir`: an exclusive lock on its LOCK_FILE, which a second run
    (or --overwrite, --resume) into the folder is refused by in one line naming the holder. The system releases it
    when the process ends, however it ends, so a crash never leaves a stale lock."""
    import fcntl

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    handle = open(output / LOCK_FILE, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(output, _lock_holder(handle)) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def ids_record(rows) -> dict:
    """The size and SHA-256 of a split's token ids: the data and the tokenizer in one fingerprint. Rows read from
    Arrow (`arrow_rows.ColumnRows`) compute the same digest themselves, a batch at a time."""
    if hasattr(rows, "record"):
        return rows.record()
    digest = hashlib.sha256()
    for row in rows:
        digest.update(np.asarray(row, dtype=np.int64).tobytes() + b";")
    return {"sentences": len(rows), "sha256": digest.hexdigest()}


def contexts_record(contexts) -> dict:
    """`ids_record` of dialog contexts (lists of turns of token ids), a turn's end marked by -1."""
    return ids_record([[token for turn in context for token in (*turn, -1)] for context in contexts])


def config_settings(config) -> dict:
    """A config's fields, name -> value; a nested config (a dialog model's `response_config`) as its own dict."""
    values = {name: getattr(config, name) for name in type(config).__annotations__}
    return {name: config_settings(value) if hasattr(value, "to_dict") else value for name, value in values.items()}


def run_settings(config, args, processes: int, train_ids, eval_ids, tokenizer, *, free=()) -> dict:
    """What the trajectory depends on: the model's settings, the training arguments but the `free` ones, the number
    of processes (the dropout streams), and the data with its tokenizer."""
    return {
        "model": config_settings(config),
        "training": {k: v for k, v in asdict(args).items() if k not in free},
        "processes": processes,
        "data": {"train": ids_record(train_ids), "validation": ids_record(eval_ids),
                 "tokenizer": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()},
    }


def setting_defaults(config_class, args_class) -> dict:
    """The defaults of the model's and the training's settings, shaped as `run_settings`: a setting that a newer
    version of the package added is absent from an older checkpoint, whose run had, in effect, its default."""
    def defaults(dataclass_type, names):
        return {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                for f in fields(dataclass_type) if f.name in names
                and (f.default is not MISSING or f.default_factory is not MISSING)}

    return {"model": defaults(config_class, config_class.__annotations__),
            "training": defaults(args_class, {f.name for f in fields(args_class)})}


def _flatten(settings: dict, prefix: str = ""):
    for key, value in settings.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def setting_differences(saved: dict, current: dict, *, defaults: dict | None = None) -> list[str]:
    """"name old -> new" for every setting that differs (model and training fields by their own names). A setting
    missing from `saved` counts as its value in `defaults` (see `setting_defaults`), if it has one there."""
    old, new = dict(_flatten(defaults or {})), dict(_flatten(current))
    old = {key: value for key, value in old.items() if key in new} | dict(_flatten(saved))
    shown = []
    for key in dict.fromkeys([*old, *new]):
        if old.get(key, "(none)") != new.get(key, "(none)"):
            name = key.split(".", 1)[1] if key.startswith(("model.", "training.")) else key
            values = [str(v)[:12] + "..." if key.endswith("sha256") else repr(v) for v in (old.get(key), new.get(key))]
            shown.append(f"{name} {values[0]} -> {values[1]}")
    return shown


@contextmanager
def ctrl_c_between_steps(request_stop):
    """Within, SIGINT only calls `request_stop()` (the loop stops after the step it is in); a second SIGINT has its
    usual effect at once. Off the main thread, where signals cannot be handled, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT) or signal.default_int_handler  # None: set outside Python

    def handler(signum, frame):
        request_stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class RunClock:
    """The seconds a resumable job has spent on the work it keeps, over all its starts: what its saved state says
    the earlier starts took, plus this start's time so far. A start's work after its last save is done again and
    not counted twice. `before=None` (state saved before jobs were timed) leaves the total unknown: None."""

    def __init__(self, before: float | None = 0.0):
        self.before, self.started = before, time.monotonic()

    def seconds(self) -> float | None:
        return None if self.before is None else self.before + time.monotonic() - self.started


__all__ = ["RunClock", "check_not_in_use", "check_output_dir", "contexts_record", "ctrl_c_between_steps", "ids_record",
           "output_lock", "run_settings", "setting_differences"]
