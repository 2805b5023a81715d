"""`demvae` subcommands in their own processes, as `demvae reproduce` runs them, and stopped together on a signal:
each gets one Ctrl-C to save where it is (a training its checkpoint, an evaluation its finished parts), and no next
one starts."""

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .console import log_line

RUNNING: set[subprocess.Popen] = set()  # the subcommands running now, stopped with the command
RUNNING_LOCK = threading.Lock()  # a subcommand starts, or a stop begins: never both at once
STOPPING = False  # a first signal has come: the subcommands are saving where they are, and no new one starts
STOP_GRACE_SECONDS = 300  # for a training step, a validation and a checkpoint at the reference size, with room


def run_command(arguments: list[str], log: Path, env: dict) -> None:
    """`demvae ARGUMENTS` in a fresh process, its output appended to `log`; a failure raises with the log's end."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ demvae {' '.join(arguments)}\n")
        handle.flush()
        with RUNNING_LOCK:  # the worker whose subcommand a signal ended must not start the next run's
            if STOPPING:
                raise RuntimeError(f"`demvae {arguments[0]}` not started: the command is stopping.")
            child = subprocess.Popen([sys.executable, "-m", "demvae", *arguments], stdout=handle,
                                     stderr=subprocess.STDOUT, env=env)
            RUNNING.add(child)
        try:
            code = child.wait()
        finally:
            RUNNING.discard(child)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"`demvae {arguments[0]}` failed (exit {code}); the end of {log}:\n" + "\n".join(tail))


def options(settings: dict) -> list[str]:
    """--key value pairs for a subcommand."""
    return [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def command_environment(threads: int, data_dir: str | None) -> dict:
    """The subcommands' environment: `threads` CPU threads, no progress bars, no network, the corpora's folder."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    if data_dir:
        env["DEMVAE_DATA_DIR"] = str(Path(data_dir).resolve())
    return env


def stop(signum, frame) -> None:
    """SIGTERM or SIGINT (Ctrl-C): stop the subcommands running now and the command, instead of going on with the
    next run. After SIGTERM each subcommand gets one SIGINT (a Ctrl-C in a terminal has reached them already):
    training stops after the step it is in and saves a checkpoint, so nothing is lost, and an evaluation keeps its
    finished parts. Those still running after STOP_GRACE_SECONDS, or at a second signal, are terminated; every file
    is written atomically, so the next start resumes from the last checkpoint or finished part either way."""
    global STOPPING
    with RUNNING_LOCK:
        children, stopping = list(RUNNING), STOPPING
        STOPPING = True
    if stopping:
        for child in children:
            child.terminate()
    else:
        if signum != signal.SIGINT:
            for child in children:
                child.send_signal(signal.SIGINT)
        if children:
            log_line(f"stopping: the running subcommands save where they are (up to {STOP_GRACE_SECONDS} s; a second "
                     "signal stops them at once).")
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.terminate()
    for child in children:
        child.wait()
    log_line(f"stopped by signal {signum}; the same command resumes.")
    os._exit(128 + signum)


@contextmanager
def stopping_on_signals():
    """`stop` handles SIGTERM and SIGINT while the runs go on (the main thread only: elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


__all__ = ["command_environment", "options", "run_command", "stop", "stopping_on_signals"]
