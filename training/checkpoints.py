"""Crash-safe checkpoints: every folder under `checkpoints/` named `step-N` is complete, whatever killed the run.

A checkpoint is written by `Accelerator.save_state` into a hidden temporary folder, flushed to disk, then renamed
into place (one atomic `os.replace`); old ones are renamed away before being deleted. The exported model is
written the same way, file by file.
"""

import logging
import os
import re
import shutil
from pathlib import Path

# save_state drops the tied lm_head copy from the safetensors file and says so at every save; loading re-ties it
logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
TEMPORARY_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


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


def save_checkpoint(accelerator, folder, step: int, *, keep: int = 2) -> Path:
    """`accelerator.save_state` into `folder/step-N` atomically, keeping only the `keep` newest checkpoints.

    Every process must call this (each saves its own random state); only the main process renames and prunes.
    """
    folder = Path(folder)
    final = folder / checkpoint_name(step)
    temporary = folder / (TEMPORARY_PREFIX + final.name)
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
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


__all__ = ["export_atomically", "latest_checkpoint", "list_checkpoints", "remove_leftovers", "save_checkpoint"]
