"""Files written whole: the text goes to a temporary file beside the target, which then replaces it in one rename, so
that a crash or a full disk leaves the old file or the new one, never half of one."""

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` (its folder made if need be) as a whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}-", suffix=".tmp", delete=False,
                                     encoding="utf-8", newline="") as handle:
        handle.write(text)
    try:
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


__all__ = ["write_text_atomically"]
