"""Run records as `demvae reproduce` writes them, and its subcommands run in the test's own process."""

import os
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

from demvae import budgets
from demvae.cli import main


def record(preset: str, seed: int, table: str | None = None, **evaluation) -> dict:
    """A run record as `train_and_evaluate` writes it, with the given evaluation numbers."""
    table = table or budgets.table_of(preset)
    name = budgets.Run(table, preset, seed).name
    return {"run": name, "table": table, "preset": preset, "seed": seed, "budget": "cpu",
            "training": {"best_step": 100, "validation": {}, "minutes": 3.0}, "evaluation": evaluation,
            "evaluation_minutes": 1.0, "machine": "test CPU", "settings": {}}


def recording_in_process(commands: list, environments: list):
    """A stand-in for `reproduction_run.run_command` that runs the subcommand in this process, its output in the log,
    and records its name and environment."""
    def in_process(arguments, log, env):
        environments.append(env)
        commands.append(arguments[0])
        with log.open("a") as handle, mock.patch.dict(os.environ, env), redirect_stdout(handle), \
                redirect_stderr(handle):
            code = main(arguments)
        assert code == 0, log.read_text()[-3000:]

    return in_process
