"""One check run for a target, as ``mailstack check`` and ``mailstack lab check`` start it.

``Options`` holds everything a run needs besides the target (servers, timeouts, SMTP
and HTTPS settings, selection, deadline); ``for_stack``/``for_domain`` build the run's
context from a stack file or a bare domain; ``execute`` selects and runs the checks
(after ``--wait`` when asked) and ``render`` formats the findings. No argument parsing
here: the CLI and the lab each turn their own arguments into ``Options``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailstack import plan
from mailstack.checks.dns.diff import wait_for_stack
from mailstack.checks.dns.resolver import DEFAULT_TIMEOUT, Resolver
from mailstack.checks.engine import registry, runner
from mailstack.checks.engine.context import CheckContext, HttpsOptions, SmtpOptions
from mailstack.checks.engine.finding import Finding
from mailstack.checks.report import json as report_json
from mailstack.checks.report import junit as report_junit
from mailstack.checks.report import sarif as report_sarif
from mailstack.checks.report import text as report_text
from mailstack.config import stackfile
from mailstack.config.stack import from_config
from mailstack.core import names
from mailstack.core.errors import MailstackError

FORMATS = ("text", "json", "junit", "sarif")


@dataclass(frozen=True, slots=True)
class Options:
    """How a run asks and what it runs."""

    nameservers: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    smtp: SmtpOptions = field(default_factory=SmtpOptions)
    https: HttpsOptions = field(default_factory=HttpsOptions)
    only: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    workers: int = runner.DEFAULT_WORKERS
    deadline: float = runner.DEFAULT_DEADLINE
    #: Poll the authoritative servers until they serve the plan, at most this long.
    wait: float | None = None
    interval: float = 2.0


@dataclass(frozen=True, slots=True)
class Target:
    """What a run checks: its context and the check ids its stack file disables."""

    ctx: CheckContext
    disabled: tuple[str, ...] = ()
    #: The stack file, for reports that point at a file (SARIF).
    stack_file: Path | None = None


def _resolver(options: Options) -> Resolver:
    try:
        return Resolver.from_strings(options.nameservers, timeout=options.timeout).cached()
    except ValueError as err:
        raise MailstackError(f"--nameserver: {err}") from err


def for_domain(domain: str, options: Options) -> Target:
    """A run on an undeclared domain (generic checks, Odoo hints)."""
    try:
        name = names.domain(domain)
    except names.InvalidName as err:
        raise MailstackError(f"--domain: {err}") from err
    return Target(CheckContext(name, _resolver(options), smtp=options.smtp, https=options.https))


def for_stack(
    stack_file: Path, options: Options, *, gateway_public_key: str | None = None, gateway_private_key: str | None = None
) -> Target:
    """A run on a declared stack: expectations from its plan (made with the gateway's
    DKIM public key when known, so that record compares by content)."""
    stack = from_config(stackfile.read_namespace(stack_file))
    ctx = CheckContext(
        stack.domain,
        _resolver(options),
        plan=plan.build(stack, gateway_public_key),
        dkim_private_key=gateway_private_key.encode() if gateway_private_key else None,
        smtp=options.smtp,
        https=options.https,
    )
    return Target(ctx, stack.checks.disable, stack_file)


def execute(target: Target, options: Options) -> list[Finding]:
    """Select the checks and run them on the target; MailstackError for an unknown
    group or id."""
    registry.load_builtin()
    try:
        selected = registry.select(options.only, [*target.disabled, *options.disable])
    except ValueError as err:
        raise MailstackError(str(err)) from err
    ctx = target.ctx
    if options.wait is not None:
        if ctx.plan is None:
            raise MailstackError("--wait needs a declaration (--stack or --stack-file)")
        waited = wait_for_stack(ctx.plan, options.nameservers, options.wait, timeout=options.timeout, interval=options.interval)
        print(f"--wait: {'the servers serve the plan' if waited.agreed else 'servers still differ'} after {waited.polls} polls", file=sys.stderr)
    return runner.run(ctx, selected, workers=options.workers, deadline=options.deadline)


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
        output.write_text(render(fmt, target.ctx.domain, findings, verbose=verbose, artifact=artifact), encoding="utf-8")
        return
    colour = fmt == "text" and sys.stdout.isatty()
    sys.stdout.write(render(fmt, target.ctx.domain, findings, colour=colour, verbose=verbose, artifact=artifact))
