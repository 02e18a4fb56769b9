"""``mailstack check``: verify a live mail domain against its declaration (or, with
``--domain``, against the RFCs and Odoo's documented setup).

Exit codes: 0 nothing failed; 1 a check failed or could not be decided (``error``), or
warned under ``--strict``; 2 usage or configuration error (raised as MailstackError,
turned into 2 by ``modules.cli``).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modules import cli, dkim, names, stackfile
from modules.config import from_config
from modules.errors import ConfigError, ConfigErrors, MailstackError
from modules.plan import plan

from checks import registry, report_json, report_junit, report_sarif, report_text, runner
from checks.context import CheckContext, HttpsOptions, SmtpOptions
from checks.diff import wait_for_stack
from checks.finding import Finding, exit_code
from checks.resolver import DEFAULT_TIMEOUT, Resolver

FORMATS = ("text", "json", "junit", "sarif")

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
    target = cli.add_stack_arguments(parser)
    target.add_argument("--domain", metavar="DOMAIN", help="check an undeclared domain (generic checks, Odoo hints)")
    parser.add_argument("--nameserver", metavar="ADDR[:PORT]", action="append", default=[], help="DNS server for every query (repeatable; default: system resolver)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    parser.add_argument("--output", metavar="FILE", type=Path, help="write the report to FILE instead of stdout")
    parser.add_argument("--only", metavar="GROUP", action="append", default=[], help="run only this check group (repeatable)")
    parser.add_argument("--disable", metavar="ID", action="append", default=[], help="skip this check id (repeatable)")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per DNS query (default: %(default)s)")
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
    parser.add_argument("--wait", metavar="SECONDS", type=float, help="first poll the zones' authoritative servers (or --nameserver) until they serve the plan, at most this long (see mailstack diff)")
    parser.set_defaults(handler=run)


def _read(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise MailstackError(f"{what} {path}: {err.strerror}") from err


def build_context(args: argparse.Namespace) -> tuple[CheckContext, list[str]]:
    """The run's context and the check ids the stack file disables."""
    try:
        resolver = Resolver.from_strings(args.nameserver, timeout=args.timeout).cached()
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err
    smtp = SmtpOptions(port=args.smtp_port, timeout=args.smtp_timeout, helo=args.smtp_helo or socket.getfqdn())
    https = HttpsOptions(port=args.mta_sts_port, cafile=args.ca_file)
    public_key = _read(args.dkim_public_key, "--dkim-public-key")
    private_key = _read(args.dkim_private_key, "--dkim-private-key")
    if public_key is not None:
        try:
            dkim.public_key_base64(public_key)
        except dkim.DkimKeyError as err:
            raise MailstackError(f"--dkim-public-key {args.dkim_public_key}: {err}") from err
    if args.domain:
        try:
            domain = names.domain(args.domain)
        except names.InvalidName as err:
            raise MailstackError(f"--domain: {err}") from err
        return CheckContext(domain, resolver, smtp=smtp, https=https), []
    raw = stackfile.read_namespace(cli.stack_file_of(args))
    disabled = _disabled(raw.get("checks"))
    stack = from_config(raw)
    ctx = CheckContext(
        stack.domain,
        resolver,
        stack=stack,
        planned=tuple(plan(stack, public_key)),
        gateway_key=public_key,
        dkim_private_key=private_key.encode() if private_key else None,
        smtp=smtp,
        https=https,
    )
    return ctx, disabled


def _disabled(section: Any) -> list[str]:
    section = section or {}
    value = section.get("disable", []) if isinstance(section, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigErrors([ConfigError(("checks", "disable"), "must be a list of check ids")])
    return value


def render(
    fmt: str, target: str, findings: Sequence[Finding], *, colour: bool = False, verbose: bool = False, artifact: str | None = None
) -> str:
    if fmt == "json":
        return report_json.render(target, findings)
    if fmt == "junit":
        return report_junit.render(target, findings)
    if fmt == "sarif":
        return report_sarif.render(target, findings, artifact)
    return report_text.render(target, findings, colour=colour, verbose=verbose)


def _relative(path: Path) -> str:
    """The stack file as a SARIF artifact URI: relative to the working directory if inside."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def run(args: argparse.Namespace) -> int:
    registry.load_builtin()
    ctx, disabled = build_context(args)
    try:
        selected = registry.select(args.only, [*disabled, *args.disable])
    except ValueError as err:
        raise MailstackError(str(err)) from err
    if args.wait is not None:
        if ctx.stack is None:
            raise MailstackError("--wait needs a declaration (--stack or --stack-file)")
        waited = wait_for_stack(ctx.stack, ctx.planned, args.nameserver, args.wait, timeout=args.timeout, gateway_key_known=ctx.gateway_key is not None)
        print(f"--wait: {'the servers serve the plan' if waited.agreed else 'servers still differ'} after {waited.polls} polls", file=sys.stderr)
    findings = runner.run(ctx, selected, workers=args.workers, deadline=args.deadline)
    target = ctx.domain
    artifact = None if args.domain else _relative(cli.stack_file_of(args))
    if args.output:
        args.output.write_text(render(args.format, target, findings, verbose=args.verbose, artifact=artifact), encoding="utf-8")
    else:
        colour = args.format == "text" and sys.stdout.isatty()
        sys.stdout.write(render(args.format, target, findings, colour=colour, verbose=args.verbose, artifact=artifact))
    return exit_code(findings, strict=args.strict)
