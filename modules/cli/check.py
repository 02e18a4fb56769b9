"""``mailstack check``: verify a live mail domain against its declaration (or, with
``--domain``, against the RFCs and Odoo's documented setup).

Exit codes: 0 nothing failed; 1 a check failed or could not be decided (``error``), or
warned under ``--strict``; 2 usage or configuration error (raised as MailstackError,
turned into 2 by ``mailstack.cli.main``). The run itself is ``mailstack.checks.run``.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from mailstack.checks import run as check_run
from mailstack.checks.engine import runner
from mailstack.checks.engine.context import HttpsOptions, SmtpOptions
from mailstack.checks.engine.finding import exit_code
from mailstack.checks.run import FORMATS
from mailstack.cli import options

HELP = """\
Check a live mail domain: SPF, DKIM, DMARC, MX, MTA-STS/TLS-RPT, SMTP on each MX, and
(with a declaration) that every planned record is published as planned.

--stack/--stack-file take the expectations from the declaration; --domain checks any
domain generically, with Odoo-aware hints. --nameserver sends every DNS query to the
given servers (e.g. the zone's authoritative servers right after a change).
Exit 0: nothing failed; 1: a check failed or could not be decided; 2: usage error.
Warnings fail only with --strict. Stack files may disable checks by id:
  mailstack:checks: {disable: [spf.size]}"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "check", help="verify the live mail domain", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = options.add_stack_arguments(parser)
    target.add_argument("--domain", metavar="DOMAIN", help="check an undeclared domain (generic checks, Odoo hints)")
    options.add_dns_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    parser.add_argument("--output", metavar="FILE", type=Path, help="write the report to FILE instead of stdout")
    parser.add_argument("--only", metavar="GROUP", action="append", default=[], help="run only this check group (repeatable)")
    parser.add_argument("--disable", metavar="ID", action="append", default=[], help="skip this check id (repeatable)")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.add_argument("--deadline", type=float, default=runner.DEFAULT_DEADLINE, help="seconds for the whole run (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=runner.DEFAULT_WORKERS, help="checks run at once (default: %(default)s)")
    parser.add_argument("--dkim-public-key", metavar="PEM", type=Path, help="the gateway's DKIM public key: compare its record by content")
    parser.add_argument("--dkim-private-key", metavar="PEM", type=Path, help="the gateway's DKIM private key: sign a probe and verify it against DNS")
    parser.add_argument("--smtp-port", type=int, default=25, help="port of the MX hosts (default: 25)")
    parser.add_argument("--smtp-timeout", type=float, default=10.0, help="seconds per SMTP session step (default: %(default)s)")
    parser.add_argument("--ca-file", metavar="PEM", help="CA certificates for the MTA-STS policy host (default: the system's)")
    parser.add_argument("--mta-sts-port", type=int, default=443, help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--smtp-helo", metavar="NAME", default=None, help="EHLO name (default: this host's FQDN)")
    parser.add_argument("--verbose", action="store_true", help="text: show details of passing checks too")
    parser.set_defaults(handler=run)


def run_options(args: argparse.Namespace) -> check_run.Options:
    """The run's options from the command line."""
    return check_run.Options(
        nameservers=tuple(args.nameserver),
        timeout=args.timeout,
        smtp=SmtpOptions(port=args.smtp_port, timeout=args.smtp_timeout, helo=args.smtp_helo or socket.getfqdn()),
        https=HttpsOptions(port=args.mta_sts_port, cafile=args.ca_file),
        only=tuple(args.only),
        disable=tuple(args.disable),
        workers=args.workers,
        deadline=args.deadline,
        wait=args.wait,
        interval=args.interval,
    )


def run(args: argparse.Namespace) -> int:
    settings = run_options(args)
    if args.domain:
        target = check_run.for_domain(args.domain, settings)
    else:
        target = check_run.for_stack(
            options.stack_file_of(args),
            settings,
            gateway_public_key=options.gateway_public_key(args.dkim_public_key),
            gateway_private_key=options.read_text(args.dkim_private_key, "--dkim-private-key"),
        )
    findings = check_run.execute(target, settings)
    check_run.write_report(target, findings, args.format, args.output, verbose=args.verbose)
    return exit_code(findings, strict=args.strict)
