"""DKIM checks (RFC 6376, RFC 8301, RFC 8463): each declared selector's key record
resolves (through CNAMEs), parses, is big enough, not revoked, not in test mode, equals
the declared key where known, and a probe signed with the gateway key verifies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dkim as dkimpy

from mailstack.checks.dns.aresolver import AsyncResolver
from mailstack.checks.dns.resolver import DnsError, Resolver
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
from mailstack.checks.probes.dkim_dns import dnsfunc
from mailstack.core import zonefile
from mailstack.core.model import SenderKind
from mailstack.core.record import Record
from mailstack.rules import dkim

#: Selectors probed in --domain mode (Odoo, Google, Mailjet, Microsoft 365, common defaults).
COMMON_SELECTORS = ("odoo", "google", "mailjet", "selector1", "selector2", "default", "mailstack", "dkim", "mail")


@dataclass(frozen=True, slots=True)
class KeyObservation:
    """The DKIM key record(s) found at one selector name, after CNAMEs."""

    name: str
    texts: tuple[str, ...]
    cnames: tuple[str, ...] = ()
    error: str | None = None

    @property
    def text(self) -> str | None:
        """The key record: the single TXT, or the one that looks like a key."""
        keys = [t for t in self.texts if dkim.is_key_record(t)]
        return keys[0] if len(keys) == 1 else (self.texts[0] if len(self.texts) == 1 else None)


Judge = Callable[[Record | None, KeyObservation], Finding]


async def fetch_key(resolver: AsyncResolver, name: str) -> KeyObservation:
    try:
        answer = await resolver.txt(name)
    except DnsError as err:
        return KeyObservation(name, (), error=str(err))
    return KeyObservation(name, answer.texts(), answer.cnames)


def declared_keys(ctx: CheckContext) -> list[Record]:
    """The declared DKIM records (TXT keys and CNAMEs to a provider's keys)."""
    return ctx.memo("planned:dkim", lambda: [r for r in ctx.planned if r.purpose == "dkim"])


async def observations(ctx: CheckContext) -> list[tuple[Record | None, KeyObservation]]:
    """(declared record, observation) per selector; --domain mode probes common ones
    and keeps those that exist."""
    async def compute() -> list[tuple[Record | None, KeyObservation]]:
        if ctx.declared:
            records = declared_keys(ctx)
            keys = await gather(fetch_key(ctx.dns, r.name) for r in records)
            return list(zip(records, keys))
        found: list[tuple[Record | None, KeyObservation]] = []
        for obs in await gather(fetch_key(ctx.dns, dkim.record_name(s, ctx.domain)) for s in COMMON_SELECTORS):
            if obs.texts or obs.error:
                found.append((None, obs))
            if obs.error:
                break  # the zone does not answer: one error says it, not nine
        return found
    return await ctx.observe("dkim-keys", compute)


def _fix(record: Record | None) -> str:
    if record is None:
        return "publish the key record your sender gives you at <selector>._domainkey.<domain>"
    if record.needs_gateway_key:
        return f"{zonefile.line(record)} (p= is the gateway's key; `pulumi up` publishes it)"
    return zonefile.line(record)


async def _each(ctx: CheckContext, id: str, judge: Judge) -> list[Finding]:
    items = await observations(ctx)
    if not items:
        what = "no DKIM record is declared" if ctx.declared else f"no key at the common selectors ({', '.join(COMMON_SELECTORS)})"
        return [skipped(id, what)]
    findings: list[Finding] = []
    for record, obs in items:
        if obs.error:
            findings.append(errored(id, f"{obs.name}: DNS error: {obs.error}"))
            continue
        findings.append(judge(record, obs))
    return findings


def _parsed(obs: KeyObservation) -> dkim.KeyRecord | None:
    if obs.text is None:
        return None
    try:
        return dkim.parse(obs.text)
    except dkim.DkimKeyError:
        return None


@check("dkim.resolves", ref="RFC 6376 §3.6.2")
async def resolves(ctx: CheckContext) -> list[Finding]:
    """Each declared selector resolves to one key record (following CNAMEs)."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        via = f" via {' -> '.join(obs.cnames)}" if obs.cnames else ""
        if not obs.texts:
            return failed("dkim.resolves", f"{obs.name}: no key record{via}", expected=record.content if record else "a DKIM key record", fix=_fix(record))
        if obs.text is None:
            return failed("dkim.resolves", f"{obs.name}: {len(obs.texts)} TXT records, none or several of them keys", found=" | ".join(obs.texts), fix=_fix(record))
        return passed("dkim.resolves", f"{obs.name}: key record found{via}")
    return await _each(ctx, "dkim.resolves", judge)


@check("dkim.cname", ref="RFC 6376 §3.6.2.1, RFC 1034 §3.6.2")
async def cname(ctx: CheckContext) -> list[Finding]:
    """A selector declared as a CNAME to a provider's key (Odoo, Microsoft 365: the
    targets the stack gives, or the formula) points at exactly that target: a CNAME to
    another key (the classic ``….onmicrosoft.com`` where the tenant now hands out
    ``….dkim.mail.microsoft``) may still resolve, but to a key the provider does not
    sign with. The key at the end is judged by the other ``dkim.*`` checks."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        if record is None or record.type != "CNAME":
            return skipped("dkim.cname", f"{obs.name}: not declared as a CNAME")
        found = obs.cnames[0] if obs.cnames else None
        if found == record.content:
            via = f" (then {' -> '.join(obs.cnames[1:])})" if len(obs.cnames) > 1 else ""
            return passed("dkim.cname", f"{obs.name}: CNAME to {found}{via}", found=found)
        what = f"a CNAME to {found}" if found else "not a CNAME"
        return failed("dkim.cname", f"{obs.name}: {what}, declared {record.content}", expected=record.content, found=found or "", fix=zonefile.line(record))
    return await _each(ctx, "dkim.cname", judge)


@check("dkim.syntax", ref="RFC 6376 §3.6.1")
async def syntax(ctx: CheckContext) -> list[Finding]:
    """The key record parses: tags, v=DKIM1, k= algorithm, p= a valid public key."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        if obs.text is None:
            return skipped("dkim.syntax", f"{obs.name}: no key record (see dkim.resolves)")
        try:
            parsed = dkim.parse(obs.text)
        except dkim.DkimKeyError as err:
            return failed("dkim.syntax", f"{obs.name}: {err}", found=obs.text, fix=_fix(record))
        return passed("dkim.syntax", f"{obs.name}: {parsed.algorithm} key record parses")
    return await _each(ctx, "dkim.syntax", judge)


@check("dkim.key-size", ref="RFC 8301 §3.2")
async def key_size(ctx: CheckContext) -> list[Finding]:
    """RSA keys have at least 1024 bits (fail) and 2048 advised (warn); ed25519 passes."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        parsed = _parsed(obs)
        if parsed is None or parsed.revoked:
            return skipped("dkim.key-size", f"{obs.name}: no usable key to measure")
        problem = dkim.size_problem(parsed)
        found = f"{parsed.algorithm} {parsed.bits} bits"
        if problem is None:
            return passed("dkim.key-size", f"{obs.name}: {found}", found=found)
        severity, message = problem
        make = failed if severity == "fail" else warned
        return make("dkim.key-size", f"{obs.name}: {message}", found=found, expected=f"rsa >= {dkim.ADVISED_RSA_BITS} bits or ed25519", fix="generate a 2048-bit key and publish it under a new selector")
    return await _each(ctx, "dkim.key-size", judge)


@check("dkim.revoked", ref="RFC 6376 §3.6.1 (p=)")
async def revoked(ctx: CheckContext) -> list[Finding]:
    """The key is not revoked (an empty p= makes every signature fail)."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        parsed = _parsed(obs)
        if parsed is None:
            return skipped("dkim.revoked", f"{obs.name}: no parsable key record")
        if parsed.revoked:
            return failed("dkim.revoked", f"{obs.name}: the key is revoked (empty p=)", found=obs.text or "", fix=_fix(record))
        return passed("dkim.revoked", f"{obs.name}: key not revoked")
    return await _each(ctx, "dkim.revoked", judge)


@check("dkim.testing", ref="RFC 6376 §3.6.1 (t=y)")
async def testing(ctx: CheckContext) -> list[Finding]:
    """The key is not in test mode (t=y asks verifiers to treat failures leniently)."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        parsed = _parsed(obs)
        if parsed is None:
            return skipped("dkim.testing", f"{obs.name}: no parsable key record")
        if parsed.testing:
            return warned("dkim.testing", f"{obs.name}: t=y, the domain is testing DKIM; remove t=y once signatures verify", found=obs.text or "", fix=_fix(record))
        return passed("dkim.testing", f"{obs.name}: not in test mode")
    return await _each(ctx, "dkim.testing", judge)


def _declared_key(ctx: CheckContext, record: Record | None) -> str | None:
    """The declared p= where it is known: a TXT key in the plan, or the gateway key."""
    if record is None or record.type != "TXT":
        return None
    if record.needs_gateway_key:
        return dkim.public_key_base64(ctx.gateway_key) if ctx.gateway_key else None
    return dkim.parse(record.content).public_key


@check("dkim.key-match", ref="RFC 6376 §3.6.2.2")
async def key_match(ctx: CheckContext) -> list[Finding]:
    """Where the declared key is known, the published key is the same key."""
    def judge(record: Record | None, obs: KeyObservation) -> Finding:
        declared = _declared_key(ctx, record)
        if declared is None:
            why = "no declaration" if record is None else ("a CNAME to the provider's key" if record.type == "CNAME" else "the gateway key is not given (--dkim-public-key)")
            return skipped("dkim.key-match", f"{obs.name}: declared key unknown ({why})")
        parsed = _parsed(obs)
        if parsed is None:
            return skipped("dkim.key-match", f"{obs.name}: no parsable key record")
        if parsed.public_key != declared:
            return failed("dkim.key-match", f"{obs.name}: the published key differs from the declared key; signatures with the declared key fail", expected=declared[:40] + "...", found=parsed.public_key[:40] + "...", fix=_fix(record))
        return passed("dkim.key-match", f"{obs.name}: published key equals the declared key")
    return await _each(ctx, "dkim.key-match", judge)


PROBE = (
    b"From: mailstack check <postmaster@{domain}>\r\n"
    b"To: probe@{domain}\r\n"
    b"Subject: mailstack DKIM probe\r\n"
    b"Message-ID: <dkim-probe@{domain}>\r\n"
    b"\r\n"
    b"This message is signed and verified locally; it is never sent.\r\n"
)


def sign_and_verify(resolver: Resolver, private_key: bytes, selector: str, domain: str) -> tuple[bool, str]:
    """Sign a probe with ``private_key`` as ``selector``/``domain``, verify it against
    DNS; raises DnsError when the key could not be fetched (undecided, not failed)."""
    message = PROBE.replace(b"{domain}", domain.encode())
    signature = dkimpy.sign(message, selector.encode(), domain.encode(), private_key, include_headers=[b"from", b"to", b"subject"])
    logs: list[str] = []

    class _Log:
        def debug(self, msg: str, *args: object) -> None:
            logs.append(msg % args if args else msg)
        info = warning = error = debug

    errors: list[DnsError] = []
    ok = bool(dkimpy.verify(signature + message, logger=_Log(), dnsfunc=dnsfunc(resolver, errors), minkey=1024))
    if errors:
        raise errors[0]
    return ok, "; ".join(logs[-3:])


@check("dkim.probe", ref="RFC 6376 §6")
async def probe(ctx: CheckContext) -> list[Finding]:
    """A probe message signed with the gateway's private key verifies against DNS (dkimpy)."""
    if ctx.stack is None or ctx.dkim_private_key is None:
        return [skipped("dkim.probe", "needs a declaration and the gateway's private key (--dkim-private-key)")]
    if not ctx.stack.sends_via(SenderKind.GATEWAY):
        return [skipped("dkim.probe", "no gateway sends for this domain")]
    stack, key = ctx.stack, ctx.dkim_private_key

    async def one(domain: str) -> Finding:
        name = dkim.record_name(stack.dkim.selector, domain)
        try:
            ok, log = await ctx.blocking(sign_and_verify, ctx.resolver, key, stack.dkim.selector, domain)
        except DnsError as err:
            return errored("dkim.probe", f"{domain}: DNS error: {err}")
        except dkimpy.DKIMException as err:
            return failed("dkim.probe", f"{domain}: the probe does not verify: {err}", fix="publish the gateway's current public key at " + name)
        if ok:
            return passed("dkim.probe", f"{domain}: a probe signed as {name} verifies")
        return failed("dkim.probe", f"{domain}: a probe signed as {name} does not verify against DNS", detail=log, fix="publish the gateway's current public key at " + name)

    return await gather(one(domain) for domain in stack.domains)
