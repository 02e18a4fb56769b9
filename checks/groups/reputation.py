"""Reputation checks: the gateway addresses looked up in DNS blocklists (RFC 5782).

A receiver that finds the sending address on a list it uses refuses the mail, so a
listed gateway is a ``fail`` with the list's TXT reason. The verdict of each answer is
``mailstack.rules.dnsbl.classify``: Spamhaus' refusal answers (127.255.255.25x) and
failed lookups are ``error`` — the address was not checked — never "not listed". The
queries go through the run's resolver like every other check (``--nameserver``): a
list refuses big public resolvers, so run the check from a resolver of your own.
"""

from __future__ import annotations

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.engine.context import CheckContext, gather
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped
from mailstack.checks.engine.registry import check
from mailstack.checks.groups import mx as mx_checks
from mailstack.core import names
from mailstack.rules import dnsbl


def zones(ctx: CheckContext) -> tuple[str, ...]:
    """The lists to ask: ``--blocklist``, else ``mailstack:checks.blocklists``, else the default ones."""
    if ctx.blocklists is not None:
        return ctx.blocklists
    declared = ctx.stack.checks.blocklists if ctx.stack else None
    return dnsbl.DEFAULT_ZONES if declared is None else declared


async def addresses(ctx: CheckContext) -> tuple[list[str], list[Finding]]:
    """The addresses whose reputation matters: the declared gateways' (IPv4 and IPv6);
    undeclared, the addresses of the domain's MX hosts (they send its mail, usually)."""
    if ctx.stack is not None:
        found = [a for g in ctx.stack.gateways for a in (g.ipv4, g.ipv6) if a]
        return list(dict.fromkeys(found)), []
    obs = await mx_checks.observe(ctx, ctx.domain)
    if obs.error:
        return [], [errored("reputation.dnsbl", f"{ctx.domain}: MX lookup failed: {obs.error}")]
    found = [a for t in obs.targets if t.host != "." and not names.is_ip(t.host) for a in t.addresses]
    return list(dict.fromkeys(found)), []


async def _lookup(ctx: CheckContext, address: str, zone: str) -> Finding:
    name = dnsbl.query_name(address, zone)
    try:
        answer = await ctx.dns.query(name, "A")
        texts = (await ctx.dns.txt(name)).texts() if answer.addresses() else ()
    except DnsError as err:
        return errored("reputation.dnsbl", f"{address} on {zone}: not checked: {err}", detail=f"query {name}")
    codes = tuple(sorted(answer.addresses()))  # servers rotate the order of an RRset
    verdict = dnsbl.classify(answer.nxdomain or answer.void, codes, tuple(sorted(texts)))
    if verdict.outcome is dnsbl.Outcome.LISTED:
        return failed(
            "reputation.dnsbl", f"{address} is listed on {zone}: {verdict.reason}", found=", ".join(codes), detail=f"query {name}",
            fix=f"find why on the list's lookup page ({zone}), stop the cause (an open relay, a compromised account, a dynamic-IP range), then request delisting",
        )
    if verdict.outcome is dnsbl.Outcome.UNKNOWN:
        return errored("reputation.dnsbl", f"{address} on {zone}: not checked: {verdict.reason}", found=", ".join(codes),
                       detail=f"query {name}", fix="ask through a resolver of your own (--nameserver), not a public one")
    return passed("reputation.dnsbl", f"{address} is not listed on {zone}")


async def _health(ctx: CheckContext, zone: str) -> str | None:
    """Why a list cannot be trusted, or None: RFC 5782 §5 says 127.0.0.1 is never listed."""
    try:
        answer = await ctx.dns.query(dnsbl.query_name(dnsbl.NEVER_LISTED, zone), "A")
    except DnsError:
        return None  # the lookups themselves report the failure
    verdict = dnsbl.classify(answer.nxdomain or answer.void, answer.addresses())
    if verdict.outcome is dnsbl.Outcome.LISTED:
        return f"{zone} lists {dnsbl.NEVER_LISTED}, which no working list does (RFC 5782 §5): it lists everything (shut down, or refusing this resolver)"
    return None


@check("reputation.dnsbl", ref="RFC 5782 §2, §5")
async def blocklists(ctx: CheckContext) -> list[Finding]:
    """No gateway address is listed on the configured DNS blocklists (each address, each list)."""
    lists = zones(ctx)
    if not lists:
        return [skipped("reputation.dnsbl", "no blocklist is configured (mailstack:checks.blocklists: [])")]
    found, findings = await addresses(ctx)
    if findings:
        return findings
    if not found:
        return [skipped("reputation.dnsbl", "no gateway address is declared" if ctx.declared else f"{ctx.domain} has no MX address to look up")]
    health = dict(zip(lists, await gather(_health(ctx, zone) for zone in lists)))
    results = await gather(_lookup(ctx, address, zone) for address in found for zone in lists if not health[zone])
    broken = [errored("reputation.dnsbl", f"{zone}: not checked: {problem}", fix=f"remove {zone} from mailstack:checks.blocklists")
              for zone, problem in health.items() if problem]
    return broken + results
