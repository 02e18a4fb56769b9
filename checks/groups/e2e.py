"""The ``e2e`` group: prove delivery and routing with real messages (RFC 7208, 6376, 7489).

Outbound (``e2e.outbound.*``): one probe sent as Odoo sends it, judged by the recipient
MTA: it arrived, SPF passed for the gateway's address, DKIM passed with d= the stack's
domain (dkimpy, and OpenDKIM as an independent verifier), DMARC passed aligned.
Inbound (``e2e.inbound.to|cc|bcc``): for each declared alias, one probe per header
form from the outside sender via the domain's MX, found in Odoo by Message-ID, its
body unchanged, routed to that alias.

Probes send real mail, so the group only runs when ``MAILSTACK_E2E=1`` (``mailstack
lab check`` sets it); otherwise each check reports ``skip`` and says how to enable it.
Anything that keeps a probe from being judged (DNS failure, refused connection, a
verdict of temperror, no arrival in time) is ``error``, never ``pass``.
"""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped
from mailstack.checks.engine.registry import check
from mailstack.checks.probes import e2e as e2e_probe
from mailstack.checks.probes.e2e import (
    E2eSettings,
    OdooClient,
    Probe,
    ProbeError,
    ProbeRejected,
)
from mailstack.core.model import InboundMode

MODES = ("to", "cc", "bcc")
DISABLED = "end-to-end probes send real mail: set MAILSTACK_E2E=1 to run them (mailstack lab check does)"


@dataclass(frozen=True, slots=True)
class OutboundResult:
    """The outbound probe and what the recipient recorded (None: not arrived / not sent)."""

    probe: Probe | None
    entry: dict[str, Any] | None
    error: str = ""
    rejected: str = ""


def _settings(ctx: CheckContext) -> E2eSettings:
    return ctx.memo("e2e:settings", E2eSettings.from_env)


def _gate(ctx: CheckContext, check_id: str) -> Finding | None:
    """A skip finding when the group must not run here, else None."""
    if not _settings(ctx).enabled:
        return skipped(check_id, DISABLED)
    if ctx.stack is None or not ctx.stack.gateways:
        return skipped(check_id, "needs a declaration with gateways (--stack/--stack-file)")
    return None


# -- outbound --------------------------------------------------------------------------


def _outbound(ctx: CheckContext) -> OutboundResult:
    settings, stack = _settings(ctx), ctx.stack
    assert stack is not None
    if not settings.recipient or settings.recipient_spool is None:
        return OutboundResult(None, None, error="no recipient MTA to judge the probe: set MAILSTACK_E2E_RECIPIENT and MAILSTACK_E2E_RECIPIENT_SPOOL")
    domain = stack.domain
    message_id = e2e_probe.new_message_id("out", domain)
    mail_from = f"{stack.odoo.bounce}@{domain}"
    headers = {
        "From": f'"Odoo" <{stack.odoo.notifications}@{domain}>',
        "To": settings.recipient,
        "Subject": "mailstack e2e outbound probe",
    }
    raw, body = e2e_probe.build(message_id, headers, "outbound")
    host, port = settings.submit or (stack.gateways[0].ipv4, 25)
    try:
        sent = e2e_probe.submit(host, port, mail_from, [settings.recipient], raw, source=settings.submit_source, helo=f"odoo.{domain}")
    except ProbeRejected as err:
        return OutboundResult(None, None, rejected=str(err))
    except ProbeError as err:
        return OutboundResult(None, None, error=str(err))
    probe = Probe(message_id, mail_from, (settings.recipient,), raw, body, sent, "outbound")
    entry = e2e_probe.wait_for_recipient(settings.recipient_spool, message_id, sent + settings.wait)
    if entry is None:
        return OutboundResult(probe, None, error=f"not arrived at {settings.recipient} within {settings.wait:g}s: delayed or lost (see the gateway's queue)")
    return OutboundResult(probe, entry)


def _judged(ctx: CheckContext, check_id: str) -> tuple[OutboundResult, Finding | None]:
    """The shared outbound probe, or the finding that stops this check."""
    gate = _gate(ctx, check_id)
    if gate:
        return OutboundResult(None, None), gate
    result = ctx.memo("e2e:outbound", lambda: _outbound(ctx))
    if result.rejected:
        return result, failed(check_id, f"the gateway refused the outbound probe: {result.rejected}")
    if result.entry is None:
        return result, errored(check_id, f"outbound probe not judged: {result.error}")
    return result, None


def _elapsed(result: OutboundResult) -> str:
    assert result.probe and result.entry
    return f"{float(result.entry['received_at']) - result.probe.sent_at:.2f}s"


@check("e2e.outbound.delivery", group="e2e", ref="RFC 5321 §3.6")
def outbound_delivery(ctx: CheckContext) -> list[Finding]:
    """An Odoo-style message submitted to the gateway reaches the recipient's MX."""
    result, stop = _judged(ctx, "e2e.outbound.delivery")
    if stop:
        return [stop]
    assert result.probe and result.entry
    return [passed(
        "e2e.outbound.delivery",
        f"probe {result.probe.message_id} arrived at {', '.join(result.entry['rcpt_tos'])} in {_elapsed(result)} from {result.entry['client_ip']}",
        detail=f"MAIL FROM {result.entry['mail_from']}, HELO {result.entry['helo']}",
    )]


def _verdict_finding(check_id: str, result: str, subject: str, reason: str, expected: str, ok: bool) -> Finding:
    if result in ("temperror", "unavailable"):
        return errored(check_id, f"{subject}: {result}, could not decide", detail=reason)
    if ok:
        return passed(check_id, f"{subject}: {result}", detail=reason, expected=expected, found=result)
    return failed(check_id, f"{subject}: {result}", detail=reason, expected=expected, found=result)


@check("e2e.outbound.spf", group="e2e", ref="RFC 7208 §2.6")
def outbound_spf(ctx: CheckContext) -> list[Finding]:
    """SPF passes at the recipient for the gateway's address and the bounce domain."""
    result, stop = _judged(ctx, "e2e.outbound.spf")
    if stop:
        return [stop]
    assert result.entry and ctx.stack
    verdict = result.entry["verdict"]
    gateways = {g.ipv4 for g in ctx.stack.gateways} | {g.ipv6 for g in ctx.stack.gateways if g.ipv6}
    ok = verdict["spf"] == "pass" and result.entry["client_ip"] in gateways
    subject = f"SPF for {result.entry['client_ip']} / {verdict['spf_domain']}"
    return [_verdict_finding("e2e.outbound.spf", verdict["spf"], subject, verdict["spf_reason"], f"pass from a gateway ({', '.join(sorted(gateways))})", ok)]


@check("e2e.outbound.dkim", group="e2e", ref="RFC 6376 §6")
def outbound_dkim(ctx: CheckContext) -> list[Finding]:
    """A DKIM signature with d= the stack's domain verifies at the recipient (dkimpy)."""
    result, stop = _judged(ctx, "e2e.outbound.dkim")
    if stop:
        return [stop]
    assert result.entry and ctx.stack
    signatures = result.entry["verdict"]["dkim"]
    domain = ctx.stack.domain
    ours = [s for s in signatures if s["domain"] == domain]
    found = "; ".join(f"d={s['domain']} s={s['selector']}: {s['result']}{' (' + s['reason'] + ')' if s['reason'] else ''}" for s in signatures) or "no DKIM-Signature"
    ok = any(s["result"] == "pass" for s in ours)
    return [_verdict_finding("e2e.outbound.dkim", "pass" if ok else "fail", f"DKIM d={domain}", found, f"a passing signature with d={domain}, s={ctx.stack.dkim.selector}", ok)]


@check("e2e.outbound.dkim-opendkim", group="e2e", ref="RFC 6376 §6")
def outbound_dkim_opendkim(ctx: CheckContext) -> list[Finding]:
    """OpenDKIM's own verifier (opendkim-testmsg) agrees the signature is good."""
    result, stop = _judged(ctx, "e2e.outbound.dkim-opendkim")
    if stop:
        return [stop]
    assert result.entry
    verdict = result.entry["verdict"]
    return [_verdict_finding("e2e.outbound.dkim-opendkim", verdict["opendkim"], "opendkim-testmsg", verdict["opendkim_reason"], "pass", verdict["opendkim"] == "pass")]


@check("e2e.outbound.dmarc", group="e2e", ref="RFC 7489 §3.1, §6.6")
def outbound_dmarc(ctx: CheckContext) -> list[Finding]:
    """DMARC passes at the recipient with an aligned identifier."""
    result, stop = _judged(ctx, "e2e.outbound.dmarc")
    if stop:
        return [stop]
    assert result.entry
    verdict = result.entry["verdict"]
    subject = f"DMARC for From domain {verdict['from_domain']} (p={verdict['dmarc_policy']})"
    return [_verdict_finding("e2e.outbound.dmarc", verdict["dmarc"], subject, verdict["dmarc_reason"], "pass (aligned SPF or DKIM)", verdict["dmarc"] == "pass")]


# -- inbound ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundResult:
    """Per (mode, alias address): the probe and what Odoo holds for it."""

    probes: dict[tuple[str, str], Probe]
    found: dict[tuple[str, str], tuple[list[dict[str, Any]], float | None, str]]
    error: str = ""
    rejected: dict[tuple[str, str], str] | None = None
    #: Per alias address: the model of Odoo's alias (None: Odoo has no such alias).
    models: dict[str, str | None] | None = None


def _targets(ctx: CheckContext) -> list[str]:
    stack = ctx.stack
    assert stack is not None
    return [f"{alias}@{stack.inbound_domain(d)}" for d in stack.domains for alias in stack.inbound.aliases]


def _mx_address(ctx: CheckContext, domain: str) -> str:
    """The address of the most preferred MX of ``domain`` (raises DnsError)."""
    answer = ctx.resolver.query(domain, "MX")
    hosts = sorted(answer.mx())
    if not hosts:
        raise ProbeError(f"{domain} has no MX")
    addresses = ctx.resolver.addresses(hosts[0][1])
    if not addresses:
        raise ProbeError(f"MX {hosts[0][1]} has no address")
    return addresses[0]


def _inbound(ctx: CheckContext) -> InboundResult:
    settings, stack = _settings(ctx), ctx.stack
    assert stack is not None
    if not (settings.odoo_login and settings.odoo_password and stack.odoo.url and stack.odoo.database):
        return InboundResult({}, {}, error="needs Odoo's URL and database (stack) and MAILSTACK_ODOO_LOGIN/MAILSTACK_ODOO_PASSWORD")
    sender_domain = settings.sender.rsplit("@", 1)[1]
    probes: dict[tuple[str, str], Probe] = {}
    rejected: dict[tuple[str, str], str] = {}
    for target in _targets(ctx):
        domain = target.rsplit("@", 1)[1]
        mx = _mx_address(ctx, domain)  # DnsError propagates: the check reports error
        for mode in MODES:
            message_id = e2e_probe.new_message_id(f"in-{mode}", sender_domain)
            sender = e2e_probe.probe_sender(settings.sender, message_id)
            headers = {"From": sender, "Subject": f"mailstack e2e inbound probe ({mode} {target})"}
            if mode == "to":
                headers["To"] = target
            else:
                headers["To"] = sender
                if mode == "cc":
                    headers["Cc"] = target
            raw, body = e2e_probe.build(message_id, headers, f"inbound-{mode}")
            try:
                sent = e2e_probe.submit(mx, 25, sender, [target], raw, source=settings.sender_source, helo=f"mx.{sender_domain}")
            except ProbeRejected as err:
                rejected[(mode, target)] = str(err)
                continue
            probes[(mode, target)] = Probe(message_id, sender, (target,), raw, body, sent, mode)
    client = OdooClient(stack.odoo.url, stack.odoo.database, settings.odoo_login, settings.odoo_password)
    found = {}
    for key, probe in probes.items():
        found[key] = e2e_probe.wait_for_odoo(client, probe.message_id, probe.sent_at + settings.wait)
    models: dict[str, str | None] = {}
    for target in {t for _, t in probes}:
        try:
            models[target] = client.alias_model(target)
        except (OSError, PermissionError, xmlrpc.client.Error):
            models[target] = None
    return InboundResult(probes, found, rejected=rejected, models=models)


def _stored_body(settings: E2eSettings, message_id: str) -> bytes | None:
    """The body Odoo stored (lab stand-in's SQLite), None where not readable."""
    if settings.odoo_store is None or not settings.odoo_store.exists():
        return None
    import sqlite3

    with sqlite3.connect(settings.odoo_store) as db:
        row = db.execute("SELECT raw FROM messages WHERE message_id = ? ORDER BY id", (message_id,)).fetchone()
    if row is None:
        return None
    raw = bytes(row[0]).replace(b"\r\n", b"\n")
    return raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""


def _inbound_findings(ctx: CheckContext, mode: str) -> list[Finding]:
    check_id = f"e2e.inbound.{mode}"
    gate = _gate(ctx, check_id)
    if gate:
        return [gate]
    if not ctx.stack or not ctx.stack.inbound.aliases:
        return [skipped(check_id, "the stack declares no inbound aliases")]
    if ctx.stack.inbound.mode is not InboundMode.GATEWAY:
        return [skipped(check_id, f"inbound mode is {ctx.stack.inbound.mode.value}, not gateway")]
    result = ctx.memo("e2e:inbound", lambda: _inbound(ctx))
    if result.error:
        return [errored(check_id, f"inbound probes not sent: {result.error}")]
    settings = _settings(ctx)
    findings: list[Finding] = []
    for target in _targets(ctx):
        key = (mode, target)
        if result.rejected and key in result.rejected:
            findings.append(failed(check_id, f"{target} ({mode}): refused: {result.rejected[key]}"))
            continue
        probe = result.probes[key]
        records, when, last_error = result.found[key]
        if not records:
            why = f" (last error: {last_error})" if last_error else ""
            findings.append(errored(check_id, f"{target} ({mode}): {probe.message_id} not in Odoo within {settings.wait:g}s{why}"))
            continue
        problems = []
        if len(records) != 1:
            problems.append(f"{len(records)} mail.message records (duplicate delivery)")
        model = (result.models or {}).get(target)
        if model is None:
            problems.append(f"Odoo has no alias {target}")
        elif records[0].get("model") != model:
            problems.append(f"posted on {records[0].get('model')}, not on {model} the alias {target} creates (original recipient lost)")
        stored = _stored_body(settings, probe.message_id)
        expected_body = probe.body.replace(b"\r\n", b"\n")
        html_body = records[0].get("body")
        token = probe.message_id.strip("<>").split("@", 1)[0]
        if stored is not None:
            body_note = "body byte-identical (line ends as delivered, LF)"
            if stored != expected_body:
                problems.append("the body Odoo stored differs from the body sent")
        elif isinstance(html_body, str) and html_body:
            body_note = "body not compared byte for byte (Odoo keeps an HTML rendering), probe token present"
            if token not in html_body:
                problems.append("the probe's text is missing from the body Odoo stored")
        else:
            body_note = "body not compared (Odoo returned no body)"
        elapsed = f"{(when or probe.sent_at) - probe.sent_at:.2f}s"
        if problems:
            findings.append(failed(check_id, f"{target} ({mode}): {'; '.join(problems)}", detail=probe.message_id))
        else:
            findings.append(passed(check_id, f"{target} ({mode}): in Odoo after {elapsed}, {body_note}", detail=f"{probe.message_id} → mail.message {records[0].get('id')}"))
    return findings


@check("e2e.inbound.to", group="e2e", ref="Odoo 17 mail gateway (message_process)")
def inbound_to(ctx: CheckContext) -> list[Finding]:
    """A message To an alias reaches Odoo by MX → gateway → mailgate."""
    return _inbound_findings(ctx, "to")


@check("e2e.inbound.cc", group="e2e", ref="Odoo 17 mail gateway (message_process)")
def inbound_cc(ctx: CheckContext) -> list[Finding]:
    """A message with an alias in Cc reaches Odoo."""
    return _inbound_findings(ctx, "cc")


@check("e2e.inbound.bcc", group="e2e", ref="Odoo 17 mail gateway (Delivered-To routing)")
def inbound_bcc(ctx: CheckContext) -> list[Finding]:
    """A message Bcc'd to an alias reaches Odoo: the original recipient survives."""
    return _inbound_findings(ctx, "bcc")
