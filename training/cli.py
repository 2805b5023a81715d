"""The `demvae` command. Each subcommand lives in its own module with `add_arguments(parser)` and `run(args)`."""

import argparse
import difflib
import importlib
import os
import sys

# subcommand -> module of this package; each module's docstring's first line is its --help summary
COMMANDS = {
    "train": "train",
    "generate": "generate",
    "evaluate": "evaluate",
    "inspect": "inspect_model",
    "label-components": "label_components",
    "demo": "demo",
    "push": "push",
    "reproduce": "reproduce",
}


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as one line that says where to look, instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="demvae",
        description="Train, sample from, evaluate, inspect and share DEM-VAE text models.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".{module_name}", __package__)
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subcommands.add_parser(name, help=summary, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run, _parser=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; a user error prints one line saying what to fix (DEMVAE_DEBUG=1 shows the traceback), and
    Ctrl-C one line too (exit status 130), from the first moment: while the subcommands' modules load as well."""
    command = "demvae"
    try:
        args = parsed_arguments(argv)
        command = f"demvae {args.command}"
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, KeyError) as error:
        if os.environ.get("DEMVAE_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:  # Ctrl-C; `train` first finishes the step and writes a checkpoint
        if os.environ.get("DEMVAE_DEBUG"):
            raise
        print(f"{command}: {str(interruption) or 'interrupted'}", file=sys.stderr)
        return 130


def parsed_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, parsed; an unknown option is reported by its subcommand, with the closest option it has."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        close = difflib.get_close_matches(unknown[0].split("=")[0], list(args._parser._option_string_actions), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


if __name__ == "__main__":
    sys.exit(main())
