"""What a command says about itself while it works: status lines on stderr, so that stdout carries only what the
command makes (sentences, a table), and the time-stamped lines of a long run's log."""

import sys
import time


def status(message: str) -> None:
    """One line saying what the command is doing, at once: the first thing a user sees, before libraries load. It
    ends with "...", as the work it announces has begun; an error's line starts "demvae COMMAND: error:"."""
    print(f"{message} ...", file=sys.stderr, flush=True)


def plural(count: int, noun: str) -> str:
    """"1 sentence", "5 sentences": a count with its noun, in the right number."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def log_line(message: str) -> None:
    """One line of a long run's log, stamped with the wall-clock time so a reader sees when it happened."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


__all__ = ["log_line", "plural", "status"]
