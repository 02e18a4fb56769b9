"""``dkim.rotation``: a declared DKIM key rotation (``dkim.previous``) is safe — the new
key record is served by every authoritative server of its zone before the gateway
signs with it, and the previous record is not left published after its retire time.

The servers are asked directly (``mailstack.rfc2136.authoritative``), and the phase is
decided by the one rule (``mailstack.rules.dkim_rotation``) from the stack, those
answers and — when ``mailstack check`` is given the recorded state — the switch time.
"""

from __future__ import annotations

import asyncio
import time

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, passed, skipped, warned
from mailstack.checks.engine.registry import check
from mailstack.core.errors import MailstackError
from mailstack.core.model import SenderKind
from mailstack.rfc2136 import authoritative
from mailstack.rules import dkim_rotation
from mailstack.rules.dkim_rotation import Phase

ID = "dkim.rotation"


@check(ID, ref="RFC 6376 §3.6.2, §6.1.2 (key lookup at verification)")
async def rotation(ctx: CheckContext) -> list[Finding]:
    """The new key is on every authoritative server; the old one is gone after its retire time."""
    plan = ctx.plan
    if plan is None:
        return [skipped(ID, "needs a declaration (--stack)")]
    stack = plan.stack
    if not stack.sends_via(SenderKind.GATEWAY) or stack.dkim.previous is None:
        return [skipped(ID, "no DKIM rotation declared (dkim.previous)")]
    nameservers = [(s.address, s.port) for s in ctx.resolver.servers]
    try:
        observed = await asyncio.to_thread(authoritative.observe_plan, plan, nameservers, ctx.resolver.timeout)
    except MailstackError as err:
        return [errored(ID, str(err))]
    if observed is None:
        return [skipped(ID, "the stack publishes no gateway key record")]
    failures = [s for s in observed.servers if s.error]
    if failures:
        return [errored(ID, "; ".join(f"{s.server}: {s.error}" for s in failures))]
    state = plan.rotation.state if plan.rotation else None
    decided = dkim_rotation.decide(stack.dkim, stack.dns.ttl, observed, state, time.time())
    findings: list[Finding] = []
    for server in observed.servers:
        if server.missing_new:
            findings.append(warned(
                ID, f"{server.server} does not serve {', '.join(server.missing_new)} (new selector {stack.dkim.selector})",
                fix=f"publish the new key there first (mailstack plan / pulumi up); the gateway keeps signing with {stack.dkim.previous} until it does",
            ))
    if decided.phase is Phase.RETIRE and observed.old_anywhere and decided.retire_at is not None:
        findings.append(warned(
            ID, f"{stack.dkim.previous}'s key record is still published after its retire time {dkim_rotation.when(decided.retire_at)}",
            found=", ".join(sorted({n for s in observed.servers for n in s.old_published})),
            fix="remove dkim.previous from the stack and apply: the old key record is deleted",
        ))
    if not findings and decided.switches_now:
        # Served everywhere, no switch recorded: the gateway still signs with the old key.
        unknown = "" if state is not None else " (no switch recorded here: give --dkim-rotation FILE to know whether it has)"
        findings.append(passed(ID, f"phase publish: every authoritative server serves {stack.dkim.selector}'s record; the next "
                                   f"apply (pulumi up, lab up) switches signing from {stack.dkim.previous} to it{unknown}"))
    elif not findings:
        findings.append(passed(ID, f"phase {decided.phase.value}: {decided.next}"))
    return findings
