"""The learning curve: validation terms and I(x; c) per group, one JSON line per point in the run's folder,
appended as training logs them and trimmed to the step a resumed run starts from, so that it is never doubled."""

import json
import os
from pathlib import Path

from .files import write_text_atomically
from .model_folder import LEARNING_CURVE


def curve_point(step: int, metrics: dict[str, float], component_probs=None) -> dict:
    """One point: the step, the validation terms and, given the validation q(c|x) (a tensor), I(x; c) per group."""
    from modeling_demvae.metrics.collapse import mutual_information  # here: `demvae reproduce` reads this module

    point = {"step": step, **metrics}
    if component_probs is not None:
        point["mutual_information"] = mutual_information(component_probs).tolist()
    return point


def append_point(folder: Path, point: dict) -> None:
    """Append a point to the folder's curve, flushed to disk: a crash after it cannot lose it."""
    with (Path(folder) / LEARNING_CURVE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(point) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _line_step(line: str) -> float:
    """The step of a line; infinite for a line cut short by a crash, so that it is dropped."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


def trim_curve(folder: Path, step: int) -> None:
    """Keep the points up to `step`, atomically: those after it (logged after the last checkpoint of an interrupted
    run, or by an earlier run in this folder) will be logged again."""
    path = Path(folder) / LEARNING_CURVE
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _line_step(line) <= step]
    write_text_atomically(path, "".join(line + "\n" for line in kept))


def read_curve(folder: Path) -> list[dict]:
    """The folder's points, in order."""
    return [json.loads(line) for line in (Path(folder) / LEARNING_CURVE).read_text(encoding="utf-8").splitlines()]


__all__ = ["LEARNING_CURVE", "append_point", "curve_point", "read_curve", "trim_curve"]
