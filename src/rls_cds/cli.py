"""`rls-cds` command line: each sub-command lives in its own module under rls_cds.commands.

A command module exposes ``register(subparsers)`` which adds its parser and sets ``func``;
``func(args) -> int`` is the exit code. Modules keep heavy imports inside their functions so
``rls-cds --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = [
    "evaluate",
    "terminology",
    "serve",
    "worker",
    "beat",
    "reevaluate",
    "panel",
    "config",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rls-cds", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"rls_cds.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from rls_cds.settings import get_settings

        get_settings()  # invalid configuration stops every command here, naming the variable
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return code
    except BrokenPipeError:
        # The reader went away (`rls-cds panel report RUN | head`): stop quietly, as Unix tools do;
        # stdout goes to /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except Exception as exc:
        from rls_cds.commands.config import configuration_error

        message = configuration_error(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
