"""``mailstack check``: verify live mail domains against their declarations (or, with
``--domain``, against the RFCs and Odoo's documented setup) — one target, or a fleet.

Targets: ``--stack``, ``--stack-file`` and ``--domain`` (each repeatable, kept in the
order given), ``--all-stacks`` (every stack of the project) and ``--domains-file``.
One target reports as it always did; several (or ``--all-stacks``/``--domains-file``,
whatever they hold) make a fleet report: every target's findings and one summary line
per target, in every format. All targets run in one engine run: one resolver, one
cache, one set of per-server limits.

Exit codes: 0 nothing failed; 1 a check of any target failed or could not be decided
(``error``), or warned under ``--strict``; 2 usage or configuration error (raised as
MailstackError, turned into 2 by ``mailstack.cli.main``) — every target is read and
validated before the first query. The run itself is ``mailstack.checks.run``, imported
when the command runs, not when ``--help`` is built.
"""

from __future__ import annotations

import argparse
import gc
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailstack.checks.defaults import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEADLINE,
    DEFAULT_DEADLINE_PER_DOMAIN,
    DEFAULT_WORKERS,
    FORMATS,
)
from mailstack.cli import options
from mailstack.core import names
from mailstack.core.errors import ConfigErrors, MailstackError

if TYPE_CHECKING:
    from mailstack.checks import run as check_run
    from mailstack.checks.engine.finding import Finding
    from mailstack.rules.dkim_rotation import RotationState

HELP = """\
Check live mail domains: SPF, DKIM, DMARC, MX, MTA-STS/TLS-RPT, SMTP on each MX, and
(with a declaration) that every planned record is published as planned.

--stack/--stack-file take the expectations from the declaration; --domain checks any
domain generically, with Odoo-aware hints. Each is repeatable, and --all-stacks and
--domains-file add many targets at once: a fleet run checks them all in one process
and reports each (one summary line per target). --nameserver sends every DNS query to
the given servers (e.g. the zone's authoritative servers right after a change).
Exit 0: nothing failed; 1: a check failed or could not be decided; 2: usage error.
Warnings fail only with --strict. Stack files may disable checks by id:
  mailstack:checks: {disable: [spf.size]}"""


class _Target(argparse.Action):
    """Collects ``--stack``/``--stack-file``/``--domain`` into one list, in order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        targets = list(getattr(namespace, "targets", None) or [])
        targets.append((self.dest, values))
        namespace.targets = targets


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "check", help="verify the live mail domains", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(targets=[])
    target = parser.add_argument_group("targets (at least one; each option repeatable)")
    target.add_argument("--stack", metavar="NAME", action=_Target, help="read Pulumi.NAME.yaml of the project's stack directory")
    target.add_argument("--stack-file", metavar="PATH", action=_Target, help="read any Pulumi stack file")
    target.add_argument("--domain", metavar="DOMAIN", action=_Target, help="check an undeclared domain (generic checks, Odoo hints)")
    target.add_argument("--all-stacks", action="store_true", help="every stack in the project's stack directory")
    target.add_argument("--domains-file", metavar="FILE", action="append", default=[],
                        help="undeclared domains, one per line (# comments, blank lines ignored; - reads stdin)")
    options.add_project_argument(parser)
    options.add_dns_arguments(parser)
    parser.add_argument("--dns-concurrency", metavar="N", type=int, default=DEFAULT_CONCURRENCY,
                        help="DNS queries in flight per name server (default: %(default)s)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    parser.add_argument("--output", metavar="FILE", type=Path, help="write the report to FILE instead of stdout")
    parser.add_argument("--only", metavar="GROUP", action="append", default=[], help="run only this check group (repeatable)")
    parser.add_argument("--disable", metavar="ID", action="append", default=[], help="skip this check id (repeatable)")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.add_argument("--deadline", metavar="SECONDS", type=float, default=DEFAULT_DEADLINE,
                        help="seconds for each target's checks, from its start (default: %(default)s)")
    parser.add_argument("--deadline-per-domain", metavar="SECONDS", type=float, default=DEFAULT_DEADLINE_PER_DOMAIN,
                        help="a target with many mail domains gets this per domain when that is more (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="threads for blocking checks and probes (SMTP, HTTPS, pyspf) (default: %(default)s)")
    parser.add_argument("--dkim-public-key", metavar="PEM", type=Path, help="the gateway's DKIM public key: compare its record by content (one stack)")
    parser.add_argument("--dkim-private-key", metavar="PEM", type=Path, help="the gateway's DKIM private key: sign a probe and verify it against DNS (one stack)")
    parser.add_argument("--dkim-rotation", metavar="FILE", type=Path,
                        help="a DKIM rotation's recorded state (JSON: `pulumi stack output dkimRotation --json`, or the lab's), for dkim.rotation")
    parser.add_argument("--smtp-port", type=int, default=25, help="port of the MX hosts (default: 25)")
    parser.add_argument("--smtp-timeout", type=float, default=10.0, help="seconds per SMTP session step (default: %(default)s)")
    parser.add_argument("--ca-file", metavar="PEM", help="CA certificates for the MTA-STS policy host and the MX certificates' chains (default: the system's)")
    parser.add_argument("--trust-anchor", metavar="FILE", type=Path,
                        help="DNSSEC trust anchors: DS or DNSKEY records in zone-file syntax, for any zone of the chain (default: the system's root anchor)")
    parser.add_argument("--mta-sts-port", type=int, default=443, help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--smtp-helo", metavar="NAME", default=None, help="EHLO name (default: this host's FQDN)")
    parser.add_argument("--verbose", action="store_true", help="text: show details of passing checks too")
    parser.add_argument("--blocklist", metavar="ZONE", action="append", default=None,
                        help="DNS blocklist reputation.dnsbl asks (repeatable; replaces checks.blocklists and the default zen.spamhaus.org, bl.spamcop.net)")
    parser.set_defaults(handler=run)


def run_options(args: argparse.Namespace) -> check_run.Options:
    """The run's options from the command line."""
    from mailstack.checks import run as check_run
    from mailstack.checks.dns.dnssec import load_anchors
    from mailstack.checks.engine.context import DnssecOptions, HttpsOptions, SmtpOptions, TlsOptions

    for option, value in (("--workers", args.workers), ("--dns-concurrency", args.dns_concurrency)):
        if value < 1:
            raise MailstackError(f"{option}: {value} is not a positive number")
    for option, seconds in (("--deadline", args.deadline), ("--deadline-per-domain", args.deadline_per_domain), ("--timeout", args.timeout)):
        if not seconds > 0:
            raise MailstackError(f"{option}: {seconds:g} is not a positive number of seconds")
    return check_run.Options(
        nameservers=tuple(args.nameserver),
        timeout=args.timeout,
        concurrency=args.dns_concurrency,
        smtp=SmtpOptions(port=args.smtp_port, timeout=args.smtp_timeout, helo=args.smtp_helo or socket.getfqdn()),
        https=HttpsOptions(port=args.mta_sts_port, cafile=args.ca_file),
        # read before any query: a bad anchor file is a usage error (exit 2)
        dnssec=DnssecOptions(load_anchors(args.trust_anchor) if args.trust_anchor else None),
        tls=TlsOptions(args.ca_file),
        only=tuple(args.only),
        disable=tuple(args.disable),
        workers=args.workers,
        deadline=args.deadline,
        deadline_per_domain=args.deadline_per_domain,
        wait=args.wait,
        interval=args.interval,
        blocklists=_blocklists(args.blocklist),
    )


def _blocklists(zones: list[str] | None) -> tuple[str, ...] | None:
    """``--blocklist`` zones, each a domain name (MailstackError naming the option)."""
    if zones is None:
        return None
    try:
        return tuple(dict.fromkeys(names.domain(zone) for zone in zones))
    except names.InvalidName as err:
        raise MailstackError(f"--blocklist: {err}") from None


def fleet_mode(args: argparse.Namespace) -> bool:
    """A fleet report unless exactly one --stack/--stack-file/--domain is given: decided
    by the command line, never by how many names a file holds."""
    return len(args.targets) != 1 or args.all_stacks or bool(args.domains_file)


def targets(args: argparse.Namespace, settings: check_run.Options) -> list[check_run.Target]:
    """Every target, read and validated (stack files planned, domains checked), each
    once, sharing one resolver; MailstackError before any query for a bad one."""
    from mailstack.checks import domains_file
    from mailstack.checks import run as check_run

    stack_files: list[Path] = []
    domains: list[str] = []
    for kind, value in args.targets:
        if kind == "stack":
            stack_files.append(options.stack_path(args, value))
        elif kind == "stack_file":
            stack_files.append(Path(value))
        else:
            domains.append(value)
    if args.all_stacks:
        stack_files += options.project_of(args).stacks()
    for path in args.domains_file:
        domains += domains_file.read(path)
    if not stack_files and not domains:
        raise MailstackError("no target: give --stack, --stack-file, --domain, --all-stacks or --domains-file")
    stack_files = _once(stack_files)
    if (args.dkim_public_key or args.dkim_private_key) and len(stack_files) != 1:
        raise MailstackError("--dkim-public-key/--dkim-private-key: the gateway's key belongs to one stack; give exactly one")
    resolver = check_run.resolver_for(settings)
    fleet = fleet_mode(args)
    found: list[check_run.Target] = []
    for path in stack_files:
        try:
            found.append(check_run.for_stack(
                path, settings, resolver=resolver,
                gateway_public_key=options.gateway_public_key(args.dkim_public_key),
                gateway_private_key=options.read_text(args.dkim_private_key, "--dkim-private-key"),
                rotation_state=read_rotation_state(args.dkim_rotation),
            ))
        except ConfigErrors as err:
            if not fleet:
                raise
            raise MailstackError("\n".join(f"{path}: {error}" for error in err.errors)) from err
        except MailstackError as err:
            if not fleet:
                raise
            raise MailstackError(f"{path}: {err}") from err
    seen: set[str] = set()
    for domain in domains:
        target = check_run.for_domain(domain, settings, resolver=resolver)
        if target.ctx.domain not in seen:
            seen.add(target.ctx.domain)
            found.append(target)
    return found


def _once(paths: Sequence[Path]) -> list[Path]:
    """Each stack file once (by its resolved path), first mention first."""
    seen: set[Path] = set()
    kept: list[Path] = []
    for path in paths:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            kept.append(path)
    return kept


def _batch_gc() -> None:
    """Tune the garbage collector for one batch run. A fleet run allocates hundreds of
    thousands of short-lived objects (answers, tasks, findings) and keeps the plans:
    with the default thresholds the collector rescans them so often that it costs a
    third of the run's CPU. The objects made so far (config, plans, modules) are moved
    out of its sight (``gc.freeze``) and it runs less often; cycles are still freed."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _check_output(output: Path | None) -> None:
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        raise MailstackError(f"--output {output}: not a file in an existing directory")


def run(args: argparse.Namespace) -> int:
    from mailstack.checks import run as check_run
    from mailstack.checks.engine.finding import exit_code

    settings = run_options(args)
    _check_output(args.output)
    found = targets(args, settings)
    _batch_gc()
    if not fleet_mode(args):
        findings = check_run.execute(found[0], settings)
        check_run.write_report(found[0], findings, args.format, args.output, verbose=args.verbose)
        return exit_code(findings, strict=args.strict)
    results = _execute(found, settings, progress=args.format != "json" and sys.stderr.isatty(), strict=args.strict)
    outcomes = check_run.outcomes(found, results)
    check_run.write_fleet_report(outcomes, args.format, args.output, verbose=args.verbose, strict=args.strict)
    return max((exit_code(findings, strict=args.strict) for findings in results), default=0)


def _execute(found: Sequence[check_run.Target], settings: check_run.Options, *, progress: bool, strict: bool) -> list[list[Finding]]:
    from mailstack.checks import run as check_run

    if not progress:
        return check_run.execute_all(found, settings)
    from mailstack.checks.report.progress import Progress

    with Progress(len(found), sys.stderr, strict=strict) as shown:
        return check_run.execute_all(found, settings, on_done=shown.done)


def read_rotation_state(path: Path | None) -> RotationState | None:
    """``--dkim-rotation FILE`` (``cli.rotation.read_state``), imported only when a run
    reads it: the rotation's module loads the planner, which ``check --help`` must not."""
    from mailstack.cli import rotation

    return rotation.read_state(path)
