"""The ``mailstack`` command: reads the same stack files as the Pulumi program.

Each subcommand lives in its own module and registers itself here through a
``register(subparsers)`` function; this module only parses, dispatches and turns
mailstack errors into messages and exit codes (0 ok, 1 findings/drift, 2 usage or
configuration error). No traceback is shown for a configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from modules import stackfile
from modules.errors import ConfigErrors, MailstackError
from modules.model import MailDomain

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Modules that each define ``register(subparsers)``; their order is the --help order.
COMMAND_MODULES = (
    "modules.cli_records",
    "modules.cli_render",
    "modules.cli_diff",
    "checks.cli",
    "modules.cli_lab",
)


def add_stack_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> argparse._MutuallyExclusiveGroup:
    """``--stack NAME | --stack-file PATH``, shared by every command reading a stack."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--stack", metavar="NAME", help="read stacks/Pulumi.NAME.yaml of this project")
    group.add_argument("--stack-file", metavar="PATH", type=Path, help="read any Pulumi stack file")
    return group


def stack_file_of(args: argparse.Namespace) -> Path:
    """The stack file named by --stack or --stack-file."""
    if getattr(args, "stack_file", None):
        return Path(args.stack_file)
    return stackfile.stack_path(args.stack)


def load_stack(args: argparse.Namespace) -> MailDomain:
    """Read and validate the stack named on the command line."""
    return stackfile.load(stack_file_of(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailstack",
        description="Provision and verify the mail domain of an Odoo deployment.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except ConfigErrors as err:
        for error in err.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MailstackError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
