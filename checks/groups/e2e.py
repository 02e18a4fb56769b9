"""The ``e2e`` group, outbound: every declared sender proven by a real message
(RFC 7208, 6376, 7489).

``e2e.outbound.<sender>`` — ``gateway``, ``odoo``, ``microsoft``, ``google``, ``mailjet``,
and ``spf-<n>`` for the n-th raw SPF sender — sends one probe per sending name of the
plan and one per route (each gateway, over IPv4 and, where it has one, IPv6), built the
way that sender builds mail: From ``notifications@<name>``, the envelope sender of the
sender's profile (``mailstack.rules.senders``: ``bounce@<db>.odoo.com`` on Odoo's
servers, the service's bounce domain for Mailjet, ``bounce@<name>`` through a gateway).
A gateway probe is submitted to the gateway's submission port from Odoo's address; a
third party's to that service's submission endpoint (in the lab, the simulated
service). The probe passes when the receiving server nobody here wrote (OpenDKIM,
OpenDMARC, policyd-spf in the lab) says SPF pass, DKIM pass with ``d=<name>`` (senders
that sign), DMARC pass — and the second opinion (pyspf, dkimpy,
``mailstack.rules.dmarc``) agrees; a disagreement fails too.

Probes send real mail, so the group only runs when ``MAILSTACK_E2E=1`` (``mailstack
lab check`` sets it); otherwise each check reports ``skip`` and says how to enable it.
Anything that keeps a probe from being judged (DNS failure, refused connection, a
verdict of temperror, no arrival in time) is ``error``, never ``pass``.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass, field

from mailstack.checks.dns.resolver import DnsError
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped
from mailstack.checks.engine.registry import check
from mailstack.checks.probes import e2e as e2e_probe
from mailstack.checks.probes import verdicts
from mailstack.checks.probes.e2e import E2eSettings, MaildirIndex, ProbeError, ProbeRejected
from mailstack.core.model import MailDomain, Sender, SenderKind
from mailstack.rules import senders

DISABLED = "end-to-end probes send real mail: set MAILSTACK_E2E=1 to run them (mailstack lab check does)"
SENDER_IDS = {
    SenderKind.GATEWAY: "gateway", SenderKind.ODOO: "odoo", SenderKind.MICROSOFT: "microsoft",
    SenderKind.GOOGLE: "google", SenderKind.MAILJET: "mailjet",
}


def settings(ctx: CheckContext) -> E2eSettings:
    return ctx.memo("e2e:settings", E2eSettings.from_env)


def gate(ctx: CheckContext, check_id: str) -> Finding | None:
    """A skip finding when the group must not run here, else None."""
    if not settings(ctx).enabled:
        return skipped(check_id, DISABLED)
    if ctx.stack is None:
        return skipped(check_id, "needs a declaration (--stack/--stack-file)")
    return None


def maildir(ctx: CheckContext) -> MaildirIndex | None:
    root = settings(ctx).maildir
    return ctx.memo("e2e:maildir", lambda: MaildirIndex(root)) if root else None


@dataclass(frozen=True, slots=True)
class OutboundSpec:
    """One outbound probe: who sends it, as whom, where it is submitted, where it goes."""

    check_id: str
    name: str  # the sending name (From domain, and the d= expected)
    from_address: str
    mail_from: str
    recipient: str
    submit: tuple[str, int]
    source: str | None
    route: str
    signs: bool
    expected_client: tuple[str, ...] = ()
    note: str = ""
    #: SMTP AUTH (user, password) at the submission port (``gateway.smtpAuth``).
    login: tuple[str, str] | None = field(default=None, repr=False)


def _signs(stack: MailDomain, sender: Sender, name: str, ctx: CheckContext) -> bool:
    return bool(senders.dkim_entries(stack, sender, name, ctx.gateway_key))


def _gateway_specs(ctx: CheckContext, sender: Sender, settings_: E2eSettings, check_id: str) -> list[OutboundSpec]:
    stack = ctx.stack
    assert stack is not None and settings_.recipient
    names = ctx.plan.all_sending_names if ctx.plan else (stack.domain,)
    routes: list[tuple[tuple[str, int], str, str, tuple[str, ...]]] = []
    if settings_.submit:
        routes = [(endpoint, f"via {endpoint[0]}:{endpoint[1]}", settings_.recipient, ()) for endpoint in settings_.submit]
    else:
        for gateway in stack.gateways:
            routes.append(((gateway.ipv4, e2e_probe.SUBMISSION_PORT), f"via {gateway.hostname} over IPv4", settings_.recipient, (gateway.ipv4,)))
            if gateway.ipv6 and settings_.recipient_ipv6:
                routes.append(((gateway.ipv4, e2e_probe.SUBMISSION_PORT), f"via {gateway.hostname} over IPv6", settings_.recipient_ipv6, (gateway.ipv6,)))
    if settings_.submit_login:  # what proves Odoo's SMTP AUTH: only the login lets it through
        routes = [(endpoint, f"{route} with SMTP AUTH as {settings_.submit_login[0]}", recipient, expected)
                  for endpoint, route, recipient, expected in routes]
    pairs = [(name, routes[0]) for name in names] + [(names[0], route) for route in routes[1:]]
    odoo = stack.odoo
    return [
        OutboundSpec(check_id, name, f"{odoo.notifications}@{name}", f"{odoo.bounce}@{name}", recipient, endpoint,
                     settings_.submit_source, route, _signs(stack, sender, name, ctx), expected, login=settings_.submit_login)
        for name, (endpoint, route, recipient, expected) in pairs
    ]


def _third_party_specs(ctx: CheckContext, sender: Sender, sender_id: str, check_id: str) -> list[OutboundSpec]:
    stack, settings_ = ctx.stack, settings(ctx)
    assert stack is not None and settings_.recipient
    names = ctx.plan.all_sending_names if ctx.plan else (stack.domain,)
    endpoints = settings_.third_parties.get(sender_id, ())
    pairs = [(name, endpoints[0]) for name in names] + [(names[0], e) for e in endpoints[1:]]
    specs = []
    for name, party in pairs:
        from_address = f"{stack.odoo.notifications}@{name}"
        return_domain = senders.return_path_domain(stack, sender, name)
        if sender.kind is SenderKind.ODOO:
            mail_from = f"{stack.odoo.bounce}@{return_domain}"
        else:
            mail_from = from_address  # the service keeps it, or rewrites it (Mailjet)
        ipv6 = ":" in party.submit[0]
        recipient = settings_.recipient_ipv6 if ipv6 and settings_.recipient_ipv6 else settings_.recipient
        specs.append(OutboundSpec(check_id, name, from_address, mail_from, recipient, party.submit, party.source,
                                  f"through {sender_id}'s servers ({party.submit[0]})", _signs(stack, sender, name, ctx), note=party.note))
    return specs


@dataclass(frozen=True, slots=True)
class Sent:
    spec: OutboundSpec
    message_id: str = ""
    sent_at: float = 0.0
    rejected: str = ""
    error: str = ""


def _send(spec: OutboundSpec) -> Sent:
    message_id = e2e_probe.new_message_id("out", spec.name)
    headers = {"From": f'"Odoo" <{spec.from_address}>', "To": spec.recipient, "Subject": f"mailstack e2e outbound probe ({spec.check_id})"}
    raw, _ = e2e_probe.build(message_id, headers, spec.check_id)
    try:
        sent_at = e2e_probe.submit(spec.submit[0], spec.submit[1], spec.mail_from, [spec.recipient], raw, source=spec.source, helo=f"odoo.{spec.name}",
                                   login=spec.login)
    except ProbeRejected as err:
        return Sent(spec, message_id, rejected=str(err))
    except ProbeError as err:
        return Sent(spec, message_id, error=str(err))
    return Sent(spec, message_id, sent_at)


def judge(ctx: CheckContext, sent: Sent) -> Finding:
    """One probe's finding, from the receiver's headers and the second opinion."""
    spec, settings_ = sent.spec, settings(ctx)
    subject = f"{spec.from_address} {spec.route}"
    if sent.rejected:
        return failed(spec.check_id, f"{subject}: refused at submission: {sent.rejected}")
    if sent.error:
        return errored(spec.check_id, f"{subject}: not sent: {sent.error}")
    index = maildir(ctx)
    assert index is not None and settings_.authserv_id
    delivery = index.wait(sent.message_id, sent.sent_at + settings_.wait)
    if delivery is None:
        return errored(spec.check_id, f"{subject}: {sent.message_id} not delivered to {spec.recipient} within {settings_.wait:g}s (see the sender's queue and log)")
    receiver = verdicts.receiver_verdict(delivery.raw, settings_.authserv_id)
    seen = verdicts.envelope(delivery.raw, settings_.authserv_id)
    try:
        second = verdicts.second_opinion(delivery.raw, seen, ctx.resolver)
    except DnsError as err:
        return errored(spec.check_id, f"{subject}: the second opinion could not query DNS: {err}", detail=receiver.summary())
    detail = f"{receiver.judge}: {receiver.summary()}; {second.judge}: {second.summary()}; client {seen.client_ip}, MAIL FROM <{seen.mail_from}>"
    if spec.note:
        detail += f"; {spec.note}"
    elapsed = f"{delivery.found_at - sent.sent_at:.2f}s"
    results = (receiver.spf, receiver.dmarc, *(d.result for d in receiver.dkim))
    if any(r in ("temperror",) for r in results):
        return errored(spec.check_id, f"{subject}: the receiver could not decide: {receiver.summary()}", detail=detail)
    problems = []
    if receiver.spf != "pass":
        problems.append(f"SPF {receiver.spf}")
    if spec.signs and not receiver.dkim_passes(spec.name):
        problems.append(f"no passing DKIM signature with d={spec.name} ({receiver.dkim_summary})")
    if receiver.dmarc != "pass":
        problems.append(f"DMARC {receiver.dmarc}")
    if spec.expected_client and seen.client_ip not in spec.expected_client:
        problems.append(f"sent from {seen.client_ip}, not {', '.join(spec.expected_client)}")
    problems += [f"the judges disagree: {d}" for d in verdicts.disagreements(receiver, second)]
    if problems:
        return failed(spec.check_id, f"{subject}: {'; '.join(problems)}", detail=detail, expected="spf=pass dkim=pass dmarc=pass", found=receiver.summary())
    return passed(spec.check_id, f"{subject}: {receiver.summary()} at {settings_.authserv_id} after {elapsed}", detail=detail)


def _run(ctx: CheckContext, specs: list[OutboundSpec]) -> list[Finding]:
    with cf.ThreadPoolExecutor(max_workers=min(8, len(specs))) as pool:
        sent = list(pool.map(_send, specs))
        return list(pool.map(lambda s: judge(ctx, s), sent))


def _prerequisite(ctx: CheckContext, check_id: str) -> Finding | None:
    settings_ = settings(ctx)
    if not settings_.recipient or settings_.maildir is None or not settings_.authserv_id:
        return errored(check_id, "no receiving server to judge the probe: set MAILSTACK_E2E_RECIPIENT, MAILSTACK_E2E_MAILDIR "
                                 "and MAILSTACK_E2E_AUTHSERV_ID (mailstack lab check does)")
    return None


def _outbound(ctx: CheckContext, kind: SenderKind) -> list[Finding]:
    sender_id = SENDER_IDS[kind]
    check_id = f"e2e.outbound.{sender_id}"
    stop = gate(ctx, check_id)
    if stop:
        return [stop]
    assert ctx.stack is not None
    sender = ctx.stack.sender(kind)
    if sender is None:
        return [skipped(check_id, f"the stack declares no {sender_id} sender")]
    stop = _prerequisite(ctx, check_id)
    if stop:
        return [stop]
    if kind is SenderKind.GATEWAY:
        return _run(ctx, _gateway_specs(ctx, sender, settings(ctx), check_id))
    if not settings(ctx).third_parties.get(sender_id):
        return [skipped(check_id, f"needs {sender_id}'s servers to send a probe: MAILSTACK_E2E_THIRD_PARTIES names their submission "
                                  "endpoint (the lab simulates them: mailstack lab check)")]
    return _run(ctx, _third_party_specs(ctx, sender, sender_id, check_id))


@check("e2e.outbound.gateway", group="e2e", ref="RFC 7208 §2.6, RFC 6376 §6, RFC 7489 §6.6")
def outbound_gateway(ctx: CheckContext) -> list[Finding]:
    """Mail Odoo submits to each gateway passes SPF, DKIM and DMARC at the receiver."""
    return _outbound(ctx, SenderKind.GATEWAY)


@check("e2e.outbound.odoo", group="e2e", ref="RFC 6376 §6, RFC 7489 §6.6; Odoo 17 docs (custom domain)")
def outbound_odoo(ctx: CheckContext) -> list[Finding]:
    """Mail Odoo's servers send for the domain passes DMARC through DKIM d=<domain>."""
    return _outbound(ctx, SenderKind.ODOO)


@check("e2e.outbound.microsoft", group="e2e", ref="RFC 7208 §2.6, RFC 6376 §6, RFC 7489 §6.6")
def outbound_microsoft(ctx: CheckContext) -> list[Finding]:
    """Mail Microsoft 365 sends for the domain passes SPF, DKIM (selector1) and DMARC."""
    return _outbound(ctx, SenderKind.MICROSOFT)


@check("e2e.outbound.google", group="e2e", ref="RFC 7208 §2.6, RFC 6376 §6, RFC 7489 §6.6")
def outbound_google(ctx: CheckContext) -> list[Finding]:
    """Mail Google Workspace sends for the domain passes SPF, DKIM and DMARC."""
    return _outbound(ctx, SenderKind.GOOGLE)


@check("e2e.outbound.mailjet", group="e2e", ref="RFC 6376 §6, RFC 7489 §6.6")
def outbound_mailjet(ctx: CheckContext) -> list[Finding]:
    """Mail Mailjet sends for the domain passes DMARC through DKIM (its Return-Path is Mailjet's)."""
    return _outbound(ctx, SenderKind.MAILJET)


@check("e2e.outbound.spf", group="e2e", ref="RFC 7208 §2.6, RFC 7489 §6.6")
def outbound_spf(ctx: CheckContext) -> list[Finding]:
    """Each raw SPF sender (finding ids ``e2e.outbound.spf-<n>``) passes SPF and DMARC."""
    stop = gate(ctx, "e2e.outbound.spf")
    if stop:
        return [stop]
    assert ctx.stack is not None
    raw = [s for s in ctx.stack.outbound if s.kind is SenderKind.SPF]
    if not raw:
        return [skipped("e2e.outbound.spf", "the stack declares no raw SPF sender")]
    stop = _prerequisite(ctx, "e2e.outbound.spf")
    if stop:
        return [stop]
    findings: list[Finding] = []
    for number, sender in enumerate(raw, start=1):
        sender_id = f"spf-{number}"
        check_id = f"e2e.outbound.{sender_id}"
        if not settings(ctx).third_parties.get(sender_id):
            findings.append(skipped(check_id, f"no host to send as {' '.join(sender.spf_terms)}: MAILSTACK_E2E_THIRD_PARTIES names none "
                                              "(the lab simulates ip4:, ip6:, a: and include: terms)"))
            continue
        findings += _run(ctx, _third_party_specs(ctx, sender, sender_id, check_id))
    return findings
