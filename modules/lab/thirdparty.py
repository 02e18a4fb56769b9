"""The third parties a stack relies on, simulated as they are really published.

Each declared sender profile (``mailstack.rules.senders``) points at records the stack
does not own: Odoo's ``_spf.odoo.com`` and ``odoo._domainkey.odoo.com``, Microsoft's
``spf.protection.outlook.com`` and the tenant's ``selectorN-<domain>._domainkey.
<tenant>.onmicrosoft.com``, Google's ``_spf.google.com``, Mailjet's ``spf.mailjet.com``.
The lab serves those names with the same record shapes, pointing at its own sending
hosts and keys, and runs one simulated service per profile (``mailstack.lab.services``)
that signs and sends the way the service does:

* Odoo's servers: From at the customer's domain, Return-Path ``bounce@<db>.odoo.com``
  (SPF passes for Odoo's domain, not aligned), DKIM ``d=<From domain>`` with selector
  ``odoo`` through the customer's CNAME to Odoo's key (what aligns DMARC);
* Microsoft 365: Return-Path at the customer's domain (``include:spf.protection.
  outlook.com``), DKIM ``selector1`` through the tenant's CNAME target;
* Google Workspace: Return-Path at the customer's domain, DKIM ``google``;
* Mailjet: Return-Path rewritten to Mailjet's bounce domain (``bnc3.mailjet.com``), DKIM
  ``mailjet`` at the customer's domain;
* a raw SPF sender: sends unsigned from the address its term names (the lab's address
  for it), Return-Path at the customer's domain.

Where the stack declares a third party's DKIM public key (Google, Mailjet) the lab
cannot hold the provider's private key: it signs with a lab key and publishes that one
instead (``mailstack.lab.translate``); the report says so. Odoo Online/Odoo.sh inbound
is simulated too: ``<db>.odoo.com`` accepts the inbound subdomain's mail and hands it
to the Odoo stand-in (``SaasInbound``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mailstack.core.model import InboundMode, MailDomain, SenderKind
from mailstack.core.record import Record
from mailstack.lab.topology import SENDER_HOSTS, Topology
from mailstack.plan import Plan
from mailstack.rules import dkim, senders, spf

#: Mailjet's bounce domain (the Return-Path of mail it sends without a custom one).
MAILJET_BOUNCE_DOMAIN = "bnc3.mailjet.com"
SUBMISSION_PORT = 587
#: The services that sign with a key of their own (the lab's, in the lab).
SIGNING_KINDS = (SenderKind.ODOO, SenderKind.MICROSOFT, SenderKind.GOOGLE, SenderKind.MAILJET)
TTL = 300


def key_name(kind: SenderKind) -> str:
    """The state's name of the lab key a simulated service signs with."""
    return f"{kind.value}-dkim"


def _include_name(kind: SenderKind) -> str:
    return spf.parse_term(senders.SPF_INCLUDES[kind]).value


@dataclass(frozen=True, slots=True)
class Relay:
    """One simulated sending service: where the probes submit to it and how it sends."""

    id: str  # the e2e sender id: odoo, microsoft, google, mailjet, spf-<n>
    listen: str
    source: str
    helo: str
    selector: str | None = None
    key_file: str | None = None
    bounce_domain: str | None = None
    port: int = SUBMISSION_PORT
    note: str = ""


@dataclass(frozen=True, slots=True)
class SaasInbound:
    """``<db>.odoo.com`` receiving the inbound subdomain's mail for the Odoo stand-in."""

    listen: str
    hostname: str
    accept: tuple[str, ...]
    odoo_url: str
    database: str
    login: str
    password_file: str
    cert: str
    key: str
    port: int = 25


@dataclass(frozen=True, slots=True)
class Simulation:
    """What the services process runs, and the records the lab serves for it."""

    relays: tuple[Relay, ...] = ()
    saas: tuple[SaasInbound, ...] = ()
    records: tuple[Record, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {"relays": [asdict(r) for r in self.relays], "saas": [asdict(s) for s in self.saas]}


def _txt(name: str, value: str) -> Record:
    return Record(name, "TXT", value, TTL)


def _spf_of(address: str) -> str:
    return f"v=spf1 {'ip6' if ':' in address else 'ip4'}:{address} -all"


def records(plan: Plan, topology: Topology, public_keys: dict[SenderKind, str]) -> list[Record]:
    """The third parties' records for the stack's senders (``public_keys``: base64 DER
    of each simulated service's lab key)."""
    stack = plan.stack
    found: list[Record] = []
    for sender in stack.outbound:
        kind = sender.kind
        host = SENDER_HOSTS.get(kind)
        address = topology.host(host).ipv4 if host else None
        if kind in senders.SPF_INCLUDES and address:
            found.append(_txt(_include_name(kind), _spf_of(address)))
        if kind is SenderKind.ODOO:
            found.append(_txt(senders.ODOO_DKIM_TARGET, dkim.txt_value(public_keys[kind])))
            if stack.odoo.saas_host:
                # The Return-Path domain of Odoo's servers (and the TXT a CNAME'd
                # inbound subdomain inherits).
                found.append(_txt(stack.odoo.saas_host, f"v=spf1 {senders.ODOO_SPF_INCLUDE} -all"))
        elif kind is SenderKind.MICROSOFT:
            for name in plan.all_sending_names:
                for entry in senders.dkim_entries(stack, sender, name, None):
                    found.append(_txt(entry.content, dkim.txt_value(public_keys[kind])))
        elif kind is SenderKind.MAILJET:
            found.append(_txt(MAILJET_BOUNCE_DOMAIN, f"v=spf1 {senders.SPF_INCLUDES[kind]} -all"))
    for source in topology.spf_sources:
        assert source.host.ipv4
        if source.include:
            found.append(_txt(source.include, _spf_of(source.host.ipv4)))
        if source.a_name:
            found.append(Record(source.a_name, "A", source.host.ipv4, TTL))
    return list(dict.fromkeys(found))


def _selector(stack: MailDomain, kind: SenderKind) -> str | None:
    sender = stack.sender(kind)
    if sender is None:
        return None
    if kind is SenderKind.ODOO:
        return senders.ODOO_DKIM_SELECTOR
    if kind is SenderKind.MICROSOFT:
        return senders.MICROSOFT_SELECTORS[0]
    if kind in senders.DEFAULT_SELECTORS and sender.dkim_key:
        return sender.dkim_selector or senders.DEFAULT_SELECTORS[kind]
    return None  # Google/Mailjet without a declared key: they send unsigned


def relays(stack: MailDomain, topology: Topology, key_files: dict[SenderKind, str]) -> list[Relay]:
    """One simulated service per declared third-party sender, one per raw SPF term."""
    found: list[Relay] = []
    for kind, host_name in SENDER_HOSTS.items():
        if not stack.sends_via(kind):
            continue
        host = topology.host(host_name)
        assert host.ipv4
        selector = _selector(stack, kind)
        note = ""
        sender = stack.sender(kind)
        if sender and sender.dkim_key:
            note = f"signed with a lab key published at {selector}._domainkey in place of the declared one (the lab cannot hold {kind.value}'s private key)"
        found.append(Relay(
            kind.value, host.ipv4, host.ipv4, host.name, selector, key_files.get(kind) if selector else None,
            MAILJET_BOUNCE_DOMAIN if kind is SenderKind.MAILJET else None, note=note,
        ))
    for source in topology.spf_sources:
        address = source.host.ipv4 or source.host.ipv6
        assert address
        found.append(Relay(f"spf-{source.sender_index}", address, address, source.host.name,
                           note=f"sends unsigned as {source.term} from {address}"))
    return found


def saas_inbound(plan: Plan, topology: Topology, *, odoo_url: str, login: str, password_file: str, cert: str, key: str,
                 local_parts: tuple[str, ...]) -> list[SaasInbound]:
    """Odoo's servers receiving the inbound subdomain (inbound mode odoo-mx) or, in mode
    forward, what the gateways redirect to ``<local>@<db>.odoo.com``."""
    stack = plan.stack
    forward = stack.forwards_through_gateways
    if not stack.odoo.saas_host or not (stack.inbound.mode is InboundMode.ODOO_MX or forward):
        return []
    odoo = topology.odoo
    assert odoo.ipv4
    domains = [stack.odoo.saas_host] if forward else sorted({stack.inbound_domain(d) for d in stack.domains})
    accept = tuple(sorted({f"{local}@{domain}" for domain in domains for local in local_parts}))
    return [SaasInbound(odoo.ipv4, odoo.name, accept, odoo_url, stack.odoo.database or "odoo", login, password_file, cert, key)]
