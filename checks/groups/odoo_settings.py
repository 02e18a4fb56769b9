"""The ``odoo`` group, Odoo's side: its live mail settings against the declaration.

Read over XML-RPC (``mailstack.checks.probes.odoo``) whenever Odoo's URL and
credentials are available — whatever ``odoo.manage`` says, since settings made by hand
decide Odoo's mail just the same. Each mismatch says what Odoo 17 will do with it,
from Odoo's own rules (``mailstack.rules.odoo``: ``_find_mail_server``,
``_prepare_email_message``; routing per /work/research/odoo17-spec.md §4):

* ``odoo.connect`` — Odoo answers and the credentials log in;
* ``odoo.alias-domains`` — each mail domain is an alias domain with the declared
  bounce, catchall and default From (else mail to its aliases finds no route);
* ``odoo.companies`` — each company sends with a declared alias domain;
* ``odoo.aliases`` — Odoo's aliases against the declared list the gateway falls back on;
* ``odoo.outgoing-server`` — the ``ir.mail_server`` records (any record silently
  replaces odoo.conf's smtp options) and their ``from_filter``;
* ``odoo.from-filter`` — for the Froms Odoo sends (each ``notifications@``, a colleague
  at the domain, a user with an outside address): the server Odoo picks, whether it
  rewrites the From, and whether the result is covered by DKIM and SPF;
* ``odoo.incoming-server`` — for ``inbound.mode: imap``, a confirmed incoming server
  for the declared mailbox and the fetchmail cron's interval.
"""

from __future__ import annotations

from typing import Any

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped, warned
from mailstack.checks.engine.registry import check
from mailstack.checks.probes.odoo import Credentials, OdooState, fetch
from mailstack.core.model import InboundMode, OdooSetting
from mailstack.odoo import desired
from mailstack.plan import Plan
from mailstack.rules import odoo as rules

REF = "Odoo 17 mail settings (mail.alias.domain, ir.mail_server, fetchmail.server)"


def _state(ctx: CheckContext, check_id: str) -> tuple[OdooState | None, Finding | None]:
    if ctx.plan is None:
        return None, skipped(check_id, "needs a declaration (--stack/--stack-file)")
    credentials = Credentials.for_stack(ctx.plan.stack)
    if credentials.unreadable:
        return None, errored(check_id, f"Odoo's settings are not read: {credentials.unreadable}")
    if credentials.missing:
        return None, skipped(check_id, f"Odoo's settings are not read: {credentials.missing}")
    state = ctx.memo("odoo:state", lambda: fetch(credentials))
    if state.error:
        finding = failed if state.refused else errored
        return None, finding(check_id, f"Odoo's settings could not be read: {state.error}")
    return state, None


def _name(value: Any) -> str:
    return str(value[1]) if isinstance(value, list) and len(value) == 2 else ""


@check("odoo.connect", ref="Odoo 17 external API (/xmlrpc/2)")
def connect(ctx: CheckContext) -> list[Finding]:
    """Odoo answers XML-RPC and the declared login gets in."""
    state, stop = _state(ctx, "odoo.connect")
    if stop:
        return [stop]
    assert state and ctx.plan
    return [passed("odoo.connect", f"Odoo {state.version} at {ctx.plan.stack.odoo.rpc_url}: logged in (uid {state.uid})")]


def alias_domain_findings(plan: Plan, state: OdooState) -> list[Finding]:
    """``odoo.alias-domains`` on a fetched state (pure)."""
    findings = []
    live = {str(d["name"]).lower(): d for d in state.alias_domains}
    for spec in desired.alias_domains(plan):
        found = live.get(spec.name)
        if found is None:
            findings.append(failed("odoo.alias-domains", f"Odoo has no alias domain {spec.name}: mail to its aliases finds no route "
                                   "(\"No possible route found\"), and Odoo does not send as it",
                                   expected=spec.name, found=", ".join(sorted(live)) or "no alias domain",
                                   fix=f"create it (Settings → Technical → Email → Alias Domains), or add aliasDomains to mailstack:odoo.manage"))
            continue
        problems = []
        if found["name"] != spec.name:
            problems.append(f"its name is stored as {found['name']!r}: Odoo 17 compares the lowercased recipient with it, so mail never routes")
        for field, wanted, what in (("bounce_alias", spec.bounce_alias, "Return-Path"), ("catchall_alias", spec.catchall_alias, "Reply-To catchall")):
            if found.get(field) != wanted:
                problems.append(f"{field} is {found.get(field)!r}, not {wanted!r}: Odoo's {what} is {found.get(field)}@{spec.name}, "
                                "an address the gateway does not accept")
        wanted_from = spec.default_from if "@" in spec.default_from else f"{spec.default_from}@{spec.name}"
        if found.get("default_from_email") != wanted_from:
            problems.append(f"default From is {found.get('default_from_email')}, not {wanted_from}: Odoo rewrites foreign Froms to it")
        if problems:
            findings.append(failed("odoo.alias-domains", f"alias domain {spec.name}: {'; '.join(problems)}",
                                   expected=f"bounce {spec.bounce_alias}, catchall {spec.catchall_alias}, default From {wanted_from}",
                                   found=f"bounce {found.get('bounce_alias')}, catchall {found.get('catchall_alias')}, default From {found.get('default_from_email')}",
                                   fix="correct it in Odoo, or let mailstack manage it (mailstack:odoo.manage: [aliasDomains])"))
        else:
            findings.append(passed("odoo.alias-domains", f"alias domain {spec.name}: bounce@, catchall@ and {wanted_from} as declared"))
    for name in sorted(set(live) - {spec.name for spec in desired.alias_domains(plan)}):
        findings.append(warned("odoo.alias-domains", f"Odoo also has alias domain {name}, which the stack does not declare: "
                               "mail Odoo sends or receives there is outside mailstack's records"))
    stale = {k: v for k, v in state.params.items() if k in ("mail.catchall.domain", "mail.default.from", "mail.bounce.alias", "mail.catchall.alias") and v}
    if stale:
        findings.append(warned("odoo.alias-domains", f"pre-17 system parameters are set ({', '.join(f'{k}={v}' for k, v in stale.items())}): "
                               "Odoo 17 no longer reads them, the alias domains decide", fix="remove them (Settings → Technical → System Parameters)"))
    return findings


@check("odoo.alias-domains", ref=REF)
def alias_domains(ctx: CheckContext) -> list[Finding]:
    """Each mail domain is an alias domain of Odoo with the declared bounce, catchall and default From."""
    state, stop = _state(ctx, "odoo.alias-domains")
    if stop:
        return [stop]
    assert state and ctx.plan
    return alias_domain_findings(ctx.plan, state)


def company_findings(plan: Plan, state: OdooState) -> list[Finding]:
    """``odoo.companies`` on a fetched state (pure)."""
    declared = dict(plan.stack.odoo.companies)
    names = {spec.name for spec in desired.alias_domains(plan)}
    findings = []
    for company in state.companies:
        domain = _name(company.get("alias_domain_id"))
        name = str(company.get("name"))
        wanted = declared.get(name)
        if wanted and domain != wanted:
            findings.append(failed("odoo.companies", f"company {name} uses alias domain {domain or 'none'}, not {wanted} as declared",
                                   expected=wanted, found=domain or "none"))
        elif not domain:
            findings.append(failed("odoo.companies", f"company {name} has no alias domain: Odoo sends its mail From odoo.conf's email_from "
                                   "and gives no bounce or catchall address", fix="set its Email Domain (Settings → Companies)"))
        elif domain not in names:
            findings.append(warned("odoo.companies", f"company {name} uses alias domain {domain}, which the stack does not declare"))
        else:
            findings.append(passed("odoo.companies", f"company {name} sends and receives with alias domain {domain}"))
    return findings


@check("odoo.companies", ref=REF)
def companies(ctx: CheckContext) -> list[Finding]:
    """Each company uses a declared alias domain (the one ``odoo.companies`` names)."""
    state, stop = _state(ctx, "odoo.companies")
    if stop:
        return [stop]
    assert state and ctx.plan
    return company_findings(ctx.plan, state)


def alias_findings(plan: Plan, state: OdooState) -> list[Finding]:
    """``odoo.aliases``: the declared aliases (the gateway's fallback list) against Odoo's."""
    stack = plan.stack
    live = {str(a.get("alias_full_name")) for a in state.aliases}
    declared = {f"{alias}@{stack.inbound_domain(d)}" for d in stack.domains for alias in stack.inbound.aliases}
    if stack.inbound.mode is InboundMode.NONE:
        return [skipped("odoo.aliases", "the domain receives no mail (inbound.mode none)")]
    findings = []
    for address in sorted(declared - live):
        findings.append(warned("odoo.aliases", f"{address} is declared but Odoo has no such alias: Odoo answers \"No possible route found\"; "
                               "the gateway refuses it while it can ask Odoo, and accepts it (Odoo then bounces) while it cannot",
                               fix="create the alias in Odoo (e.g. on the sales team) or remove it from inbound.aliases"))
    mail_domains = {stack.inbound_domain(d) for d in stack.domains}
    for address in sorted(a for a in live - declared if a.rpartition("@")[2] in mail_domains):
        findings.append(warned("odoo.aliases", f"Odoo's alias {address} is not in inbound.aliases: accepted while Odoo answers the gateway, "
                               "deferred (4xx) while it cannot", fix=f"add {address.partition('@')[0]} to mailstack:inbound.aliases"))
    if not findings:
        findings.append(passed("odoo.aliases", f"Odoo's aliases match the declared ones ({', '.join(sorted(declared)) or 'none'})"))
    return findings


@check("odoo.aliases", ref="Odoo 17 mail.alias (alias_full_name)")
def aliases(ctx: CheckContext) -> list[Finding]:
    """Odoo's aliases on the mail domains are the declared ones (the gateway's fallback list)."""
    state, stop = _state(ctx, "odoo.aliases")
    if stop:
        return [stop]
    assert state and ctx.plan
    return alias_findings(ctx.plan, state)


def _servers(state: OdooState) -> list[rules.MailServer]:
    return [rules.MailServer(int(s["id"]), str(s.get("name")), s.get("from_filter") or None, int(s.get("sequence") or 10), bool(s.get("active", True)))
            for s in state.mail_servers]


def outgoing_findings(plan: Plan, state: OdooState) -> list[Finding]:
    """``odoo.outgoing-server`` on a fetched state (pure)."""
    spec = desired.mail_server(plan)
    managed = any(key.startswith("mailstack.outgoing_server_") for key in state.marks)
    if not state.mail_servers:
        default = state.params.get("mail.default.from_filter")
        text = "no ir.mail_server record: Odoo sends with odoo.conf's smtp_* options (mailstack renders them)"
        if default:
            text += f"; mail.default.from_filter = {default} replaces odoo.conf's from_filter"
        if spec and plan.stack.odoo.manages(OdooSetting.OUTGOING_SERVER):
            return [failed("odoo.outgoing-server", f"{text}, but odoo.manage lists outgoingServer and its record is missing", fix="pulumi up")]
        return [passed("odoo.outgoing-server", text)]
    findings = []
    if not managed:
        findings.append(warned("odoo.outgoing-server", f"Odoo has {len(state.mail_servers)} ir.mail_server record(s) mailstack did not create: "
                               "odoo.conf's smtp_* options (rendered by mailstack) are ignored while any exists",
                               found=", ".join(f"{s.get('name')} ({s.get('smtp_host')}:{s.get('smtp_port')})" for s in state.mail_servers)))
    if spec is not None:
        match = [s for s in state.mail_servers if s.get("smtp_host") == spec.smtp_host]
        if not match:
            findings.append(failed("odoo.outgoing-server", f"no outgoing server sends through {spec.smtp_host}: Odoo's mail does not take the declared path",
                                   expected=f"{spec.smtp_host}:{spec.smtp_port} {spec.smtp_encryption}"))
        else:
            server = match[0]
            found = f"{server.get('smtp_host')}:{server.get('smtp_port')} {server.get('smtp_encryption')} from_filter={server.get('from_filter') or '(empty)'}"
            wanted = f"{spec.smtp_host}:{spec.smtp_port} {spec.smtp_encryption} from_filter={spec.from_filter}"
            if (server.get("smtp_port"), server.get("smtp_encryption")) != (spec.smtp_port, spec.smtp_encryption):
                findings.append(failed("odoo.outgoing-server", f"server {server.get('name')}: {found}, not {wanted}", expected=wanted, found=found))
            elif set((server.get("from_filter") or "").replace(" ", "").split(",")) != set(spec.from_filter.split(",")):
                findings.append(warned("odoo.outgoing-server", f"server {server.get('name')}: from_filter is {server.get('from_filter') or 'empty'}, "
                                       f"not {spec.from_filter} (see odoo.from-filter for what Odoo then does)", expected=wanted, found=found))
            else:
                findings.append(passed("odoo.outgoing-server", f"server {server.get('name')}: {found}"))
    return findings


@check("odoo.outgoing-server", ref=REF)
def outgoing_server(ctx: CheckContext) -> list[Finding]:
    """Odoo's outgoing servers: which one sends, and whether odoo.conf still matters."""
    state, stop = _state(ctx, "odoo.outgoing-server")
    if stop:
        return [stop]
    assert state and ctx.plan
    return outgoing_findings(ctx.plan, state)


def from_filter_findings(plan: Plan, state: OdooState) -> list[Finding]:
    """``odoo.from-filter``: what Odoo 17 does with the Froms it sends (pure)."""
    stack = plan.stack
    signing = set(plan.signing_domains)
    default_filter = state.params.get("mail.default.from_filter") or (",".join(plan.signing_domains) if not state.mail_servers else None)
    spec = desired.mail_server(plan)
    declared_host = spec.smtp_host if spec else None
    findings = []
    for domain in state.alias_domains:
        notifications = str(domain.get("default_from_email") or "")
        bounce = str(domain.get("bounce_email") or "")
        if str(domain.get("name")) not in {stack.inbound_domain(d) for d in stack.domains}:
            continue
        for label, header_from in (("notifications", f'"Odoo" <{notifications}>'), ("a colleague", f'"Ann" <ann@{domain.get("name")}>'),
                                   ("an outside user", '"Bob" <bob@gmail.com>')):
            choice = rules.find_mail_server(header_from, _servers(state), notifications, default_filter)
            server = next((s for s in state.mail_servers if choice.server and s["id"] == choice.server.id), None)
            session_filter = (server.get("from_filter") or None) if server else default_filter
            envelope = rules.prepare_envelope(header_from, choice.smtp_from, bounce, notifications, session_filter)
            final_domain = rules.email_domain(envelope.header_from) or ""
            via = f"server {server.get('name')} ({server.get('smtp_host')})" if server else "odoo.conf's smtp options"
            what = f"From {header_from} → {envelope.header_from}, envelope {envelope.mail_from}, via {via}"
            if server is not None and declared_host is not None and server.get("smtp_host") != declared_host:
                findings.append(failed("odoo.from-filter", f"{label}: {what}: not the declared path ({declared_host}), so mailstack's "
                                       "DKIM signature and SPF do not cover it", fix=f"send through {declared_host} (odoo.manage: [outgoingServer])"))
            elif final_domain not in signing:
                findings.append(failed("odoo.from-filter", f"{label}: {what}: {final_domain} is not signed or in SPF, so DMARC fails",
                                       fix=f"set from_filter to {','.join(plan.signing_domains)}"))
            elif choice.fallback:
                findings.append(warned("odoo.from-filter", f"{label}: no server's from_filter matches, Odoo falls back ({what})"))
            elif (rules.email_domain(envelope.mail_from) or "") not in signing:
                findings.append(warned("odoo.from-filter", f"{label}: {what}: the envelope is outside SPF's names, only DKIM aligns"))
            elif envelope.rewritten:
                findings.append(passed("odoo.from-filter", f"{label}: From rewritten to {envelope.header_from} (outside from_filter), covered by DKIM and SPF",
                                       detail=what))
            else:
                findings.append(passed("odoo.from-filter", f"{label}: {what}: covered by DKIM and SPF"))
    return findings or [skipped("odoo.from-filter", "Odoo has none of the declared alias domains (see odoo.alias-domains)")]


@check("odoo.from-filter", ref="Odoo 17 ir.mail_server._find_mail_server / _prepare_email_message")
def from_filter(ctx: CheckContext) -> list[Finding]:
    """A From Odoo sends is covered by from_filter, DKIM and SPF — or rewritten to notifications@."""
    state, stop = _state(ctx, "odoo.from-filter")
    if stop:
        return [stop]
    assert state and ctx.plan
    return from_filter_findings(ctx.plan, state)


def incoming_findings(plan: Plan, state: OdooState) -> list[Finding]:
    """``odoo.incoming-server`` on a fetched state (pure)."""
    imap = plan.stack.inbound.imap
    if plan.stack.inbound.mode is not InboundMode.IMAP:
        return [skipped("odoo.incoming-server", f"inbound mode is {plan.stack.inbound.mode.value}, not imap")]
    if imap is None:
        return [skipped("odoo.incoming-server", "inbound.imap is not declared")]
    match = [s for s in state.incoming_servers if s.get("server") == imap.host and s.get("user") == imap.user]
    if not match:
        return [failed("odoo.incoming-server", f"Odoo has no incoming server for {imap.user} on {imap.host}: mail there stays in the mailbox",
                       fix="add incomingServer to mailstack:odoo.manage, or create it (Settings → Technical → Incoming Mail Servers)")]
    server = match[0]
    problems = []
    if server.get("state") != "done":
        problems.append("not confirmed (state draft): the fetchmail cron skips it")
    if not server.get("active", True):
        problems.append("archived")
    if (server.get("port"), bool(server.get("is_ssl"))) != (imap.port, imap.security == "ssl"):
        problems.append(f"port {server.get('port')} {'SSL' if server.get('is_ssl') else 'plain'}, not {imap.port} {imap.security}")
    cron = state.cron or {}
    minutes = int(cron.get("interval_number") or 0) * {"minutes": 1, "hours": 60, "days": 1440}.get(str(cron.get("interval_type")), 1)
    if not cron.get("active"):
        problems.append("the Mail: Fetchmail Service cron is inactive")
    elif minutes != imap.interval:
        problems.append(f"the fetchmail cron runs every {minutes} minutes, not {imap.interval}")
    if problems:
        return [failed("odoo.incoming-server", f"incoming server {server.get('name')}: {'; '.join(problems)}")]
    return [passed("odoo.incoming-server", f"incoming server {server.get('name')} confirmed, fetched every {minutes} minutes"
                   + (f", last at {server.get('date')}" if server.get("date") else ""))]


@check("odoo.incoming-server", ref=REF)
def incoming_server(ctx: CheckContext) -> list[Finding]:
    """For inbound mode imap: a confirmed incoming server for the declared mailbox, on the declared interval."""
    state, stop = _state(ctx, "odoo.incoming-server")
    if stop:
        return [stop]
    assert state and ctx.plan
    return incoming_findings(ctx.plan, state)
