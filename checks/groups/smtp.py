"""SMTP checks against each MX address (RFC 5321, RFC 3207): banner and EHLO, STARTTLS
offered with a certificate naming the MX host, no open relay, unknown recipients
rejected at RCPT, declared aliases and the role mailboxes postmaster@ and abuse@
accepted at RCPT. No message is ever sent."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

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
from mailstack.checks.groups import mx as mx_checks
from mailstack.checks.probes.smtp import SmtpObservation, name_matches, probe
from mailstack.core import names
from mailstack.core.model import InboundMode


def recipient_domain(ctx: CheckContext, domain: str | None = None) -> str:
    """The name mail for ``domain`` (default: the main domain) is addressed to."""
    domain = domain or ctx.domain
    return ctx.stack.inbound_domain(domain) if ctx.stack else domain


def declared_recipients(ctx: CheckContext) -> list[str]:
    """Addresses the gateway must accept, in every mail domain (alias domains too):
    Odoo's catchall and bounce, and the declared aliases."""
    if ctx.stack is None or not ctx.stack.gateways_receive:
        return []
    local_parts = list(dict.fromkeys([ctx.stack.odoo.catchall, ctx.stack.odoo.bounce, *ctx.stack.inbound.aliases]))
    return [f"{part}@{recipient_domain(ctx, d)}" for d in ctx.domains for part in local_parts]


#: The role mailboxes every mail domain answers (RFC 5321 §4.5.1: postmaster, a MUST;
#: RFC 2142 §4: abuse, where complaints about the domain's mail go).
ROLE_LOCAL_PARTS = ("postmaster", "abuse")


def role_recipients(ctx: CheckContext, local_part: str) -> list[str]:
    """``local_part@`` each name the domains receive mail at (alias domains too)."""
    return list(dict.fromkeys(f"{local_part}@{recipient_domain(ctx, d)}" for d in ctx.domains))


async def observations(ctx: CheckContext) -> list[SmtpObservation]:
    """One observation per address of each MX target of the inbound names (memoised);
    each session probes the recipients of every domain, so an MX shared by alias
    domains is connected to once. The sessions (blocking smtplib) run in the run's
    probe threads, all at once (at most ``--workers``)."""
    async def compute() -> list[SmtpObservation]:
        main = recipient_domain(ctx)
        unknown = f"no-such-user-{secrets.token_hex(6)}@{main}"
        wanted = list(dict.fromkeys([*declared_recipients(ctx), *(r for part in ROLE_LOCAL_PARTS for r in role_recipients(ctx, part))]))
        inbound = [recipient_domain(ctx, domain) for domain in ctx.domains]
        planned: list[SmtpObservation | tuple[str, str]] = [
            SmtpObservation(t.host, "", ctx.smtp.port, error=t.error) if isinstance(t, mx_checks.Unreachable) else t
            for t in await mx_checks.probe_targets(ctx, inbound)
        ]
        probed = iter(await gather(
            ctx.blocking(probe, p[0], p[1], ctx.smtp, unknown, wanted) for p in planned if isinstance(p, tuple)
        ))
        return [next(probed) if isinstance(p, tuple) else p for p in planned]
    return await ctx.observe("smtp", compute)


async def _each(ctx: CheckContext, id: str) -> tuple[list[SmtpObservation], list[Finding]]:
    if ctx.stack is not None and ctx.stack.inbound.mode is InboundMode.NONE:
        return [], [skipped(id, "the domain receives no mail (null MX)")]
    obs = await observations(ctx)
    if not obs:
        return [], [skipped(id, f"{recipient_domain(ctx)} has no MX host to connect to")]
    errors = [errored(id, f"{o.where}: {o.error}") for o in obs if o.error and o.banner is None]
    return [o for o in obs if not (o.error and o.banner is None)], errors


@check("smtp.banner", ref="RFC 5321 §3.1, §4.1.1.1")
async def banner(ctx: CheckContext) -> list[Finding]:
    """The server greets with 220 and accepts EHLO."""
    live, findings = await _each(ctx, "smtp.banner")
    for o in live:
        if o.error and o.banner and o.banner[0] == 220:
            findings.append(errored("smtp.banner", f"{o.where}: greeted, then {o.error}"))
        elif o.banner and o.banner[0] == 220 and o.ehlo and o.ehlo[0] == 250:
            findings.append(passed("smtp.banner", f"{o.where}: 220 {o.banner[1][:60]}"))
        else:
            findings.append(failed("smtp.banner", f"{o.where}: greeting {o.banner}, EHLO {o.ehlo}", expected="220 then 250", fix="check the MTA's smtpd service on port 25"))
    return findings


@check("smtp.starttls", ref="RFC 3207, RFC 8461 §4.1, RFC 6125 §6.4")
async def starttls(ctx: CheckContext) -> list[Finding]:
    """STARTTLS is offered, the handshake succeeds and the certificate names the MX host."""
    live, findings = await _each(ctx, "smtp.starttls")
    for o in live:
        if o.error:
            findings.append(errored("smtp.starttls", f"{o.where}: {o.error}"))
        elif not o.starttls_offered:
            findings.append(failed("smtp.starttls", f"{o.where}: STARTTLS not offered; mail arrives in clear text", fix="smtpd_tls_security_level = may, with smtpd_tls_chain_files set (Postfix)"))
        elif o.tls_error:
            findings.append(failed("smtp.starttls", f"{o.where}: {o.tls_error}", fix="install a valid certificate and key for the MX host name"))
        elif not name_matches(o.host, o.cert_names):
            findings.append(failed("smtp.starttls", f"{o.where}: certificate names {', '.join(o.cert_names) or 'nothing'}, not {o.host}", expected=o.host, found=", ".join(o.cert_names), fix=f"a certificate with subjectAltName DNS:{o.host}"))
        else:
            findings.append(passed("smtp.starttls", f"{o.where}: STARTTLS with a certificate for {o.host}"))
    return findings


@check("smtp.open-relay", ref="RFC 5321 §3.6.1, RFC 2505 §2")
async def open_relay(ctx: CheckContext) -> list[Finding]:
    """A recipient outside the domain is refused at RCPT from an unauthenticated client."""
    live, findings = await _each(ctx, "smtp.open-relay")
    for o in live:
        if o.relay is None:
            findings.append(errored("smtp.open-relay", f"{o.where}: {_why_no_rcpt(o)}"))
        elif refused_us(o.relay):
            findings.append(errored("smtp.open-relay", f"{o.where}: the server refused the probe itself ({o.relay[0]} {o.relay[1]}); relaying was not tested"))
        elif o.relay[0] in (250, 251):
            findings.append(failed("smtp.open-relay", f"{o.where}: OPEN RELAY, accepted RCPT to {ctx.smtp.relay_probe}: {o.relay[0]} {o.relay[1]}", fix="Postfix: smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination; mynetworks = 127.0.0.0/8 only"))
        else:
            findings.append(passed("smtp.open-relay", f"{o.where}: relaying refused ({o.relay[0]})"))
    return findings


@check("smtp.unknown-recipient", ref="RFC 5321 §3.3, §6.1 (reject at RCPT, no backscatter)")
async def unknown_recipient(ctx: CheckContext) -> list[Finding]:
    """An unknown local recipient is rejected at RCPT (no accept-then-bounce backscatter)."""
    if ctx.stack is not None and ctx.stack.inbound.accept_all:
        return [skipped("smtp.unknown-recipient", "the declaration accepts every local part (inbound.acceptAll)")]
    live, findings = await _each(ctx, "smtp.unknown-recipient")
    for o in live:
        if o.unknown is None:
            findings.append(errored("smtp.unknown-recipient", f"{o.where}: {_why_no_rcpt(o)}"))
        elif refused_us(o.unknown):
            findings.append(errored("smtp.unknown-recipient", f"{o.where}: the server refused the probe itself, not the recipient: {o.unknown[0]} {o.unknown[1]}", fix="run from a host with forward-confirmed reverse DNS and pass --smtp-helo with its name"))
        elif 500 <= o.unknown[0] < 600:
            findings.append(passed("smtp.unknown-recipient", f"{o.where}: unknown recipient rejected ({o.unknown[0]})"))
        elif 400 <= o.unknown[0] < 500:
            findings.append(warned("smtp.unknown-recipient", f"{o.where}: unknown recipient deferred ({o.unknown[0]} {o.unknown[1]})"))
        else:
            findings.append(failed("smtp.unknown-recipient", f"{o.where}: unknown recipient accepted ({o.unknown[0]}); the server will bounce later (backscatter)", fix="reject unknown recipients at RCPT (Postfix: relay_recipient_maps / transport_maps with smtpd_reject_unlisted_recipient)"))
    return findings


@check("smtp.aliases", ref="RFC 5321 §3.3")
async def aliases(ctx: CheckContext) -> list[Finding]:
    """Odoo's catchall and bounce addresses and every declared alias are accepted at RCPT."""
    wanted = declared_recipients(ctx)
    if not wanted:
        return [skipped("smtp.aliases", "no gateway aliases are declared" if ctx.declared else "needs a declaration (--stack)")]
    live, findings = await _each(ctx, "smtp.aliases")
    for o in live:
        if o.error or o.mail_refused:
            findings.append(errored("smtp.aliases", f"{o.where}: {_why_no_rcpt(o)}"))
            continue
        refused = {r: reply for r, reply in o.recipients.items() if r in wanted and reply[0] not in (250, 251)}
        if any(refused_us(reply) for reply in refused.values()):
            findings.append(errored("smtp.aliases", f"{o.where}: the server refused the probe itself, not the recipients", detail="; ".join(f"{r}: {c} {m}" for r, (c, m) in refused.items())))
        elif refused:
            detail = "; ".join(f"{r}: {c} {m}" for r, (c, m) in refused.items())
            findings.append(failed("smtp.aliases", f"{o.where}: {len(refused)} declared address(es) refused at RCPT", detail=detail, expected=", ".join(wanted), fix="add the aliases to the gateway's recipient and transport maps (`pulumi up`)"))
        else:
            findings.append(passed("smtp.aliases", f"{o.where}: {len(wanted)} declared addresses accepted"))
    return findings


def _roles(ctx: CheckContext, id: str, local_part: str, missing: Callable[..., Finding], why: str, fix: str) -> Awaitable[list[Finding]]:
    async def judge() -> list[Finding]:
        wanted = role_recipients(ctx, local_part)
        live, findings = await _each(ctx, id)
        for o in live:
            if o.error or o.mail_refused:
                findings.append(errored(id, f"{o.where}: {_why_no_rcpt(o)}"))
                continue
            replies = {r: o.recipients[r] for r in wanted if r in o.recipients}
            refused = {r: reply for r, reply in replies.items() if reply[0] not in (250, 251)}
            detail = "; ".join(f"{r}: {c} {m}" for r, (c, m) in refused.items())
            if any(refused_us(reply) for reply in refused.values()):
                findings.append(errored(id, f"{o.where}: the server refused the probe itself, not {local_part}@", detail=detail))
            elif refused:
                findings.append(missing(id, f"{o.where}: {', '.join(refused)} refused at RCPT; {why}", detail=detail, expected="250", fix=fix))
            else:
                findings.append(passed(id, f"{o.where}: {', '.join(replies)} accepted"))
        return findings
    return judge()


@check("smtp.postmaster", ref="RFC 5321 §4.5.1")
async def postmaster(ctx: CheckContext) -> list[Finding]:
    """postmaster@ of every mail domain is accepted at RCPT by every MX (RFC 5321 requires it)."""
    return await _roles(
        ctx, "smtp.postmaster", "postmaster", failed, "RFC 5321 requires every mail domain to accept it",
        "accept postmaster@ and route it to a mailbox somebody reads (mailstack gateways: mailstack:inbound.postmaster)",
    )


@check("smtp.abuse", ref="RFC 2142 §2, §4")
async def abuse(ctx: CheckContext) -> list[Finding]:
    """abuse@ of every mail domain is accepted at RCPT by every MX (where complaints about its mail go)."""
    return await _roles(
        ctx, "smtp.abuse", "abuse", warned, "complaints about the domain's mail bounce, and some receivers judge a domain by it",
        "accept abuse@ and route it to a mailbox somebody reads (mailstack gateways: mailstack:inbound.postmaster)",
    )


def _why_no_rcpt(o: SmtpObservation) -> str:
    if o.mail_refused:
        return f"MAIL FROM:<> refused ({o.mail_refused[0]} {o.mail_refused[1]}); RCPT could not be probed"
    return o.error or "no RCPT answer"


#: Postfix's (and most MTAs') wording when a restriction on the client, its HELO name or
#: the sender refuses RCPT: the answer says nothing about the recipient.
_PROBE_REFUSED = ("helo command rejected", "client host rejected", "sender address rejected")


def refused_us(reply: tuple[int, str]) -> bool:
    """True when an RCPT refusal is about the probing client, not the recipient."""
    return reply[0] >= 400 and any(text in reply[1].lower() for text in _PROBE_REFUSED)
