"""Where each role of the lab lives: names and loopback addresses, from the stack.

The lab stack (``stacks/Pulumi.lab.yaml``) already says where the DNS primary, the
gateway and Odoo are; the lab adds what production has but the stack does not
declare: a recipient domain with its mail server (which also plays the outside sender
for inbound probes) and the reverse zone. Everything is checked to stay on loopback,
so a lab can never send a packet off the machine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailstack.core.errors import MailstackError
from mailstack.core.model import MailDomain

DEFAULT_NAMESPACE = "mslab"
DEFAULT_STATE_DIR = "/var/lib/mailstack-lab"
RECIPIENT_DOMAIN = "recipient.test"
RECIPIENT_ADDRESS = "127.0.40.30"
TSIG_KEY_NAME = "mailstack-lab"


@dataclass(frozen=True, slots=True)
class Topology:
    """The lab's names and addresses; every address is in 127.0.0.0/8."""

    namespace: str
    domain: str
    bind_address: str
    bind_port: int
    gateway_hostname: str
    gateway_address: str
    odoo_address: str
    odoo_port: int
    recipient_domain: str = RECIPIENT_DOMAIN
    recipient_address: str = RECIPIENT_ADDRESS

    @property
    def recipient_host(self) -> str:
        return f"mx.{self.recipient_domain}"

    @property
    def addresses(self) -> dict[str, str]:
        """Each role's address, for ``lab status`` and the docs."""
        return {
            "bind": self.bind_address,
            "gateway": self.gateway_address,
            "odoo": self.odoo_address,
            "recipient": self.recipient_address,
        }

    @property
    def reverse_zones(self) -> tuple[str, ...]:
        """The /24 reverse zones of the lab's addresses (PTR for the gateway: FCrDNS)."""
        zones = set()
        for address in self.addresses.values():
            a, b, c, _ = address.split(".")
            zones.add(f"{c}.{b}.{a}.in-addr.arpa")
        return tuple(sorted(zones))


def _loopback(address: str, what: str) -> str:
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError as err:
        raise MailstackError(f"the lab needs an IPv4 address for {what}, not {address!r}") from err
    if not parsed.is_loopback:
        raise MailstackError(f"the lab runs on loopback only: {what} is {address}, not in 127.0.0.0/8")
    return address


def from_stack(stack: MailDomain, namespace: str = DEFAULT_NAMESPACE) -> Topology:
    """The lab's topology for a stack; MailstackError when the stack cannot be a lab."""
    if stack.dns.provider != "rfc2136" or not stack.dns.server:
        raise MailstackError("a lab stack publishes by RFC 2136: set mailstack:dns.provider rfc2136 and dns.server")
    if not stack.gateways:
        raise MailstackError("a lab stack needs a gateway (mailstack:gateways): the lab runs it")
    if stack.odoo.saas or not stack.odoo.url:
        raise MailstackError("a lab stack runs Odoo on premise (mailstack:odoo.hosting onpremise, odoo.url)")
    url = urlsplit(stack.odoo.url)
    if url.scheme != "http" or not url.hostname:
        raise MailstackError(f"the lab's Odoo stand-in speaks plain http on loopback, not {stack.odoo.url}")
    gateway = stack.gateways[0]
    topology = Topology(
        namespace=namespace,
        domain=stack.domain,
        bind_address=_loopback(stack.dns.server, "mailstack:dns.server"),
        bind_port=stack.dns.port,
        gateway_hostname=gateway.hostname,
        gateway_address=_loopback(gateway.ipv4, "mailstack:gateways[0].ipv4"),
        odoo_address=_loopback(url.hostname, "mailstack:odoo.url"),
        odoo_port=url.port or 80,
    )
    used = list(topology.addresses.values())
    if len(set(used)) != len(used):
        raise MailstackError(f"each lab role needs its own address, found {', '.join(used)}")
    return topology
