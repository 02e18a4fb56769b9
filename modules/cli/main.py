"""The ``mailstack`` command: reads the same stack files as the Pulumi program.

Each subcommand lives in its own module and registers its parser through a
``register(subparsers)`` function; this module only parses, dispatches and turns
mailstack errors into messages and exit codes (0 ok, 1 findings/drift, 2 usage or
configuration error). No traceback is shown for a configuration error.

Start-up is part of the interface (a CI step or a loop over customer domains pays it
on every call): only the subcommand being run is imported, so ``mailstack --help``
imports no subcommand at all and ``mailstack records`` never loads the lab, the check
suite or dnspython's resolver — and no command but the Pulumi program loads Pulumi.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mailstack.cli.codes import EXIT_OK, EXIT_USAGE
from mailstack.core.errors import ConfigErrors, MailstackError

#: The subcommands, in --help order: the module that registers each, and its summary.
COMMANDS: dict[str, tuple[str, str]] = {
    "records": ("mailstack.cli.records", "print the planned DNS records"),
    "render": ("mailstack.cli.render", "render the gateway servers' configuration"),
    "plan": ("mailstack.cli.plan", "decide the change against live DNS: create/update/delete/conflict (nothing written)"),
    "check": ("mailstack.cli.check", "verify the live mail domains"),
    "diff": ("mailstack.cli.diff", "compare the planned records with live DNS (drift detection)"),
    "adopt": ("mailstack.cli.adopt", "print the mailstack:dns.adopt import ids for records already in a Cloudflare zone"),
    "lab": ("mailstack.cli.lab", "run the whole mail path locally and check it"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that subcommand's module is imported and the
    others are listed by name and summary (``--help``), else every one is complete."""
    parser = argparse.ArgumentParser(
        prog="mailstack",
        description="Provision and verify the mail domain of an Odoo deployment.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def _command(argv: Sequence[str]) -> str:
    """The subcommand named on the command line ("" when none: usage or --help)."""
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in COMMANDS else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except ConfigErrors as err:
        for error in err.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MailstackError as err:
        for line in str(err).splitlines() or [""]:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
