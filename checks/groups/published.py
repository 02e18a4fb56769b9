"""Declared vs published: every planned record is live with its content, and nothing
conflicting (a second SPF, a stale DKIM key, an extra MX) sits beside it."""

from __future__ import annotations

from mailstack.checks.dns import published
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import (
    Finding,
    errored,
    failed,
    passed,
    skipped,
    warned,
)
from mailstack.checks.engine.registry import check
from mailstack.core import zonefile


async def diffs(ctx: CheckContext) -> list[published.RecordDiff]:
    """The plan against live DNS, once per run (both checks read it)."""
    async def compute() -> list[published.RecordDiff]:
        observed = await published.observe(ctx.planned, ctx.dns)
        return published.compare(list(ctx.planned), observed, gateway_key_known=ctx.gateway_key is not None)
    return await ctx.observe("published-diffs", compute)


def _line(diff: published.RecordDiff) -> str:
    return zonefile.line(diff.declared) if diff.declared else ""


@check("published.records", ref="RFC 1035 §3.3 (the declaration is the source of truth)")
async def records(ctx: CheckContext) -> list[Finding]:
    """Every planned record is live with the planned content."""
    if not ctx.declared:
        return [skipped("published.records", "needs a declaration (--stack)")]
    findings: list[Finding] = []
    for diff in await diffs(ctx):
        if diff.declared is None:
            continue
        label = f"{diff.name} {diff.type}"
        live = " | ".join(r.content if r.priority is None else f"{r.priority} {r.content}" for r in diff.live)
        if diff.change is published.Change.SAME:
            findings.append(passed("published.records", f"{label} is live as declared"))
        elif diff.change is published.Change.PRESENT:
            findings.append(passed("published.records", f"{label} is live ({diff.note})"))
        elif diff.change is published.Change.UNKNOWN:
            findings.append(errored("published.records", f"{label}: {diff.note}"))
        elif diff.change is published.Change.MISSING:
            findings.append(failed("published.records", f"{label} is not published", expected=diff.declared.content, fix=_line(diff)))
        else:
            findings.append(failed("published.records", f"{label} differs from the declaration", detail=diff.note, expected=diff.declared.content, found=live, fix=_line(diff)))
    return findings or [skipped("published.records", "the declaration plans no record")]


@check("published.conflicts", ref="RFC 7208 §3.2, RFC 6376 §3.6.2.2")
async def conflicts(ctx: CheckContext) -> list[Finding]:
    """No live record beside a planned one conflicts with it (second SPF, stale DKIM, extra MX)."""
    if not ctx.declared:
        return [skipped("published.conflicts", "needs a declaration (--stack)")]
    found = await diffs(ctx)
    extra = [d for d in found if d.change is published.Change.EXTRA]
    unknown = [d for d in found if d.change is published.Change.UNKNOWN]
    if not extra and unknown:
        # A name that could not be queried may hold a conflict: undecided, never a pass.
        return [errored("published.conflicts", f"{unknown[0].name} {unknown[0].type}: {unknown[0].note}")]
    if not extra:
        return [passed("published.conflicts", "no conflicting record beside the planned ones")]
    findings: list[Finding] = []
    for diff in extra:
        record = diff.live[0]
        value = record.content if record.priority is None else f"{record.priority} {record.content}"
        severity = failed if record.type in ("TXT", "MX") else warned
        findings.append(severity("published.conflicts", f"{diff.name} {diff.type}: {diff.note} is live beside the declared one", found=value, fix=f"delete {diff.name} {diff.type} {value}"))
    return findings
