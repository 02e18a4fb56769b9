"""The ``e2e`` group, inbound: mail from outside reaches Odoo (or the mailbox provider).

``e2e.inbound.<path>.<to|cc|bcc>``, ``<path>`` being how the stack receives:
``gateway`` (MX → own gateways → mailgate → Odoo), ``odoo`` (MX or CNAME to
``<db>.odoo.com``: Odoo's servers → the database), ``imap`` and ``forward`` (MX to the
mailbox provider). For each address Odoo receives on — each declared alias on each
inbound name, or the probe alias ``MAILSTACK_E2E_ALIAS`` where none is declared and
the receiving side takes any address Odoo has — one probe from the outside sender
with the address in To, one in Cc and one only in the envelope (Bcc), to the most
preferred MX address DNS names; every other MX address (the backup MX, a gateway's
IPv6 address from its AAAA) gets a To probe as well, so each one is proven to receive.

Gateway and Odoo paths, and forwarding by the stack's own gateways (redirected to
``<db>.odoo.com``), are looked up in Odoo by Message-ID (XML-RPC
``mail.message.search_read``): exactly once, routed to the address (the original
recipient survived), the body unchanged. IMAP and a provider's forwarding are looked
up in the mailbox provider's Maildir: this proves what reaches the provider's MX;
Odoo's fetchmail (``e2e.inbound.imap`` follows it) or the provider's forwarding is not
part of the probe, and the finding says so.
"""

from __future__ import annotations

import sqlite3
import xmlrpc.client
from dataclasses import dataclass

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped
from mailstack.checks.engine.registry import check
from mailstack.checks.groups.e2e import gate, maildir, settings
from mailstack.checks.probes import e2e as e2e_probe
from mailstack.checks.probes.e2e import E2eSettings, OdooClient, Probe, ProbeError, ProbeRejected
from mailstack.core.model import InboundMode

MODES = ("to", "cc", "bcc")
PATHS = {InboundMode.GATEWAY: "gateway", InboundMode.ODOO_MX: "odoo", InboundMode.IMAP: "imap", InboundMode.FORWARD: "forward"}
#: Paths whose mail ends in Odoo (the others end at a mailbox provider).
INTO_ODOO = ("gateway", "odoo")


@dataclass(frozen=True, slots=True)
class InboundProbe:
    mode: str
    target: str
    mx: str
    address: str
    probe: Probe | None = None
    rejected: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class InboundRun:
    probes: tuple[InboundProbe, ...] = ()
    found: dict[str, tuple[list[dict[str, object]], float | None, str]] | None = None
    error: str = ""
    #: Per alias address: the model of Odoo's alias (None: Odoo has no such alias).
    models: dict[str, str | None] | None = None


def targets(ctx: CheckContext, path: str) -> list[str]:
    """The addresses probed: the declared aliases on each name Odoo receives on (the
    probe alias where none is declared and the receiving side takes any address)."""
    stack = ctx.stack
    assert stack is not None
    local_parts = list(stack.inbound.aliases)
    if not local_parts and path != "gateway" and settings(ctx).alias:
        local_parts = [str(settings(ctx).alias)]
    domains = ctx.plan.relay_domains if path == "gateway" and ctx.plan else sorted({stack.inbound_domain(d) for d in stack.domains})
    return [f"{local}@{domain}" for domain in domains for local in local_parts]


def routes(ctx: CheckContext, domain: str) -> list[tuple[str, str]]:
    """(MX host, address) in preference order: every address of every MX host (the
    domain itself when it has no MX: RFC 5321 §5.1 implicit MX, e.g. a CNAME to
    ``<db>.odoo.com``). Raises DnsError (the check is then undecided)."""
    hosts = [host for _, host in ctx.resolver.query(domain, "MX").mx() if host != "."] or [domain]
    return [(host, address) for host in hosts for address in ctx.resolver.addresses(host)]


def _send(ctx: CheckContext, settings_: E2eSettings, mode: str, target: str, mx: str, address: str) -> InboundProbe:
    sender_domain = settings_.sender.rsplit("@", 1)[1]
    message_id = e2e_probe.new_message_id(f"in-{mode}", sender_domain)
    # One sender per probe (a tag on the outside sender): Odoo 17's loop detection
    # drops mail from an address that sent more than 20 messages within a minute.
    sender = e2e_probe.probe_sender(settings_.sender, message_id)
    headers = {"From": sender, "Subject": f"mailstack e2e inbound probe ({mode} {target} via {mx})"}
    headers["To"] = target if mode == "to" else sender
    if mode == "cc":
        headers["Cc"] = target
    raw, body = e2e_probe.build(message_id, headers, f"inbound-{mode}")
    source = settings_.sender_source_ipv6 if ":" in address else settings_.sender_source
    try:
        sent = e2e_probe.submit(address, 25, sender, [target], raw, source=source, helo=f"mx.{sender_domain}")
    except ProbeRejected as err:
        return InboundProbe(mode, target, mx, address, rejected=str(err))
    except ProbeError as err:
        return InboundProbe(mode, target, mx, address, error=str(err))
    return InboundProbe(mode, target, mx, address, Probe(message_id, sender, (target,), raw, body, sent, mode))


def into_odoo(ctx: CheckContext, path: str) -> bool:
    """Whether the path ends in Odoo, so the probe is looked up there: the gateway and
    Odoo paths, and forwarding by the stack's own gateways (redirected to
    ``<db>.odoo.com``, Odoo's servers → the database). A provider's forwarding ends
    in the provider's mailbox as far as the probe can see."""
    return path in INTO_ODOO or (path == "forward" and ctx.stack is not None and ctx.stack.forwards_through_gateways)


def _probe_all(ctx: CheckContext, path: str) -> InboundRun:
    settings_ = settings(ctx)
    stack = ctx.stack
    assert stack is not None
    odoo_path = into_odoo(ctx, path)
    if odoo_path and not (settings_.odoo_login and settings_.odoo_password and stack.odoo.url and stack.odoo.database):
        return InboundRun(error="needs Odoo's URL and database (stack) and MAILSTACK_ODOO_LOGIN/MAILSTACK_ODOO_PASSWORD")
    if not odoo_path and (settings_.maildir is None):
        return InboundRun(error="needs the mailbox provider's Maildir to look in (MAILSTACK_E2E_MAILDIR; the lab sets it)")
    probes: list[InboundProbe] = []
    by_domain: dict[str, list[str]] = {}
    for target in targets(ctx, path):
        by_domain.setdefault(target.rsplit("@", 1)[1], []).append(target)
    for domain, wanted in by_domain.items():
        found = routes(ctx, domain)
        if not found:
            return InboundRun(error=f"{domain}: no MX address to send to")
        mx, address = found[0]
        for target in wanted:
            for mode in MODES:
                probes.append(_send(ctx, settings_, mode, target, mx, address))
        for mx, address in found[1:]:
            probes.append(_send(ctx, settings_, "to", wanted[0], mx, address))
    results: dict[str, tuple[list[dict[str, object]], float | None, str]] = {}
    if odoo_path:
        assert stack.odoo.url and stack.odoo.database and settings_.odoo_login and settings_.odoo_password
        client = OdooClient(stack.odoo.url, stack.odoo.database, settings_.odoo_login, settings_.odoo_password)
        for item in probes:
            if item.probe:
                results[item.probe.message_id] = e2e_probe.wait_for_odoo(client, item.probe.message_id, item.probe.sent_at + settings_.wait)
        models: dict[str, str | None] = {}
        for target in {item.target for item in probes if item.probe}:
            try:
                models[target] = client.alias_model(target)
            except (OSError, PermissionError, xmlrpc.client.Error):
                models[target] = None
        return InboundRun(tuple(probes), results, models=models)
    else:
        index = maildir(ctx)
        assert index is not None
        for item in probes:
            if item.probe:
                delivery = index.wait(item.probe.message_id, item.probe.sent_at + settings_.wait)
                results[item.probe.message_id] = ([{"path": str(delivery.path)}], delivery.found_at, "") if delivery else ([], None, "")
    return InboundRun(tuple(probes), results)


def _stored_body(settings_: E2eSettings, message_id: str) -> bytes | None:
    """The body Odoo stored (lab stand-in's SQLite), None where not readable."""
    if settings_.odoo_store is None or not settings_.odoo_store.exists():
        return None
    with sqlite3.connect(settings_.odoo_store) as db:
        row = db.execute("SELECT raw FROM messages WHERE message_id = ? ORDER BY id", (message_id,)).fetchone()
    if row is None:
        return None
    raw = bytes(row[0]).replace(b"\r\n", b"\n")
    return raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""


def _judge_odoo(settings_: E2eSettings, check_id: str, item: InboundProbe, records: list[dict[str, object]], subject: str, elapsed: str,
                models: dict[str, str | None]) -> Finding:
    assert item.probe
    problems = []
    if len(records) != 1:
        problems.append(f"{len(records)} mail.message records (duplicate delivery)")
    if item.target in models:
        model = models[item.target]
        if model is None:
            problems.append(f"Odoo has no alias {item.target}")
        elif records[0].get("model") != model:
            problems.append(f"posted on {records[0].get('model')}, not on {model} the alias {item.target} creates (original recipient lost)")
    routed = records[0].get("routes")
    routed_to = routed if isinstance(routed, list) else str(routed).split(",")
    if routed is not None and item.target not in routed_to:
        problems.append(f"routed to {routed}, not {item.target} (original recipient lost)")
    stored = _stored_body(settings_, item.probe.message_id)
    html_body = records[0].get("body")
    token = item.probe.message_id.strip("<>").split("@", 1)[0]
    if stored is not None:
        note = "body byte-identical (line ends as delivered, LF)"
        if stored != item.probe.body.replace(b"\r\n", b"\n"):
            problems.append("the body Odoo stored differs from the body sent")
    elif isinstance(html_body, str) and html_body:
        note = "body not compared byte for byte (Odoo keeps an HTML rendering), probe token present"
        if token not in html_body:
            problems.append("the probe's text is missing from the body Odoo stored")
    else:
        note = "body not compared (Odoo returned no body)"
    if problems:
        return failed(check_id, f"{subject}: {'; '.join(problems)}", detail=item.probe.message_id)
    return passed(check_id, f"{subject}: in Odoo after {elapsed}, {note}", detail=f"{item.probe.message_id} → mail.message {records[0].get('id')}")


def _findings(ctx: CheckContext, path: str, mode: str) -> list[Finding]:
    check_id = f"e2e.inbound.{path}.{mode}"
    stop = gate(ctx, check_id)
    if stop:
        return [stop]
    stack = ctx.stack
    assert stack is not None
    if PATHS.get(stack.inbound.mode) != path:
        return [skipped(check_id, f"inbound mode is {stack.inbound.mode.value}, not {path}")]
    if not targets(ctx, path):
        return [skipped(check_id, "the stack declares no inbound aliases" + ("" if path == "gateway" else " (and MAILSTACK_E2E_ALIAS is unset)"))]
    run = ctx.memo(f"e2e:inbound:{path}", lambda: _probe_all(ctx, path))
    if run.error:
        return [errored(check_id, f"inbound probes not sent: {run.error}")]
    settings_ = settings(ctx)
    findings: list[Finding] = []
    for item in (p for p in run.probes if p.mode == mode):
        subject = f"{item.target} ({mode}) via {item.mx} [{item.address}]"
        if item.rejected:
            findings.append(failed(check_id, f"{subject}: refused: {item.rejected}"))
            continue
        if item.error or item.probe is None:
            findings.append(errored(check_id, f"{subject}: not sent: {item.error}"))
            continue
        assert run.found is not None
        records, when, last_error = run.found[item.probe.message_id]
        if not records:
            where = "in Odoo" if into_odoo(ctx, path) else f"in the mailbox provider's Maildir ({item.mx})"
            why = f" (last error: {last_error})" if last_error else ""
            findings.append(errored(check_id, f"{subject}: {item.probe.message_id} not {where} within {settings_.wait:g}s{why}"))
            continue
        elapsed = f"{(when or item.probe.sent_at) - item.probe.sent_at:.2f}s"
        if into_odoo(ctx, path):
            findings.append(_judge_odoo(settings_, check_id, item, records, subject, elapsed, run.models or {}))
        else:
            findings.append(passed(check_id, f"{subject}: delivered to the mailbox provider after {elapsed}; fetching it into Odoo "
                                             f"({'fetchmail' if path == 'imap' else 'forwarding'}) is not part of this probe",
                                   detail=f"{item.probe.message_id} → {records[0].get('path')}"))
    return findings


def _register(path: str, mode: str) -> None:
    ref = "Odoo 17 mail gateway (message_process)" if path in INTO_ODOO else "RFC 5321 §5.1"
    doc = {"to": "in To", "cc": "in Cc", "bcc": "only in the envelope (Bcc)"}[mode]

    def run(ctx: CheckContext) -> list[Finding]:
        return _findings(ctx, path, mode)

    run.__doc__ = f"A message with the address {doc} arrives by the {path} path" + (" in Odoo, once, unchanged." if path in INTO_ODOO else " at the mailbox provider.")
    check(f"e2e.inbound.{path}.{mode}", group="e2e", ref=ref)(run)


for _path in PATHS.values():
    for _mode in MODES:
        _register(_path, _mode)
