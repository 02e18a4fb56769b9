"""MX checks (RFC 5321 §5.1, RFC 7505, RFC 2181 §10.3): the MX set as declared (or a
null MX), targets that resolve and are neither CNAMEs nor IP literals, Odoo's
dedicated-subdomain rule, and forward-confirmed reverse DNS of the gateways."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.engine.context import CheckContext, gather
from mailstack.checks.engine.finding import (
    Finding,
    errored,
    failed,
    passed,
    skipped,
    warned,
)
from mailstack.checks.engine.registry import check
from mailstack.core import names, zonefile
from mailstack.core.model import InboundMode
from mailstack.core.record import Record
from mailstack.rules.mx import NULL_MX


@dataclass(frozen=True, slots=True)
class MxTarget:
    """One MX target and what its name resolves to."""

    host: str
    priority: int
    cname: str | None = None
    addresses: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MxObservation:
    """The MX set of one name."""

    name: str
    targets: tuple[MxTarget, ...]
    error: str | None = None

    @property
    def pairs(self) -> set[tuple[int, str]]:
        return {(t.priority, t.host) for t in self.targets}

    @property
    def null(self) -> bool:
        return any(t.host == NULL_MX for t in self.targets)


async def fetch_mx(resolver: AsyncResolver, name: str) -> MxObservation:
    """The MX set of a name and, for each target at once, its CNAME and addresses."""
    try:
        pairs = (await resolver.query(name, "MX")).mx()
    except DnsError as err:
        return MxObservation(name, (), str(err))

    async def target(priority: int, host: str) -> MxTarget:
        if host == NULL_MX or names.is_ip(host):
            return MxTarget(host, priority)
        try:
            cname, addresses = await asyncio.gather(resolver.cname(host), resolver.addresses(host))
        except DnsError as err:
            return MxTarget(host, priority, error=str(err))
        return MxTarget(host, priority, cname, addresses)

    return MxObservation(name, tuple(await gather(target(p, h) for p, h in pairs)))


def declared_mx(ctx: CheckContext) -> dict[str, list[Record]]:
    """Declared MX records by name, indexed once per run."""
    def index() -> dict[str, list[Record]]:
        found: dict[str, list[Record]] = {}
        for record in ctx.planned:
            if record.type == "MX":
                found.setdefault(record.name, []).append(record)
        return found
    return ctx.memo("planned:mx", index)


def mx_names(ctx: CheckContext) -> list[str]:
    return ctx.memo("mx-names", lambda: sorted(declared_mx(ctx)) if ctx.declared else [ctx.domain])


def observe(ctx: CheckContext, name: str) -> Awaitable[MxObservation]:
    """The MX observation of a name, fetched once per run (the smtp group reads it too)."""
    return ctx.observe(f"mx:{name}", lambda: fetch_mx(ctx.dns, name))


@dataclass(frozen=True, slots=True)
class Unreachable:
    """An MX (or inbound name) that cannot be probed, and why."""

    host: str
    error: str


async def probe_targets(ctx: CheckContext, inbound: list[str]) -> list[tuple[str, str] | Unreachable]:
    """What the SMTP-level checks connect to: every address of each MX host of the
    ``inbound`` names, each host once, in MX order; a failed MX or address lookup as
    ``Unreachable`` (the check reports it as error), a null MX or an IP literal skipped."""
    targets: list[tuple[str, str] | Unreachable] = []
    seen: set[str] = set()
    for name, mx in zip(inbound, await gather(observe(ctx, n) for n in inbound)):
        if mx.error:
            targets.append(Unreachable(name, f"MX lookup failed: {mx.error}"))
            continue
        for target in mx.targets:
            if target.host == "." or names.is_ip(target.host) or target.host in seen:
                continue
            seen.add(target.host)
            if target.error:
                targets.append(Unreachable(target.host, target.error))
            targets += [(target.host, address) for address in target.addresses]
    return targets


async def _observations(ctx: CheckContext, id: str) -> tuple[list[MxObservation], list[Finding]]:
    observations: list[MxObservation] = []
    errors: list[Finding] = []
    for name, obs in zip(mx_names(ctx), await gather(observe(ctx, n) for n in mx_names(ctx))):
        if obs.error:
            errors.append(errored(id, f"{name}: DNS error: {obs.error}"))
        else:
            observations.append(obs)
    return observations, errors


def _render(pairs: set[tuple[int, str]]) -> str:
    return ", ".join(f"{p} {h}" for p, h in sorted(pairs)) or "none"


@check("mx.present", ref="RFC 5321 §5.1, RFC 7505")
async def present(ctx: CheckContext) -> list[Finding]:
    """The MX set is the declared one (or, undeclared, an MX or null MX exists)."""
    if ctx.declared and not mx_names(ctx):
        return [skipped("mx.present", "no MX is declared (inbound through a CNAME or elsewhere)")]
    observations, findings = await _observations(ctx, "mx.present")
    declared = declared_mx(ctx)
    for obs in observations:
        if not ctx.declared:
            if obs.targets:
                findings.append(passed("mx.present", f"{obs.name}: MX {_render(obs.pairs)}"))
            else:
                findings.append(warned("mx.present", f"{obs.name}: no MX; senders fall back to the A record", fix=f"{obs.name}. IN MX 0 . (if it receives no mail)"))
            continue
        wanted = {(r.priority or 0, r.content) for r in declared[obs.name]}
        if obs.pairs == wanted:
            findings.append(passed("mx.present", f"{obs.name}: MX {_render(obs.pairs)} as declared"))
        else:
            fix = "; ".join(zonefile.line(r) for r in declared[obs.name])
            findings.append(failed("mx.present", f"{obs.name}: MX differs from the declaration", expected=_render(wanted), found=_render(obs.pairs), fix=fix))
    return findings


@check("mx.null", ref="RFC 7505 §3")
async def null_mx(ctx: CheckContext) -> list[Finding]:
    """A null MX (``0 .``) stands alone: no other MX beside it."""
    observations, findings = await _observations(ctx, "mx.null")
    for obs in observations:
        if not obs.null:
            findings.append(passed("mx.null", f"{obs.name}: not a null MX"))
        elif len(obs.targets) == 1 and obs.targets[0].priority == 0:
            findings.append(passed("mx.null", f"{obs.name}: null MX, the domain receives no mail"))
        else:
            findings.append(failed("mx.null", f"{obs.name}: null MX mixed with other MX records or a priority other than 0", found=_render(obs.pairs), fix=f"{obs.name}. IN MX 0 . (alone)"))
    return findings


def _real_targets(obs: MxObservation) -> list[MxTarget]:
    return [t for t in obs.targets if t.host != NULL_MX]


@check("mx.target-ip", ref="RFC 5321 §5.1, RFC 1035 §3.3.9")
async def target_ip(ctx: CheckContext) -> list[Finding]:
    """No MX target is an IP address literal (it must be a host name)."""
    observations, findings = await _observations(ctx, "mx.target-ip")
    for obs in observations:
        bad = [t.host for t in _real_targets(obs) if names.is_ip(t.host)]
        if bad:
            findings.append(failed("mx.target-ip", f"{obs.name}: MX target {bad[0]} is an IP address", found=_render(obs.pairs), fix=f"point the MX at a host name with an A record for {bad[0]}"))
        elif _real_targets(obs):
            findings.append(passed("mx.target-ip", f"{obs.name}: MX targets are host names"))
        else:
            findings.append(skipped("mx.target-ip", f"{obs.name}: no MX target"))
    return findings


@check("mx.target-cname", ref="RFC 2181 §10.3, RFC 5321 §5.1")
async def target_cname(ctx: CheckContext) -> list[Finding]:
    """No MX target is an alias (CNAME)."""
    observations, findings = await _observations(ctx, "mx.target-cname")
    for obs in observations:
        for target in _real_targets(obs):
            if names.is_ip(target.host):
                continue
            if target.error:
                findings.append(errored("mx.target-cname", f"{target.host}: DNS error: {target.error}"))
            elif target.cname:
                findings.append(failed("mx.target-cname", f"{obs.name}: MX target {target.host} is a CNAME to {target.cname}", fix=f"{obs.name}. IN MX {target.priority} {target.cname}."))
            else:
                findings.append(passed("mx.target-cname", f"{obs.name}: MX target {target.host} is not a CNAME"))
        if not _real_targets(obs):
            findings.append(skipped("mx.target-cname", f"{obs.name}: no MX target"))
    return findings


@check("mx.target-resolves", ref="RFC 5321 §5.1")
async def target_resolves(ctx: CheckContext) -> list[Finding]:
    """Each MX target has an A or AAAA record."""
    observations, findings = await _observations(ctx, "mx.target-resolves")
    for obs in observations:
        for target in _real_targets(obs):
            if names.is_ip(target.host):
                continue
            if target.error:
                findings.append(errored("mx.target-resolves", f"{target.host}: DNS error: {target.error}"))
            elif target.addresses:
                findings.append(passed("mx.target-resolves", f"{target.host} -> {', '.join(target.addresses)}"))
            else:
                findings.append(failed("mx.target-resolves", f"{target.host} has no A or AAAA record; mail to {obs.name} bounces", fix=f"{target.host}. IN A <address of the mail server>"))
        if not _real_targets(obs):
            findings.append(skipped("mx.target-resolves", f"{obs.name}: no MX target"))
    return findings


def _odoo_host(host: str) -> bool:
    return names.within(host, "odoo.com")


@check("mx.odoo-subdomain", ref="Odoo 17 docs: email servers / custom domain (inbound on a dedicated subdomain)")
async def odoo_subdomain(ctx: CheckContext) -> list[Finding]:
    """Inbound to Odoo's servers uses a dedicated subdomain, never the root domain."""
    stack = ctx.stack
    if stack is not None and stack.inbound.mode is not InboundMode.ODOO_MX:
        return [skipped("mx.odoo-subdomain", f"inbound mode is {stack.inbound.mode.value}")]

    async def one(domain: str) -> Finding:
        root = await observe(ctx, domain)
        if root.error:
            return errored("mx.odoo-subdomain", f"{domain}: DNS error: {root.error}")
        odoo_root = [t.host for t in root.targets if _odoo_host(t.host)]
        if odoo_root:
            sub = stack.inbound_domain(domain) if stack else f"mail.{domain}"
            return failed(
                "mx.odoo-subdomain", f"{domain}: the root MX points at Odoo ({odoo_root[0]}); Odoo receives only on a dedicated subdomain",
                fix=f"move it: {sub}. IN MX 10 {odoo_root[0]}. and give {domain} its own mailbox MX",
            )
        if stack is None:
            return passed("mx.odoo-subdomain", f"{domain}: the root MX does not point at Odoo")
        sub = stack.inbound_domain(domain)
        host = stack.odoo.saas_host or ""
        try:
            answer = await ctx.dns.query(sub, "MX")
            via_cname = answer.cnames[0] if answer.cnames else None
            pairs = answer.mx()
        except DnsError as err:
            return errored("mx.odoo-subdomain", f"{sub}: DNS error: {err}")
        if stack.inbound.record == "cname":
            ok = via_cname == host
            found = f"CNAME {via_cname}" if via_cname else "no CNAME"
            fix = f"{sub}. IN CNAME {host}."
        else:
            ok = any(h == host for _, h in pairs) and not via_cname
            found = _render(set(pairs)) if not via_cname else f"CNAME {via_cname}"
            fix = f"{sub}. IN MX 10 {host}."
        if ok:
            return passed("mx.odoo-subdomain", f"{sub} routes to Odoo ({host})")
        return failed("mx.odoo-subdomain", f"{sub} does not route to {host}", found=found, fix=fix)

    return await gather(one(domain) for domain in ctx.domains)


async def fcrdns_addresses(ctx: CheckContext) -> list[tuple[str, str | None]]:
    """(address, expected host name): the gateways when declared, else the MX targets'."""
    if ctx.stack is not None:
        pairs: list[tuple[str, str | None]] = [(g.ipv4, g.hostname) for g in ctx.stack.gateways]
        pairs += [(g.ipv6, g.hostname) for g in ctx.stack.gateways if g.ipv6]
        return pairs
    obs = await observe(ctx, ctx.domain)
    return [(a, t.host) for t in _real_targets(obs) for a in t.addresses]


@check("mx.fcrdns", ref="RFC 8601 §3 (iprev), RFC 1912 §2.1")
async def fcrdns(ctx: CheckContext) -> list[Finding]:
    """Each gateway address has a PTR whose name resolves back to that address."""
    pairs = await fcrdns_addresses(ctx)
    if not pairs:
        return [skipped("mx.fcrdns", "no gateway is declared" if ctx.declared else "no MX address to check")]

    async def one(address: str, expected: str | None) -> Finding:
        try:
            ptrs = (await ctx.dns.ptr(address)).targets()
            back = dict(zip(ptrs, await gather(ctx.dns.addresses(p) for p in ptrs)))
        except DnsError as err:
            return errored("mx.fcrdns", f"{address}: DNS error: {err}")
        confirmed = [p for p, addrs in back.items() if address in addrs]
        fix = f"PTR {address} -> {expected}. at the address owner, and {expected}. IN A/AAAA {address}"
        if not ptrs:
            return failed("mx.fcrdns", f"{address} has no reverse DNS (PTR); many receivers reject or junk its mail", expected=expected or "", fix=fix)
        if not confirmed:
            return failed("mx.fcrdns", f"{address} -> {ptrs[0]}, which does not resolve back to {address}", expected=expected or "", found=", ".join(ptrs), fix=fix)
        if expected and expected not in confirmed:
            return warned("mx.fcrdns", f"{address} -> {confirmed[0]} (forward-confirmed) but the gateway is {expected}", expected=expected, found=confirmed[0], fix=fix)
        return passed("mx.fcrdns", f"{address} <-> {confirmed[0]}")

    return await gather(one(address, expected) for address, expected in pairs)
