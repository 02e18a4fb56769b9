"""The ``mailstack`` command: reads the same stack files as the Pulumi program.

Each subcommand lives in its own module and registers itself here through a
``register(subparsers)`` function; this module only parses, dispatches and turns
mailstack errors into messages and exit codes (0 ok, 1 findings/drift, 2 usage or
configuration error). No traceback is shown for a configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mailstack.cli import adopt, check, diff, lab, plan, records, render
from mailstack.cli.codes import EXIT_OK, EXIT_USAGE
from mailstack.core.errors import ConfigErrors, MailstackError

#: The subcommands, in --help order.
COMMANDS = (records, render, plan, check, diff, adopt, lab)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailstack",
        description="Provision and verify the mail domain of an Odoo deployment.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
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
