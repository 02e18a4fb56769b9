"""Where each host of the lab lives: its name, its loopback addresses, and how every
address the stack declares maps onto the lab.

A stack declares real (or documentation) addresses — gateways on 192.0.2.10 and
2001:db8::10, Odoo submitting from 10.0.0.5, a raw SPF sender on 203.0.113.25. The lab
runs each of those hosts on an address of its own network namespace's ``lo``: IPv4 in
127.0.0.0/8, IPv6 in the unique-local ``fd00:6c61:62::/48`` ("lab"). The namespace has
no other interface, so nothing bound there can reach or be reached from outside the
machine. Addresses the stack already declares on loopback (the lab stack's 127.0.40.x)
are kept as they are; every other one gets a lab address, in declaration order, so the
same stack always maps the same way:

===============================  ==========================================
declared single addresses        127.0.50.N, fd00:6c61:62:50::N
declared networks (/16 … /31)    127.0.(70+k).0/p, 127.(70+k).0.0/p; fd00:6c61:62:(70+k)::/p
hosts only the lab adds          127.0.60.N, fd00:6c61:62:60::N
===============================  ==========================================

``build(stack)`` returns the ``Topology``: one ``Host`` per name (each name its own
address, so every address has exactly one PTR) and the list of ``Mapped`` addresses,
which ``mailstack.lab.translate`` substitutes into the stack before planning and
``lab status`` shows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailstack.core import names
from mailstack.core.errors import MailstackError
from mailstack.core.model import InboundMode, MailDomain, SenderKind
from mailstack.rules import spf

DEFAULT_NAMESPACE = "mslab"
DEFAULT_STATE_DIR = "/var/lib/mailstack-lab"
TSIG_KEY_NAME = "mailstack-lab"
#: The lab's own zone (its name server, the simulated raw-SPF senders).
LAB_ZONE = "lab.test"
#: The lab's DNS blocklist (RFC 5782): the lab's stacks ask it instead of the public
#: lists (which the lab cannot reach); it lists only the RFC 5782 §5 test entry.
LAB_BLOCKLIST = f"dnsbl.{LAB_ZONE}"
#: The mailbox provider on the far side: the independent receiver's domains. The v6
#: domain's MX has only an AAAA record, so mail to it proves a gateway's IPv6 path.
RECIPIENT_DOMAIN = "recipient.test"
RECIPIENT6_DOMAIN = "v6.recipient.test"
NAMESERVER = f"ns1.{LAB_ZONE}"
RECEIVER = f"mx.{RECIPIENT_DOMAIN}"
RECEIVER6 = f"mx.{RECIPIENT6_DOMAIN}"
ODOO_PORT = 8069

MAPPED_V4 = ipaddress.IPv4Network("127.0.50.0/24")
LAB_V4 = ipaddress.IPv4Network("127.0.60.0/24")
MAPPED_V6 = ipaddress.IPv6Network("fd00:6c61:62:50::/64")
LAB_V6 = ipaddress.IPv6Network("fd00:6c61:62:60::/64")
NETWORK_BLOCK = 70

#: The hosts standing in for the third parties' sending servers (lab names: the real
#: services send from many hosts; one per service is enough to prove the records).
SENDER_HOSTS: dict[SenderKind, str] = {
    SenderKind.ODOO: "smtp.odoo.com",
    SenderKind.MICROSOFT: "smtp.office365.com",
    SenderKind.GOOGLE: "smtp-relay.google.com",
    SenderKind.MAILJET: "in-v3.mailjet.com",
}
#: Zones the lab itself serves; a stack may not manage a zone inside or around them.
RESERVED_ZONES = (LAB_ZONE, RECIPIENT_DOMAIN, "odoo.com", "outlook.com", "onmicrosoft.com", "mail.microsoft", "mx.microsoft", "google.com", "mailjet.com")


@dataclass(frozen=True, slots=True)
class Host:
    """One named host of the lab and its addresses on the namespace's lo."""

    name: str
    role: str  # dns | gateway | odoo | receiver | mailbox | imap | sender | mta-sts
    ipv4: str | None
    ipv6: str | None = None
    #: What it stands for, for ``lab status`` (e.g. "sender odoo", "gateways[1]").
    label: str = ""

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a for a in (self.ipv4, self.ipv6) if a)


@dataclass(frozen=True, slots=True)
class Mapped:
    """A declared address (or network) and the lab address (or network) standing in for it."""

    key: str  # the declaration key, e.g. "gateways[0].ipv6"
    declared: str
    lab: str


@dataclass(frozen=True, slots=True)
class SpfSource:
    """A raw SPF sender's term the lab can send as: the address it sends from, and the
    records to serve for terms that name another host (``include:``, ``a:``)."""

    sender_index: int  # 1-based among the stack's raw SPF senders: e2e.outbound.spf-<n>
    term: str
    host: Host
    include: str | None = None  # include:<name> → the lab serves an SPF record at name
    a_name: str | None = None  # a:<name> → the lab serves name's A record


@dataclass(frozen=True, slots=True)
class Topology:
    """The lab's hosts and the declared → lab address mapping of one stack."""

    namespace: str
    hosts: tuple[Host, ...]
    mapped: tuple[Mapped, ...]
    dns_port: int = 53
    spf_sources: tuple[SpfSource, ...] = ()
    #: Raw SPF terms the lab cannot send as (mx:, exists:, ptr:, redirect=…), by sender.
    unsimulated: tuple[tuple[int, str], ...] = ()

    def of_role(self, role: str) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.role == role)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def bind(self) -> Host:
        return self.of_role("dns")[0]

    @property
    def bind_address(self) -> str:
        address = self.bind.ipv4
        assert address is not None
        return address

    @property
    def odoo(self) -> Host:
        return self.of_role("odoo")[0]

    @property
    def receiver(self) -> Host:
        return self.host(RECEIVER)

    @property
    def receiver6(self) -> Host:
        return self.host(RECEIVER6)

    def lab_value(self, declared: str) -> str:
        """The lab address or network standing in for a declared one (itself if kept)."""
        for mapped in self.mapped:
            if mapped.declared == declared:
                return mapped.lab
        return declared

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address to configure on lo, each once."""
        found = [a for h in self.hosts for a in h.addresses]
        found += [m.lab for m in self.mapped if "/" not in m.lab]
        return tuple(dict.fromkeys(found))

    def pointers(self) -> dict[str, str]:
        """Address → host name, for the reverse zones (every host has its own address)."""
        return {address: host.name for host in self.hosts for address in host.addresses}


class _Allocator:
    """Hands out lab addresses in order and remembers what each declared value became."""

    def __init__(self) -> None:
        self._next = {MAPPED_V4: 1, LAB_V4: 2, MAPPED_V6: 1, LAB_V6: 2}
        self._networks = 0
        self.mapped: list[Mapped] = []
        self.taken: dict[str, str] = {}

    def _take(self, block: ipaddress.IPv4Network | ipaddress.IPv6Network, what: str) -> str:
        index = self._next[block]
        self._next[block] = index + 1
        address = str(block.network_address + index)
        self._claim(address, what)
        return address

    def _claim(self, address: str, what: str) -> None:
        if address in self.taken and self.taken[address] != what:
            raise MailstackError(f"the lab cannot give {what} the address {address}: {self.taken[address]} has it already")
        self.taken[address] = what

    def lab_host(self, version: int, what: str) -> str:
        return self._take(LAB_V4 if version == 4 else LAB_V6, what)

    def address(self, key: str, declared: str) -> str:
        """The lab address for a declared one (loopback ones are kept)."""
        for mapped in self.mapped:
            if mapped.declared == declared:
                return mapped.lab
        parsed = ipaddress.ip_address(declared)
        if parsed.is_loopback:
            self._claim(declared, key)
            return declared
        lab = self._take(MAPPED_V4 if parsed.version == 4 else MAPPED_V6, key)
        self.mapped.append(Mapped(key, declared, lab))
        return lab

    def network(self, key: str, declared: str) -> str:
        """The lab network for a declared one (same size; a single address maps as one)."""
        network = ipaddress.ip_network(declared, strict=False)
        if network.num_addresses == 1:
            return self.address(key, str(network.network_address))
        if network.is_loopback:
            return str(network)
        for mapped in self.mapped:
            if mapped.declared == str(network):
                return mapped.lab
        block = NETWORK_BLOCK + self._networks
        self._networks += 1
        if network.version == 4 and network.prefixlen >= 24:
            base = f"127.0.{block}.0"
        elif network.version == 4 and network.prefixlen >= 16:
            base = f"127.{block}.0.0"
        elif network.version == 6 and network.prefixlen >= 64:
            base = f"fd00:6c61:62:{block}::"
        elif network.version == 6 and network.prefixlen >= 48:
            base = f"fd00:6c61:{block}::"
        else:
            raise MailstackError(f"{key}: the lab maps networks up to /16 (IPv4) or /48 (IPv6), not {declared}")
        lab = str(ipaddress.ip_network(f"{base}/{network.prefixlen}"))
        self.mapped.append(Mapped(key, str(network), lab))
        return lab


def first_host(network: str) -> str:
    """The address a host in ``network`` sends from in the lab (the first one)."""
    parsed = ipaddress.ip_network(network, strict=False)
    return str(parsed.network_address if parsed.num_addresses == 1 else parsed.network_address + 1)


def _odoo_name(stack: MailDomain) -> str:
    if stack.odoo.saas_host:
        return stack.odoo.saas_host
    host = urlsplit(stack.odoo.url or "").hostname or ""
    return host if host and not names.is_ip(host) else f"odoo.{stack.domain}"


def _check_zones(stack: MailDomain) -> None:
    zones = {stack.dns.zone, *(stack.dns.zone_of(d) for d in stack.alias_domains)}
    for zone in sorted(zones):
        for reserved in RESERVED_ZONES:
            if names.within(zone, reserved) or names.within(reserved, zone):
                raise MailstackError(f"the lab serves {reserved} itself (a simulated third party or its own names); it cannot also run the stack's zone {zone}")


def build(stack: MailDomain, namespace: str = DEFAULT_NAMESPACE) -> Topology:
    """The lab's topology for a stack; MailstackError when it cannot be run in the lab."""
    _check_zones(stack)
    alloc = _Allocator()
    hosts: list[Host] = []
    dns_port = 53
    if stack.dns.provider == "rfc2136" and stack.dns.server and ipaddress.ip_address(stack.dns.server).is_loopback:
        bind_address = alloc.address("dns.server", stack.dns.server)
        dns_port = stack.dns.port
    else:
        bind_address = alloc.lab_host(4, NAMESERVER)
        if stack.dns.server:
            alloc.mapped.append(Mapped("dns.server", stack.dns.server, bind_address))
    hosts.append(Host(NAMESERVER, "dns", bind_address, label="the stack's DNS primary (every zone)"))
    for index, gateway in enumerate(stack.gateways):
        key = f"gateways[{index}]"
        ipv4 = alloc.address(f"{key}.ipv4", gateway.ipv4)
        ipv6 = alloc.address(f"{key}.ipv6", gateway.ipv6) if gateway.ipv6 else None
        hosts.append(Host(gateway.hostname, "gateway", ipv4, ipv6, label=key))
    hosts.append(_odoo_host(stack, alloc))
    hosts.append(Host(RECEIVER, "receiver", alloc.lab_host(4, RECEIVER), label="the independent receiver, and the outside sender"))
    hosts.append(Host(RECEIVER6, "receiver", None, alloc.lab_host(6, RECEIVER6), label="the independent receiver over IPv6"))
    if stack.inbound.mode in (InboundMode.IMAP, InboundMode.FORWARD):
        for mx in stack.inbound.mx:
            hosts.append(Host(mx.host, "mailbox", alloc.lab_host(4, mx.host), label="the mailbox provider's MX (the independent receiver)"))
    imap = stack.inbound.imap if stack.inbound.mode is InboundMode.IMAP else None
    if imap is not None and all(h.name != imap.host for h in hosts):
        hosts.append(Host(imap.host, "imap", alloc.lab_host(4, imap.host), label="the mailbox provider's IMAP (Dovecot on the receiver's mailbox)"))
    for sender in stack.outbound:
        name = SENDER_HOSTS.get(sender.kind)
        if name and all(h.name != name for h in hosts):
            hosts.append(Host(name, "sender", alloc.lab_host(4, name), label=f"{sender.kind.value}'s sending server (simulated)"))
    sources, unsimulated = _spf_sources(stack, alloc, hosts)
    hosts += [s.host for s in sources if all(h.name != s.host.name for h in hosts)]
    if stack.mta_sts and stack.mta_sts.serve != "gateway":  # else the plan points mta-sts.<domain> at the gateways
        for domain in stack.domains:
            name = f"mta-sts.{domain}"
            hosts.append(Host(name, "mta-sts", alloc.lab_host(4, name), label="MTA-STS policy host (HTTPS, lab CA)"))
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise MailstackError(f"the lab has two hosts named {host.name}: give the stack's hosts distinct names")
        seen.add(host.name)
    return Topology(namespace, tuple(hosts), tuple(alloc.mapped), dns_port, tuple(sources), tuple(unsimulated))


def _odoo_host(stack: MailDomain, alloc: _Allocator) -> Host:
    """Odoo: on premise at the first address it submits from (``gateway.odooAddresses``),
    on Odoo's servers at ``<db>.odoo.com`` (web, XML-RPC and inbound mail)."""
    name = _odoo_name(stack)
    if stack.gateway and not stack.odoo.saas:
        lab_networks = [alloc.network(f"gateway.odooAddresses[{i}]", n) for i, n in enumerate(stack.gateway.odoo_addresses)]
        v4 = [n for n in lab_networks if ipaddress.ip_network(n).version == 4]
        if v4:
            address = first_host(v4[0])
            return Host(name, "odoo", address, label="Odoo (the stand-in), submitting from gateway.odooAddresses")
    url_host = urlsplit(stack.odoo.url or "").hostname
    if url_host and names.is_ip(url_host):
        return Host(name, "odoo", alloc.address("odoo.url", url_host), label="Odoo (the stand-in)")
    return Host(name, "odoo", alloc.lab_host(4, name), label="Odoo (the stand-in)" + (" on Odoo's servers" if stack.odoo.saas else ""))


def _spf_sources(stack: MailDomain, alloc: _Allocator, hosts: list[Host]) -> tuple[list[SpfSource], list[tuple[int, str]]]:
    sources: list[SpfSource] = []
    unsimulated: list[tuple[int, str]] = []
    raw = [s for s in stack.outbound if s.kind is SenderKind.SPF]
    for number, sender in enumerate(raw, start=1):
        index = stack.outbound.index(sender)
        for term_number, term in enumerate(sender.spf_terms, start=1):
            parsed = spf.parse_term(term)
            name = f"spf-{number}-{term_number}.{LAB_ZONE}"
            key = f"outbound[{index}]"
            if parsed.qualifier not in ("", "+"):
                unsimulated.append((number, term))  # a term that does not authorise
            elif parsed.name in ("ip4", "ip6"):
                network = alloc.network(f"{key}.spf", parsed.value)
                address = first_host(network)
                v4 = address if parsed.name == "ip4" else None
                v6 = address if parsed.name == "ip6" else None
                sources.append(SpfSource(number, term, Host(name, "sender", v4, v6, label=f"raw SPF sender {number} ({term})")))
            elif parsed.name in ("include", "a") and parsed.value and not set("%/") & set(parsed.value):
                host = Host(name, "sender", alloc.lab_host(4, name), label=f"raw SPF sender {number} ({term})")
                sources.append(SpfSource(number, term, host, include=parsed.value if parsed.name == "include" else None,
                                         a_name=parsed.value if parsed.name == "a" else None))
            else:
                unsimulated.append((number, term))
    return sources, unsimulated


def reverse_zone(address: str) -> str:
    """The reverse zone holding an address's PTR: its /24 (IPv4) or /64 (IPv6)."""
    pointer = ipaddress.ip_address(address).reverse_pointer
    labels = pointer.split(".")
    keep = 3 if ipaddress.ip_address(address).version == 4 else 16
    return ".".join(labels[-(keep + 2):])


def iter_addresses(topology: Topology) -> Iterator[tuple[str, str]]:
    """(address, host name) of every host, for tables."""
    for host in topology.hosts:
        for address in host.addresses:
            yield address, host.name

