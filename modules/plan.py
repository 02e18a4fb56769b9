"""The record plan: a validated MailDomain in, the exact DNS records out.

Pure code, no I/O, no Pulumi: the Cloudflare component, the RFC 2136 provider, the CLI,
the policy pack and the checks all start from ``plan()``. Every mail rule comes from its
own module; this one only decides which records a declaration needs, then refuses a set
that breaks a rule as a whole (``conflicts``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from modules import dkim, dmarc, mta_sts, names, senders, spf
from modules.errors import PlanError
from modules.model import InboundMode, MailDomain, MxHost, Record

NULL_MX = "."


def plan(stack: MailDomain, gateway_key: str | None = None) -> list[Record]:
    """Every record the declaration needs, sorted; raise PlanError on a broken set.

    ``gateway_key`` is the gateway's DKIM public key (PEM or base64). Without it the
    gateway's DKIM TXT carries ``dkim.PENDING_KEY`` and ``needs_gateway_key`` is set,
    so the Pulumi component fills it from the generated key.
    """
    records: list[Record] = []
    for domain in stack.domains:
        records += _sender_records(stack, domain, gateway_key)
        records += _inbound_records(stack, domain)
        records += _policy_records(stack, domain)
    records += _gateway_addresses(stack)
    records += _report_authorizations(stack)
    problems = conflicts(records)
    if problems:
        raise PlanError("; ".join(problems), problems)
    return sorted(set(records), key=order_key)


def order_key(record: Record) -> tuple[str, str, int, str]:
    """The plan's order: by name and type, MX by priority (then target), so output
    and diffs read the way mail is routed."""
    return (record.name, record.type, -1 if record.priority is None else record.priority, record.content)


def managed_zones(stack: MailDomain) -> tuple[str, ...]:
    """The zones the stack writes to: the main zone and each alias domain's zone."""
    zones = {stack.dns.zone, *(stack.dns.zone_of(d) for d in stack.alias_domains)}
    return tuple(sorted(zones))


def sending_names(stack: MailDomain, domain: str) -> list[str]:
    """The names mail is sent from for one domain: the domain, and Odoo's inbound
    subdomain when Odoo uses it as its alias domain (Odoo 17 sends notifications and
    bounces from the alias domain, so it needs SPF and DKIM too)."""
    names_ = [domain]
    if stack.inbound.mode is InboundMode.ODOO_MX and stack.inbound.subdomain:
        names_.append(stack.inbound_domain(domain))
    return names_


def spf_record(stack: MailDomain) -> str | None:
    """The merged SPF value of the stack's senders, None when nobody sends."""
    terms = [t for sender in stack.outbound for t in senders.spf_terms(stack, sender)]
    if not terms:
        return None
    return spf.build(terms, stack.spf.all)


def _sender_records(stack: MailDomain, domain: str, gateway_key: str | None) -> list[Record]:
    ttl = stack.dns.ttl
    records: list[Record] = []
    spf_value = spf_record(stack)
    cname_at_inbound = stack.inbound.mode is InboundMode.ODOO_MX and stack.inbound.record == "cname"
    for name in sending_names(stack, domain):
        inherits_from_cname = cname_at_inbound and name != domain
        if spf_value and not inherits_from_cname:
            records.append(Record(name, "TXT", spf_value, ttl, purpose="spf"))
        for sender in stack.outbound:
            for entry in senders.dkim_entries(stack, sender, name, gateway_key):
                records.append(
                    Record(
                        dkim.record_name(entry.selector, name),
                        entry.type,
                        entry.content,
                        ttl,
                        purpose="dkim",
                        needs_gateway_key=entry.needs_gateway_key and gateway_key is None,
                    )
                )
    if stack.outbound or stack.dmarc.rua:
        value = dmarc.build(
            stack.dmarc.policy,
            subdomain_policy=stack.dmarc.subdomain_policy,
            rua=stack.dmarc.rua,
            ruf=stack.dmarc.ruf,
            adkim=stack.dmarc.adkim,
            aspf=stack.dmarc.aspf,
            pct=stack.dmarc.pct,
            fo=stack.dmarc.fo,
        )
        records.append(Record(f"_dmarc.{domain}", "TXT", value, ttl, purpose="dmarc"))
        for name in dmarc_names(domain, sending_names(stack, domain)):
            records.append(Record(f"_dmarc.{name}", "TXT", value, ttl, purpose="dmarc"))
    return records


def dmarc_names(domain: str, names_: list[str]) -> list[str]:
    """Sending names below ``domain`` that need a DMARC record of their own.

    A receiver looks for ``_dmarc.<From domain>``, then falls back to the
    Organizational Domain (RFC 7489 §6.6.3), not to the parent we manage: when the
    stack's domain is itself a subdomain (``shop.example.org``), Odoo's inbound alias
    domain ``mail.shop.example.org`` would fall back to ``example.org``'s policy.
    """
    if dmarc.organizational_domain(domain) == domain:
        return []
    return [name for name in names_ if name != domain]


def mx_hosts(stack: MailDomain, domain: str) -> tuple[MxHost, ...]:
    """The MX set of one domain's inbound name, as declared."""
    mode = stack.inbound.mode
    if mode is InboundMode.GATEWAY:
        return tuple(MxHost(g.hostname, g.priority) for g in stack.gateways)
    if mode is InboundMode.ODOO_MX and stack.inbound.record == "mx":
        return (MxHost(_odoo_host(stack), 10),)
    if mode in (InboundMode.FORWARD, InboundMode.IMAP):
        return stack.inbound.mx
    return ()


def _odoo_host(stack: MailDomain) -> str:
    host = stack.odoo.host or f"{stack.odoo.database}.odoo.com"
    return names.normalize(host)


def _inbound_records(stack: MailDomain, domain: str) -> list[Record]:
    ttl = stack.dns.ttl
    name = stack.inbound_domain(domain)
    mode = stack.inbound.mode
    if mode is InboundMode.NONE:
        return [Record(domain, "MX", NULL_MX, ttl, 0, purpose="mx")]
    if mode is InboundMode.ODOO_MX and stack.inbound.record == "cname":
        return [Record(name, "CNAME", _odoo_host(stack), ttl, purpose="inbound")]
    return [Record(name, "MX", mx.host, ttl, mx.priority, purpose="mx") for mx in mx_hosts(stack, domain)]


def _policy_records(stack: MailDomain, domain: str) -> list[Record]:
    ttl = stack.dns.ttl
    records: list[Record] = []
    hosts = [mx.host for mx in mx_hosts(stack, domain)]
    if stack.mta_sts and hosts:
        text = mta_sts.policy_text(stack.mta_sts.mode, hosts, stack.mta_sts.max_age)
        records.append(Record(f"_mta-sts.{domain}", "TXT", mta_sts.txt_value(text), ttl, purpose="mta-sts"))
    if stack.tls_rpt:
        records.append(
            Record(f"_smtp._tls.{domain}", "TXT", mta_sts.tlsrpt_value(stack.tls_rpt.rua), ttl, purpose="tls-rpt")
        )
    return records


def _gateway_addresses(stack: MailDomain) -> list[Record]:
    """A/AAAA of gateway hosts inside a managed zone, so their MX never dangles."""
    zones = managed_zones(stack)
    records: list[Record] = []
    for gateway in stack.gateways:
        if not any(names.within(gateway.hostname, zone) for zone in zones):
            continue
        records.append(Record(gateway.hostname, "A", gateway.ipv4, stack.dns.ttl, purpose="gateway"))
        if gateway.ipv6:
            records.append(Record(gateway.hostname, "AAAA", gateway.ipv6, stack.dns.ttl, purpose="gateway"))
    return records


def _report_authorizations(stack: MailDomain) -> list[Record]:
    """RFC 7489 §7.1: a report domain in the stack authorises reports about the others."""
    records: list[Record] = []
    uris = (*stack.dmarc.rua, *stack.dmarc.ruf)
    report_domains = {d for d in (dmarc.uri_domain(u) for u in uris) if d}
    for report_domain in sorted(report_domains):
        if not any(names.within(report_domain, zone) for zone in managed_zones(stack)):
            continue
        for domain in stack.domains:
            if names.within(domain, report_domain) or names.within(report_domain, domain):
                continue
            name = dmarc.report_authorization_name(domain, report_domain)
            records.append(Record(name, "TXT", "v=DMARC1", stack.dns.ttl, purpose="dmarc-report"))
    return records


#: The kinds of problem ``conflicts`` reports; the policy pack selects some of them.
CONFLICT_KINDS = ("spf-count", "cname-exclusive", "spf-syntax", "spf-budget", "duplicate", "mx-target", "cname-target")


def conflicts(records: Iterable[Record], kinds: Iterable[str] | None = None) -> list[str]:
    """Rules a record set breaks as a whole; the policy pack uses the same function.

    ``kinds`` (see CONFLICT_KINDS) limits the answer to those rules, so a policy can
    report each rule under its own name and enforcement level.
    """
    wanted = set(CONFLICT_KINDS if kinds is None else kinds)
    return [message for kind, message in _conflicts(records) if kind in wanted]


def _conflicts(records: Iterable[Record]) -> list[tuple[str, str]]:
    by_name: dict[str, list[Record]] = defaultdict(list)
    for record in sorted(set(records)):  # the same record planned twice is one record
        by_name[record.name].append(record)
    problems: list[tuple[str, str]] = []
    for name, at_name in sorted(by_name.items()):
        spf_count = sum(1 for r in at_name if r.type == "TXT" and spf.is_spf(r.content))
        if spf_count > 1:
            problems.append(("spf-count", f"{name} would have {spf_count} SPF records; RFC 7208 §3.2 allows one"))
        cnames = [r for r in at_name if r.type == "CNAME"]
        if cnames and len(at_name) > 1:
            others = sorted({r.type for r in at_name})
            problems.append(("cname-exclusive", f"{name} has a CNAME beside other records ({', '.join(others)}); RFC 1034 §3.6.2 forbids it"))
        for record in at_name:
            if record.type == "TXT" and spf.is_spf(record.content):
                try:
                    problems += [("spf-budget", f"{name}: {p}") for p in spf.budget_problems(record.content)]
                except spf.SpfSyntaxError as err:  # only records not built by plan() (policy pack)
                    problems.append(("spf-syntax", f"{name}: SPF record does not parse: {err}"))
    by_key: dict[str, list[Record]] = defaultdict(list)
    for record in (r for rs in by_name.values() for r in rs):
        by_key[record.key].append(record)
    for key, same in sorted(by_key.items()):
        if len(same) > 1:
            values = ", ".join(repr(r.content) for r in same)
            problems.append(("duplicate", f"{same[0].name} would have {len(same)} different {same[0].type} records ({values})"))
    cname_names = {name for name, at_name in by_name.items() if any(r.type == "CNAME" for r in at_name)}
    for record in (r for rs in by_name.values() for r in rs):
        if record.type == "MX" and record.content != NULL_MX:
            if names.is_ip(record.content):
                problems.append(("mx-target", f"{record.name}: MX target {record.content} is an IP address (RFC 7505, RFC 2181 §10.3)"))
            elif record.content in cname_names:
                problems.append(("mx-target", f"{record.name}: MX target {record.content} is a CNAME (RFC 2181 §10.3)"))
        if record.type == "CNAME" and names.is_ip(record.content):
            problems.append(("cname-target", f"{record.name}: CNAME target {record.content} is an IP address"))
    return problems
