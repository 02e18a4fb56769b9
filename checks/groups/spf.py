"""SPF checks (RFC 7208): presence, uniqueness, syntax, ``all``, lookup budget, size,
declared senders and declared sending IPs evaluated by pyspf."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.engine.context import CheckContext, gather, settled
from mailstack.checks.engine.finding import (
    Finding,
    errored,
    failed,
    passed,
    skipped,
    warned,
)
from mailstack.checks.engine.registry import check
from mailstack.checks.probes.spf_pyspf import check_host
from mailstack.checks.probes.spf_tree import SpfRecord, budget, fetch_tree
from mailstack.core import zonefile
from mailstack.core.record import Record
from mailstack.rules import senders, spf

_Judge = Callable[[CheckContext, str, SpfRecord], Finding]


def planned_spf(ctx: CheckContext) -> dict[str, Record]:
    """The declared SPF record per name (empty in --domain mode), indexed once per run."""
    return ctx.memo("planned:spf", lambda: {r.name: r for r in ctx.planned if r.purpose == "spf"})


def spf_names(ctx: CheckContext) -> list[str]:
    """Names whose SPF is checked: the declared ones, or the domain itself."""
    return ctx.memo("spf-names", lambda: sorted(planned_spf(ctx)) if ctx.declared else [ctx.domain])


def tree(ctx: CheckContext, name: str) -> Awaitable[SpfRecord]:
    """The SPF tree of a name, fetched once per run (await it)."""
    return ctx.observe(f"spf-tree:{name}", lambda: fetch_tree(ctx.dns, name))


def _fix(ctx: CheckContext, name: str) -> str:
    record = planned_spf(ctx).get(name)
    return zonefile.line(record) if record else f'{name}. IN TXT "v=spf1 <your senders> ~all"'


async def _each(ctx: CheckContext, id: str, judge: _Judge) -> list[Finding]:
    names = spf_names(ctx)
    if not names:
        return [skipped(id, "no SPF record is declared (nobody sends for this domain)")]
    findings: list[Finding] = []
    for name, found in zip(names, await settled(tree(ctx, name) for name in names)):
        if isinstance(found, DnsError):
            findings.append(errored(id, f"{name}: DNS error: {found}"))
        elif isinstance(found, BaseException):
            raise found
        else:
            findings.append(judge(ctx, name, found))
    return findings


@check("spf.present", ref="RFC 7208 §4.5")
async def present(ctx: CheckContext) -> list[Finding]:
    """An SPF record is published at each sending name."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.records:
            return passed("spf.present", f"{name} publishes SPF", found=t.records[0])
        return failed("spf.present", f"{name} publishes no SPF record", expected="one TXT record starting with v=spf1", fix=_fix(ctx, name))
    return await _each(ctx, "spf.present", judge)


@check("spf.single", ref="RFC 7208 §3.2, §4.5")
async def single(ctx: CheckContext) -> list[Finding]:
    """At most one SPF record per name (two make every evaluation a permerror)."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if len(t.records) > 1:
            return failed(
                "spf.single", f"{name} publishes {len(t.records)} SPF records; receivers return permerror",
                found=" | ".join(t.records), expected="exactly one", fix=f"delete all but one and publish: {_fix(ctx, name)}",
            )
        if not t.records:
            return skipped("spf.single", f"{name} publishes no SPF record (see spf.present)")
        return passed("spf.single", f"{name} publishes exactly one SPF record")
    return await _each(ctx, "spf.single", judge)


@check("spf.syntax", ref="RFC 7208 §4.6, §5, §6")
async def syntax(ctx: CheckContext) -> list[Finding]:
    """The SPF record and every record it includes parse (RFC 7208 grammar)."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.record is None:
            return skipped("spf.syntax", f"{name}: no single SPF record to parse (see spf.present, spf.single)")
        problems = ([t.syntax_error] if t.syntax_error else []) + t.problems_below()
        if problems:
            return failed("spf.syntax", f"{name}: SPF does not evaluate: {problems[0]}", detail="; ".join(problems), found=t.record, fix=_fix(ctx, name))
        dns_problems = [p for p in t.dns_errors() if p.split(": ", 1)[0].startswith(("include:", "redirect="))]
        if dns_problems:
            return errored("spf.syntax", f"{name}: an included record could not be fetched: {dns_problems[0]}", detail="; ".join(dns_problems))
        return passed("spf.syntax", f"{name}: SPF and its includes parse", found=t.record)
    return await _each(ctx, "spf.syntax", judge)


@check("spf.all", ref="RFC 7208 §5.1, §8")
async def all_qualifier(ctx: CheckContext) -> list[Finding]:
    """The record ends with ~all or -all (not +all, ?all or nothing)."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.record is None or t.syntax_error:
            return skipped("spf.all", f"{name}: no parsable SPF record")
        terms = spf.parse(t.record)
        alls = [term for term in terms if term.name == "all" and not term.modifier]
        if any(term.modifier and term.name == "redirect" for term in terms) and not alls:
            return passed("spf.all", f"{name}: the redirect target decides the result", found=t.record)
        if not alls:
            return warned("spf.all", f"{name}: no 'all' term; unmatched senders get neutral", found=t.record, expected="~all or -all", fix=_fix(ctx, name))
        qualifier = alls[-1].qualifier
        if qualifier == "+":
            return failed("spf.all", f"{name}: '+all' authorises every host on the Internet", found=t.record, expected="~all or -all", fix=_fix(ctx, name))
        if qualifier == "?":
            return warned("spf.all", f"{name}: '?all' makes SPF say nothing about other hosts", found=t.record, expected="~all or -all", fix=_fix(ctx, name))
        return passed("spf.all", f"{name}: ends with {qualifier}all", found=t.record)
    return await _each(ctx, "spf.all", judge)


@check("spf.lookups", ref="RFC 7208 §4.6.4")
async def lookups(ctx: CheckContext) -> list[Finding]:
    """At most 10 DNS-querying terms, counted recursively through include and redirect,
    and at most 10 MX records behind each ``mx`` term."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.record is None or t.syntax_error:
            return skipped("spf.lookups", f"{name}: no parsable SPF record")
        b = budget(t)
        found = f"{b.lookups} lookups ({b.describe()})"
        errors = t.dns_errors()
        if errors and not b.over_lookups:  # a failed include may hide more lookups
            return errored("spf.lookups", f"{name}: at least {b.lookups} lookups; a query failed: {errors[0]}", detail="; ".join(errors), found=found)
        too_many_mx = t.mx_over_limit()
        if too_many_mx:
            return failed(
                "spf.lookups", f"{name}: {too_many_mx[0]}, over the limit of {spf.MX_ADDRESS_LIMIT}; receivers return permerror",
                detail="; ".join(too_many_mx), found=found, expected=f"<= {spf.MX_ADDRESS_LIMIT} MX records per mx term",
                fix="replace the mx term by ip4:/ip6: terms of the sending hosts",
            )
        if b.over_lookups:
            return failed(
                "spf.lookups", f"{name}: SPF needs {b.lookups} DNS lookups, over the limit of {spf.LOOKUP_LIMIT}; receivers return permerror",
                found=found, expected=f"<= {spf.LOOKUP_LIMIT}",
                fix="replace includes by ip4:/ip6: terms or drop senders no longer used; " + _fix(ctx, name),
            )
        macros = t.macro_terms()
        if macros:  # counted once each; what a macro include names is known per message only
            return passed("spf.lookups", f"{name}: {b.lookups} of {spf.LOOKUP_LIMIT} DNS lookups ({len(macros)} term(s) with macros counted once each)",
                          found=found, detail="terms with macros (RFC 7208 §7), counted and not followed: " + " ".join(macros))
        return passed("spf.lookups", f"{name}: {b.lookups} of {spf.LOOKUP_LIMIT} DNS lookups", found=found)
    return await _each(ctx, "spf.lookups", judge)


@check("spf.void-lookups", ref="RFC 7208 §4.6.4")
async def void_lookups(ctx: CheckContext) -> list[Finding]:
    """At most 2 lookups that return nothing (NXDOMAIN or no records)."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.record is None or t.syntax_error:
            return skipped("spf.void-lookups", f"{name}: no parsable SPF record")
        b = budget(t)
        errors = t.dns_errors()
        if errors and not b.over_voids:
            return errored("spf.void-lookups", f"{name}: at least {b.voids} void lookups; a query failed: {errors[0]}", detail="; ".join(errors))
        if b.over_voids:
            return failed(
                "spf.void-lookups", f"{name}: {b.voids} void lookups, over the limit of {spf.VOID_LIMIT}; receivers may return permerror",
                found=t.record, expected=f"<= {spf.VOID_LIMIT} terms naming domains without records", fix="remove terms naming domains that do not exist",
            )
        return passed("spf.void-lookups", f"{name}: {b.voids} void lookups (limit {spf.VOID_LIMIT})")
    return await _each(ctx, "spf.void-lookups", judge)


@check("spf.loop", ref="RFC 7208 §4.6.4, §5.2")
async def loop(ctx: CheckContext) -> list[Finding]:
    """No include or redirect leads back to a record already being evaluated."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.record is None or t.syntax_error:
            return skipped("spf.loop", f"{name}: no parsable SPF record")
        loops = t.loops()
        if loops:
            return failed("spf.loop", f"{name}: include loop {loops[0]}", detail="; ".join(loops), fix="remove the include that points back")
        unfetched = t.unfetched_includes()
        if unfetched:  # what an unfetched record includes is unknown: it may loop
            return errored("spf.loop", f"{name}: an included record could not be fetched, so a loop cannot be ruled out: {unfetched[0]}", detail="; ".join(unfetched))
        return passed("spf.loop", f"{name}: no include loop")
    return await _each(ctx, "spf.loop", judge)


@check("spf.size", ref="RFC 7208 §3.4")
async def size(ctx: CheckContext) -> list[Finding]:
    """The record fits a 512-byte UDP answer (450 bytes advised)."""
    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if not t.records:
            return skipped("spf.size", f"{name}: no SPF record")
        n = max(spf.size(r) for r in t.records)
        if n > spf.SIZE_LIMIT:
            return failed("spf.size", f"{name}: SPF record is {n} bytes, over {spf.SIZE_LIMIT}", found=str(n), expected=f"<= {spf.SIZE_ADVISED}", fix="move addresses into an included record")
        if n > spf.SIZE_ADVISED:
            return warned("spf.size", f"{name}: SPF record is {n} bytes, over the advised {spf.SIZE_ADVISED}", found=str(n))
        return passed("spf.size", f"{name}: SPF record is {n} bytes")
    return await _each(ctx, "spf.size", judge)


def declared_ips(ctx: CheckContext) -> list[str]:
    """Every address the declaration sends from: gateways and raw ip4/ip6 terms."""
    if ctx.stack is None:
        return []
    ips: list[str] = []
    for gateway in ctx.stack.gateways:
        ips += [gateway.ipv4] + ([gateway.ipv6] if gateway.ipv6 else [])
    for sender in ctx.stack.outbound:
        for term in senders.spf_terms(ctx.stack, sender):
            parsed = spf.parse_term(term)
            if parsed.name in ("ip4", "ip6") and "/" not in parsed.value:
                ips.append(parsed.value)
    return list(dict.fromkeys(ips))


@check("spf.ip-pass", ref="RFC 7208 §4")
async def ip_pass(ctx: CheckContext) -> list[Finding]:
    """Every declared sending address evaluates to pass (pyspf check_host)."""
    ips = declared_ips(ctx)
    if not ips:
        return [skipped("spf.ip-pass", "no sending address is declared" if ctx.declared else "needs a declaration (--stack)")]

    async def one(name: str, ip: str) -> Finding:
        with contextlib.suppress(DnsError):  # pyspf meets the same error: temperror
            await tree(ctx, name)  # the records pyspf reads, fetched at once and cached
        result, explanation = await ctx.blocking(check_host, ctx.resolver, ip, name)
        subject = f"{name}: {ip} evaluates to {result}"
        if result == "pass":
            return passed("spf.ip-pass", subject)
        if result == "temperror":
            return errored("spf.ip-pass", subject, detail=explanation)
        return failed("spf.ip-pass", subject, detail=explanation, expected="pass", found=result, fix=_fix(ctx, name))

    return await gather(one(name, ip) for name in spf_names(ctx) for ip in ips)


@check("spf.senders", ref="RFC 7208 §5.2")
async def declared_senders(ctx: CheckContext) -> list[Finding]:
    """Each declared sender's terms (includes, addresses) are in the published record."""
    if ctx.stack is None:
        return [skipped("spf.senders", "needs a declaration (--stack)")]
    stack = ctx.stack
    wanted = {str(spf.parse_term(t)) for s in stack.outbound for t in senders.spf_terms(stack, s)}
    if not wanted:
        return [skipped("spf.senders", "no sender is declared")]

    def judge(ctx: CheckContext, name: str, t: SpfRecord) -> Finding:
        if t.record is None or t.syntax_error:
            return skipped("spf.senders", f"{name}: no parsable SPF record")
        published = {str(term) for term in spf.parse(t.record)}
        missing = sorted(wanted - published)
        if missing:
            return failed("spf.senders", f"{name}: declared sender terms missing: {' '.join(missing)}", found=t.record, expected=" ".join(sorted(wanted)), fix=_fix(ctx, name))
        return passed("spf.senders", f"{name}: every declared sender is in SPF")
    return await _each(ctx, "spf.senders", judge)
