"""Freed memory handed back to the system. glibc keeps the blocks of freed tensors for reuse, and tensors whose
shapes keep changing (a validation pass over sentences of every length, 100 at a time) leave blocks that no later
tensor fits: the heap grows with the number of batches, by 300 MB over the 100 validation batches of a 10M-sentence
corpus. `malloc_trim` returns the free pages; elsewhere than glibc, nothing is done."""

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim(0)`)."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


__all__ = ["release_freed_memory"]
