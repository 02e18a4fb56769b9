"""The records a declaration needs, one builder per kind, each with the key it comes
from (``Record.origin``). Pure code, no I/O, no Pulumi: every value comes from a rule
module (``mailstack.rules``); this module only decides which records exist."""

from __future__ import annotations

from mailstack.core.model import InboundMode, MailDomain, SenderKind
from mailstack.core.record import Record
from mailstack.plan import facts
from mailstack.rules import dane, dkim, dmarc, mta_sts, senders, spf
from mailstack.rules.mx import NULL_MX


def all_records(stack: MailDomain, gateway_key: str | None, zones: tuple[str, ...], previous_key: str | None = None) -> list[Record]:
    """Every record of the declaration (unsorted, possibly with duplicates)."""
    records: list[Record] = []
    spf_text, dmarc_text = spf_value(stack), dmarc_value(stack)  # stack-wide: computed once
    for domain in stack.domains:
        records += _sender_records(stack, domain, (gateway_key, previous_key), spf_text, dmarc_text)
        records += _inbound_records(stack, domain)
        records += _policy_records(stack, domain)
    records += _gateway_addresses(stack, zones)
    records += _gateway_tlsa(stack, zones)
    records += _report_authorizations(stack, zones)
    return records


def order_key(record: Record) -> tuple[str, str, int, str]:
    """The plan's order: by name and type, MX by priority (then target), so output
    and diffs read the way mail is routed."""
    return (record.name, record.type, -1 if record.priority is None else record.priority, record.content)


def spf_value(stack: MailDomain) -> str | None:
    """The merged SPF value of the stack's senders, None when nobody sends."""
    terms = [t for sender in stack.outbound for t in senders.spf_terms(stack, sender)]
    terms += senders.forwarder_terms(stack)
    if not terms:
        return None
    return spf.build(terms, stack.spf.all)


def dmarc_value(stack: MailDomain) -> str:
    """The DMARC value of the stack's ``dmarc`` tags."""
    d = stack.dmarc
    return dmarc.build(d.policy, subdomain_policy=d.subdomain_policy, rua=d.rua, ruf=d.ruf, adkim=d.adkim, aspf=d.aspf, fo=d.fo,
                       testing=d.testing, nonexistent_policy=d.nonexistent_policy)


def _sender_records(
    stack: MailDomain, domain: str, keys: tuple[str | None, str | None], value: str | None, dmarc_text: str,
) -> list[Record]:
    """``keys``: the gateway's DKIM public key and, while a rotation runs, the previous one."""
    ttl = stack.dns.ttl
    records: list[Record] = []
    cname_at_inbound = stack.inbound.mode is InboundMode.ODOO_MX and stack.inbound.record == "cname"
    sending = facts.sending_names(stack, domain)
    for name in sending:
        inherits_from_cname = cname_at_inbound and name != domain
        if value and not inherits_from_cname:
            records.append(Record(name, "TXT", value, ttl, purpose="spf", origin=("outbound",)))
        for index, sender in enumerate(stack.outbound):
            for entry in senders.dkim_entries(stack, sender, name, *keys):
                origin: tuple[str | int, ...] = ("outbound", index)
                key = keys[0]
                if sender.kind is SenderKind.GATEWAY:
                    previous = entry.selector == stack.dkim.previous
                    origin, key = (("dkim", "previous"), keys[1]) if previous else (("dkim", "selector"), keys[0])
                records.append(Record(
                    dkim.record_name(entry.selector, name), entry.type, entry.content, ttl, purpose="dkim",
                    needs_gateway_key=entry.needs_gateway_key and key is None, origin=origin,
                ))
    if stack.outbound or stack.dmarc.rua:
        for name in (domain, *dmarc_names(domain, sending)):
            records.append(Record(dmarc.record_name(name), "TXT", dmarc_text, ttl, purpose="dmarc", origin=("dmarc",)))
    return records


def dmarc_names(domain: str, sending: tuple[str, ...]) -> list[str]:
    """Sending names below ``domain`` that need a DMARC record of their own.

    A receiver looks for ``_dmarc.<From domain>``, then falls back to the
    Organizational Domain (RFC 7489 §6.6.3), not to the parent we manage: when the
    stack's domain is itself a subdomain (``shop.example.org``), Odoo's inbound alias
    domain ``mail.shop.example.org`` would fall back to ``example.org``'s policy.
    """
    if dmarc.organizational_domain(domain) == domain:
        return []
    return [name for name in sending if name != domain]


def _inbound_records(stack: MailDomain, domain: str) -> list[Record]:
    ttl = stack.dns.ttl
    name = stack.inbound_domain(domain)
    mode = stack.inbound.mode
    origin = ("inbound",)
    if mode is InboundMode.NONE:
        return [Record(domain, "MX", NULL_MX, ttl, 0, purpose="mx", origin=origin)]
    if mode is InboundMode.ODOO_MX and stack.inbound.record == "cname" and stack.odoo.saas_host:
        return [Record(name, "CNAME", stack.odoo.saas_host, ttl, purpose="inbound", origin=origin)]
    return [Record(name, "MX", mx.host, ttl, mx.priority, purpose="mx", origin=origin) for mx in facts.mx_hosts(stack, domain)]


def _policy_records(stack: MailDomain, domain: str) -> list[Record]:
    ttl = stack.dns.ttl
    records: list[Record] = []
    hosts = [mx.host for mx in facts.mx_hosts(stack, domain)]
    if stack.mta_sts and hosts:
        text = mta_sts.policy_text(stack.mta_sts.mode, hosts, stack.mta_sts.max_age)
        records.append(Record(mta_sts.record_name(domain), "TXT", mta_sts.txt_value(text), ttl, purpose="mta-sts", origin=("mtaSts",)))
        if stack.mta_sts.serve == "gateway" and stack.gateways:
            # The policy host: every gateway serves it (nginx, the gateway's certificate);
            # the name points at the primary MX, whose addresses it follows.
            primary = min(stack.gateways, key=lambda g: g.priority)
            records.append(Record(mta_sts.policy_host(domain), "CNAME", primary.hostname, ttl, purpose="mta-sts-host", origin=("mtaSts", "serve")))
    if stack.tls_rpt:
        records.append(Record(
            mta_sts.tlsrpt_record_name(domain), "TXT", mta_sts.tlsrpt_value(stack.tls_rpt.rua), ttl, purpose="tls-rpt", origin=("tlsRpt",),
        ))
    return records


def _gateway_addresses(stack: MailDomain, zones: tuple[str, ...]) -> list[Record]:
    """A/AAAA of gateway hosts inside a managed zone, so their MX never dangles."""
    records: list[Record] = []
    for index, gateway in enumerate(stack.gateways):
        if not facts.in_managed_zone(gateway.hostname, zones):
            continue
        origin = ("gateways", index)
        records.append(Record(gateway.hostname, "A", gateway.ipv4, stack.dns.ttl, purpose="gateway", origin=origin))
        if gateway.ipv6:
            records.append(Record(gateway.hostname, "AAAA", gateway.ipv6, stack.dns.ttl, purpose="gateway", origin=origin))
    return records


def _gateway_tlsa(stack: MailDomain, zones: tuple[str, ...]) -> list[Record]:
    """DANE (RFC 7672): ``_25._tcp.<gateway> TLSA 3 1 1`` of each declared key digest
    (the current key, and the next one during a rollover), for gateways in a managed zone."""
    settings = stack.gateway
    if settings is None:
        return []
    tls = settings.tls
    return [
        Record(dane.tlsa_name(gateway.hostname), "TLSA", dane.content(key_digest), stack.dns.ttl, purpose="dane",
               origin=("gateway", "tls", "dane", *(("hosts", gateway.hostname) if gateway.hostname in dict(tls.dane_hosts) else ()),
                       "digest" if position == 0 else "next"))
        for gateway in stack.gateways if facts.in_managed_zone(gateway.hostname, zones)
        for position, key_digest in enumerate(tls.dane_for(gateway.hostname))
    ]


def _report_authorizations(stack: MailDomain, zones: tuple[str, ...]) -> list[Record]:
    """RFC 7489 §7.1: a report domain in the stack authorises reports about the others."""
    records: list[Record] = []
    for report_domain in sorted(set(dmarc.report_domains((*stack.dmarc.rua, *stack.dmarc.ruf)))):
        if not facts.in_managed_zone(report_domain, zones):
            continue
        for domain in stack.domains:
            if not dmarc.is_external(report_domain, domain):
                continue
            name = dmarc.report_authorization_name(domain, report_domain)
            records.append(Record(name, "TXT", dmarc.REPORT_AUTHORIZATION, stack.dns.ttl, purpose="dmarc-report", origin=("dmarc", "rua")))
    return records
