"""How many CPU threads a command's process uses: `--num-threads`, else $OMP_NUM_THREADS, else the cores divided
among the local processes. torch's own default, every core in every process, oversubscribes a shared machine: two
two-thread jobs on two cores ran about 8x slower."""

import os
from contextlib import contextmanager


def default_threads(num_threads: int | None = None) -> int:
    """The threads of this process: `num_threads` if given, else $OMP_NUM_THREADS, else the cores / local processes."""
    return num_threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or max(
        1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


@contextmanager
def cpu_threads(num_threads: int | None = None):
    """Within, torch uses `default_threads(num_threads)` CPU threads; after, what it used before, so that callers
    that run several commands in one process (tests, notebooks) keep their setting. On a GPU, nothing changes."""
    import torch  # here, not at the top: the command line reads this module before it loads torch

    before = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(default_threads(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["cpu_threads", "default_threads"]
