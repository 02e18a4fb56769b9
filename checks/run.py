"""A check run, as ``mailstack check`` and ``mailstack lab check`` start it: one target
or a fleet of them.

``Options`` holds everything a run needs besides the targets (servers, timeouts,
concurrency, SMTP and HTTPS settings, selection, deadlines); ``for_stack``/``for_domain``
build a target's context from a stack file or a bare domain — all targets of a run
share one resolver (``resolver_for``), so one cache and one set of per-server limits;
``execute`` runs one target, ``execute_all`` many on the shared engine (after
``--wait`` when asked); ``render``/``render_fleet`` format the findings. No argument
parsing here: the CLI and the lab each turn their own arguments into ``Options``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailstack import plan
from mailstack.checks.defaults import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEADLINE,
    DEFAULT_DEADLINE_PER_DOMAIN,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    FORMATS,
)
from mailstack.checks.dns import loop
from mailstack.checks.dns.diff import wait_for_stack
from mailstack.checks.dns.resolver import Resolver
from mailstack.checks.engine import registry, runner
from mailstack.checks.engine.context import CheckContext, DnssecOptions, HttpsOptions, SmtpOptions, TlsOptions
from mailstack.checks.engine.finding import Finding
from mailstack.checks.report import json as report_json
from mailstack.checks.report import junit as report_junit
from mailstack.checks.report import sarif as report_sarif
from mailstack.checks.report import text as report_text
from mailstack.checks.report.outcome import Outcome
from mailstack.config import stackfile
from mailstack.config.stack import from_config
from mailstack.core import names
from mailstack.core.errors import MailstackError
from mailstack.rules import dkim_rotation
from mailstack.rules.dkim_rotation import RotationState



@dataclass(frozen=True, slots=True)
class Options:
    """How a run asks and what it runs."""

    nameservers: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    #: DNS queries in flight per name server.
    concurrency: int = DEFAULT_CONCURRENCY
    smtp: SmtpOptions = field(default_factory=SmtpOptions)
    https: HttpsOptions = field(default_factory=HttpsOptions)
    dnssec: DnssecOptions = field(default_factory=DnssecOptions)
    tls: TlsOptions = field(default_factory=TlsOptions)
    only: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    workers: int = DEFAULT_WORKERS
    #: A target's deadline: ``deadline`` s, or ``deadline_per_domain`` s per mail domain
    #: when that is more, counted from the target's start.
    deadline: float = DEFAULT_DEADLINE
    deadline_per_domain: float = DEFAULT_DEADLINE_PER_DOMAIN
    #: Poll the authoritative servers until they serve the plan, at most this long.
    wait: float | None = None
    interval: float = 2.0
    #: ``--blocklist``: the DNS blocklists ``reputation.dnsbl`` asks (None: the stack's or the default).
    blocklists: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a run checks: its context and the check ids its stack file disables."""

    ctx: CheckContext
    disabled: tuple[str, ...] = ()
    #: The stack file, for reports that point at a file (SARIF).
    stack_file: Path | None = None


def resolver_for(options: Options) -> Resolver:
    """The run's resolver: its servers and limits, a cache for the whole run."""
    if options.concurrency < 1:
        raise MailstackError(f"--dns-concurrency: {options.concurrency} is not a positive number of queries")
    if not options.timeout > 0:
        raise MailstackError(f"--timeout: {options.timeout:g} is not a positive number of seconds")
    try:
        return Resolver.from_strings(options.nameservers, timeout=options.timeout, concurrency=options.concurrency).cached()
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err


def for_domain(domain: str, options: Options, *, resolver: Resolver | None = None) -> Target:
    """A run on an undeclared domain (generic checks, Odoo hints)."""
    try:
        name = names.domain(domain)
    except names.InvalidName as err:
        raise MailstackError(f"--domain: {err}") from err
    return Target(CheckContext(name, resolver or resolver_for(options), smtp=options.smtp, https=options.https, blocklists=options.blocklists,
                               dnssec=options.dnssec, tls=options.tls))


def for_stack(
    stack_file: Path,
    options: Options,
    *,
    gateway_public_key: str | None = None,
    gateway_private_key: str | None = None,
    resolver: Resolver | None = None,
    rotation_state: RotationState | None = None,
) -> Target:
    """A run on a declared stack: expectations from its plan (made with the gateway's
    DKIM public key when known, so that record compares by content; with a DKIM
    rotation's recorded state, so ``dkim.rotation`` knows the retire time)."""
    stack = from_config(stackfile.read_namespace(stack_file))
    planned = plan.build(stack, gateway_public_key)
    if rotation_state is not None:
        planned = planned.with_rotation(dkim_rotation.decide(stack.dkim, stack.dns.ttl, None, rotation_state, time.time()))
    return for_plan(planned, options, stack_file=stack_file, disabled=stack.checks.disable,
                    gateway_private_key=gateway_private_key, resolver=resolver)


def for_plan(
    built: plan.Plan, options: Options, *, stack_file: Path | None = None, disabled: tuple[str, ...] = (),
    gateway_private_key: str | None = None, resolver: Resolver | None = None,
) -> Target:
    """A run on a plan already made (the lab's, of its translated stack)."""
    ctx = CheckContext(
        built.stack.domain,
        resolver or resolver_for(options),
        plan=built,
        dkim_private_key=gateway_private_key.encode() if gateway_private_key else None,
        smtp=options.smtp,
        https=options.https,
        blocklists=options.blocklists,
        dnssec=options.dnssec,
        tls=options.tls,
    )
    return Target(ctx, disabled, stack_file)


def selection(target: Target, options: Options) -> list[registry.Check]:
    """The checks a target runs; MailstackError for an unknown group or id."""
    registry.load_builtin()
    try:
        return registry.select(options.only, [*target.disabled, *options.disable])
    except ValueError as err:
        raise MailstackError(str(err)) from err


def execute(target: Target, options: Options) -> list[Finding]:
    """Select the checks and run them on the target; MailstackError for an unknown
    group or id."""
    return execute_all([target], options)[0]


def execute_all(
    targets: Sequence[Target], options: Options, *, on_done: Callable[[int, list[Finding]], None] | None = None
) -> list[list[Finding]]:
    """Run every target's checks in one engine run (shared resolver, all at once);
    the findings per target, in order. ``on_done(index, findings)`` is called as each
    target ends (from the engine's thread)."""
    selected = [selection(target, options) for target in targets]  # every usage error before any query
    if options.wait is not None:
        if any(target.ctx.plan is None for target in targets):
            raise MailstackError("--wait needs a declaration (--stack or --stack-file)")
        for target in targets:
            assert target.ctx.plan is not None
            waited = wait_for_stack(target.ctx.plan, options.nameservers, options.wait, timeout=options.timeout, interval=options.interval)
            state = "the servers serve the plan" if waited.agreed else "servers still differ"
            which = f"{target.ctx.domain}: " if len(targets) > 1 else ""
            print(f"--wait: {which}{state} after {waited.polls} polls", file=sys.stderr)
    jobs = [
        runner.Job(t.ctx, checks, runner.deadline_for(len(t.ctx.domains), options.deadline, options.deadline_per_domain))
        for t, checks in zip(targets, selected)
    ]
    return loop.run(runner.run_jobs(jobs, workers=options.workers, on_done=on_done))


def render(
    fmt: str, target: str, findings: Sequence[Finding], *, colour: bool = False, verbose: bool = False, artifact: str | None = None
) -> str:
    """The findings in one report format."""
    if fmt == "json":
        return report_json.render(target, findings)
    if fmt == "junit":
        return report_junit.render(target, findings)
    if fmt == "sarif":
        return report_sarif.render(target, findings, artifact)
    return report_text.render(target, findings, colour=colour, verbose=verbose)


def artifact_uri(path: Path) -> str:
    """A stack file as a SARIF artifact URI: relative to the working directory if inside."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def write_report(target: Target, findings: Sequence[Finding], fmt: str, output: Path | None, *, verbose: bool = False) -> None:
    """Render the findings to ``output`` (or stdout, coloured on a terminal)."""
    artifact = artifact_uri(target.stack_file) if target.stack_file else None
    if output:
        _write(output, render(fmt, target.ctx.domain, findings, verbose=verbose, artifact=artifact))
        return
    colour = fmt == "text" and sys.stdout.isatty()
    sys.stdout.write(render(fmt, target.ctx.domain, findings, colour=colour, verbose=verbose, artifact=artifact))


def outcomes(targets: Sequence[Target], results: Sequence[Sequence[Finding]]) -> list[Outcome]:
    """Each target with its findings, as fleet reports take them."""
    return [
        Outcome(t.ctx.domain, findings, artifact_uri(t.stack_file) if t.stack_file else None)
        for t, findings in zip(targets, results)
    ]


def render_fleet(fmt: str, results: Sequence[Outcome], *, colour: bool = False, verbose: bool = False, strict: bool = False) -> str:
    """A fleet run's report: each target's findings, and a summary per target."""
    if fmt == "json":
        return report_json.render_fleet(results, strict=strict)
    if fmt == "junit":
        return report_junit.render_fleet(results)
    if fmt == "sarif":
        return report_sarif.render_fleet(results)
    return report_text.render_fleet(results, colour=colour, verbose=verbose, strict=strict)


def write_fleet_report(results: Sequence[Outcome], fmt: str, output: Path | None, *, verbose: bool = False, strict: bool = False) -> None:
    """Render a fleet report to ``output`` — then print the summary line of each target
    on stdout, which the report does not use — or to stdout (coloured on a terminal)."""
    if output:
        _write(output, render_fleet(fmt, results, verbose=verbose, strict=strict))
        if fmt != "text":
            sys.stdout.write("".join(o.summary_line(strict=strict) + "\n" for o in results))
        return
    colour = fmt == "text" and sys.stdout.isatty()
    sys.stdout.write(render_fleet(fmt, results, colour=colour, verbose=verbose, strict=strict))


def _write(output: Path, text: str) -> None:
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise MailstackError(f"--output {output}: {err.strerror or err}") from err
