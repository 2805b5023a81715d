"""Crash-safe checkpoints that never run code: every folder under `checkpoints/` named `step-N` is complete, whatever
killed the run, and reading one only ever parses data.

A checkpoint holds the weights (model.safetensors), the optimizer state (optimizer.pt: tensors in plain containers,
read with `torch.load(weights_only=True)`), each process's random states (random_states_I.safetensors) and
trainer_state.json: where the run is, the settings its trajectory depends on, and the size and SHA-256 of every
other file. It is written into a hidden temporary folder, flushed to disk, then renamed into place (one atomic
`os.replace`); old ones are renamed away before being deleted. The exported model is written the same way, file
by file. A checkpoint whose files differ from what trainer_state.json records, or do not load as plain data, is
reported and skipped for the newest intact one.
"""

import hashlib
import json
import os
import pickle
import random
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_file, save_model

from .model_folder import CHECKPOINT_PATTERN, TEMPORARY_PREFIX, TRASH_PREFIX, one_line

STATE_FILE, MODEL_FILE, OPTIMIZER_FILE = "trainer_state.json", "model.safetensors", "optimizer.pt"
FORMAT = 2  # of trainer_state.json: 2 carries RECORD_HASH; 1, of older versions, has none and still resumes
RECORD_HASH = "record_sha256"  # the SHA-256 of trainer_state.json's other entries: an edit to the record shows
# what the loaders raise on a file that is damaged or not plain data (weights_only refuses with UnpicklingError)
READ_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError,
               SafetensorError)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with one line saying why."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def random_states_name(process_index: int) -> str:
    return f"random_states_{process_index}.safetensors"


def list_checkpoints(folder) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(folder) -> Path | None:
    checkpoints = list_checkpoints(folder)
    return checkpoints[-1] if checkpoints else None


# ----- random states: plain tensors and numbers -----


def random_states() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's Python, NumPy, torch and CUDA random states as tensors and a JSON string of numbers."""
    version, python_keys, gauss_next = random.getstate()
    _, numpy_keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    tensors = {"python": torch.tensor(python_keys, dtype=torch.int64),
               "numpy": torch.from_numpy(numpy_keys.astype(np.int64)), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda_{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    numbers = {"python_version": version, "python_gauss_next": gauss_next, "numpy_position": position,
               "numpy_has_gauss": has_gauss, "numpy_cached_gaussian": cached_gaussian}
    return tensors, {"numbers": json.dumps(numbers)}


def _python_and_numpy_states(tensors: dict, metadata: dict) -> tuple[tuple, tuple]:
    numbers = json.loads(metadata["numbers"])
    python = (numbers["python_version"], tuple(tensors["python"].tolist()), numbers["python_gauss_next"])
    numpy = ("MT19937", tensors["numpy"].numpy().astype(np.uint32), numbers["numpy_position"],
             numbers["numpy_has_gauss"], numbers["numpy_cached_gaussian"])
    return python, numpy


def _check_random_states(tensors: dict, metadata: dict) -> None:
    """Load the states into fresh generators: raises if any could not be restored."""
    python, numpy = _python_and_numpy_states(tensors, metadata)
    random.Random().setstate(python)
    np.random.RandomState().set_state(numpy)
    torch.Generator().set_state(tensors["torch"])


def restore_random_states(tensors: dict, metadata: dict) -> str | None:
    """Set this process's global random states; a note when the CUDA ones cannot be (another number of GPUs)."""
    python, numpy = _python_and_numpy_states(tensors, metadata)
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda_{i}"] for i in range(sum(name.startswith("cuda_") for name in tensors))]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda and len(cuda) == gpus:
        torch.cuda.set_rng_state_all(cuda)
    elif cuda or gpus:
        return (f"the CUDA random states were not restored: the checkpoint has {len(cuda)}, this machine "
                f"{gpus} GPU(s); GPU random draws will differ from the interrupted run's")
    return None


# ----- writing -----


def _fsync_tree(folder: Path) -> None:
    """Flush every file and the folder itself, so a renamed checkpoint survives a power loss too."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _file_record(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def remove_leftovers(folder) -> None:
    """Delete temporary and half-deleted folders that an interrupted run left behind."""
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith((TEMPORARY_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)


def remove_atomically(path: Path) -> None:
    """Rename away first, so the folder vanishes from view at once even if deleting it is interrupted."""
    trash = path.with_name(TRASH_PREFIX + path.name)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(accelerator, folder, step: int, *, model, optimizer, trainer_state: dict, keep: int = 2) -> Path:
    """Write `folder/step-N` atomically (weights, optimizer, every process's random states and `trainer_state`),
    keeping only the `keep` newest checkpoints.

    Every process must call this (each saves its own random states); only the main process writes the rest,
    renames and prunes.
    """
    folder = Path(folder)
    final = folder / checkpoint_name(step)
    temporary = folder / (TEMPORARY_PREFIX + final.name)
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
    accelerator.wait_for_everyone()
    tensors, metadata = random_states()
    save_file(tensors, temporary / random_states_name(accelerator.process_index), metadata=metadata)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), str(temporary / MODEL_FILE))  # the tied lm_head stored once
        torch.save(optimizer.state_dict(), temporary / OPTIMIZER_FILE)
        files = {path.name: _file_record(path) for path in sorted(temporary.iterdir())}
        record = {"format": FORMAT, **trainer_state, "files": files}
        record[RECORD_HASH] = record_hash(record)
        (temporary / STATE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(temporary)
        if final.exists():  # the same step saved again (e.g. the end of a run that already checkpointed it)
            remove_atomically(final)
        os.replace(temporary, final)
        for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
            remove_atomically(old)
    accelerator.wait_for_everyone()
    return final


def export_atomically(save, folder) -> None:
    """Run `save(temporary_folder)` then move each written file into `folder` with one `os.replace` per file."""
    folder = Path(folder)
    temporary = folder / (TEMPORARY_PREFIX + "export")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    save(temporary)
    _fsync_tree(temporary)
    for path in sorted(temporary.iterdir()):
        os.replace(path, folder / path.name)
    temporary.rmdir()


# ----- reading -----


@dataclass
class Checkpoint:
    """A checkpoint read and checked, not yet applied: its trainer state, optimizer state and random states."""

    path: Path
    state: dict
    optimizer: dict
    random_tensors: dict
    random_metadata: dict

    def load_weights(self, model) -> None:
        try:
            load_model(model, str(self.path / MODEL_FILE), strict=True)
        except READ_ERRORS as error:
            raise CheckpointError(f"{self.path}: the weights do not fit this model ({one_line(error)}).") from None


def load_exported_weights(model, folder) -> None:
    """Load the model exported into `folder` (`save_pretrained`'s model.safetensors) into `model`, in place: a
    dialog run's best stage-1 weights at the switch to stage 2. Only tied copies may be absent from the file."""
    path = Path(folder) / MODEL_FILE
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except READ_ERRORS as error:
        raise CheckpointError(f"{path}: the exported model does not load into this run's model "
                              f"({one_line(error)}).") from None
    weights = model.state_dict(keep_vars=True)
    names_per_weight = Counter(id(weight) for weight in weights.values())
    tied = {name for name, weight in weights.items() if names_per_weight[id(weight)] > 1}
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"{path} is not this run's model: missing {sorted(set(missing) - tied)}, unexpected "
                              f"{sorted(unexpected)}.")


def record_hash(record: dict) -> str:
    """The SHA-256 of a checkpoint record's entries but its own hash, in a canonical JSON form."""
    entries = {key: value for key, value in record.items() if key != RECORD_HASH}
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _read_state(path: Path) -> dict:
    if not (path / STATE_FILE).is_file():
        old = "; it was written by an older demvae as pickle files, which resuming no longer loads (they can run " \
              "code)" if any(path.glob("*.pkl")) else ""
        raise CheckpointError(f"no {STATE_FILE}{old}")
    try:
        state = json.loads((path / STATE_FILE).read_bytes())
    except ValueError as error:
        raise CheckpointError(f"{STATE_FILE} is not valid JSON ({error})") from None
    if not (isinstance(state, dict) and state.get("format") in (1, FORMAT) and isinstance(state.get("files"), dict)):
        raise CheckpointError(f"{STATE_FILE} is not a format-{FORMAT} checkpoint record")
    if state["format"] == FORMAT and state.get(RECORD_HASH) != record_hash(state):
        raise CheckpointError(f"{STATE_FILE} was changed after the run wrote it (its entries do not match its "
                              f"{RECORD_HASH})")
    return state


def _checked_file(path: Path, name: str, record) -> Path:
    file = path / name
    if not file.is_file():
        raise CheckpointError(f"{name} is missing")
    if not isinstance(record, dict) or _file_record(file) != record:
        size, expected = file.stat().st_size, record.get("bytes") if isinstance(record, dict) else None
        detail = f"truncated: {size} of {expected} bytes" if size != expected else "its contents changed"
        raise CheckpointError(f"{name} does not match {STATE_FILE} ({detail})")
    return file


def read_checkpoint(path, process_index: int = 0) -> Checkpoint:
    """Check a checkpoint's files against its record and load the optimizer and this process's random states as
    plain data; CheckpointError naming the file and the problem otherwise. The weights are only checked here."""
    path = Path(path)
    state = _read_state(path)
    files = state["files"]
    for name in (MODEL_FILE, OPTIMIZER_FILE, random_states_name(process_index)):
        if name not in files:
            raise CheckpointError(f"{STATE_FILE} lists no {name} (saved by another number of processes?)")
    checked = {name: _checked_file(path, name, record) for name, record in files.items()}
    name = MODEL_FILE
    try:
        with safe_open(checked[name], "pt") as weights:
            weights.keys()
        name = OPTIMIZER_FILE
        with warnings.catch_warnings():  # about the pickle protocol of a file that is refused anyway
            warnings.simplefilter("ignore")
            optimizer = torch.load(checked[name], map_location="cpu", weights_only=True)
        name = random_states_name(process_index)
        with safe_open(checked[name], "pt") as handle:
            random_tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            random_metadata = handle.metadata() or {}
        _check_random_states(random_tensors, random_metadata)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{name} is refused: it holds objects that loading would have to run code to build, "
                              "not plain tensors") from None
    except READ_ERRORS as error:
        raise CheckpointError(f"{name} does not load ({one_line(error)})") from None
    if not isinstance(optimizer, dict):
        raise CheckpointError(f"{OPTIMIZER_FILE} holds a {type(optimizer).__name__}, not an optimizer state")
    return Checkpoint(path, state, optimizer, random_tensors, random_metadata)


def newest_usable_checkpoint(folder, process_index: int = 0) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint in `folder` that reads intact, and a line for each newer one skipped and why."""
    skipped = []
    for path in reversed(list_checkpoints(folder)):
        try:
            return read_checkpoint(path, process_index), skipped
        except CheckpointError as error:
            skipped.append(f"{path.name}: {error}")
    return None, skipped


__all__ = ["RECORD_HASH", "Checkpoint", "CheckpointError", "export_atomically", "latest_checkpoint", "list_checkpoints",
           "load_exported_weights", "newest_usable_checkpoint", "read_checkpoint", "record_hash", "remove_leftovers",
           "restore_random_states", "save_checkpoint"]
