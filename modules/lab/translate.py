"""The stack the lab plans with: the same declaration, with the lab's addresses.

The records a stack publishes carry its real addresses (SPF ``ip4:192.0.2.10``, the
gateway's A record). Inside the lab those hosts run on loopback addresses of the
namespace (``mailstack.lab.topology``), so SPF and A must name *those* addresses, or no
probe could pass. Rather than patching records after the fact, the lab builds a
translated ``MailDomain`` from the validated one with ``dataclasses.replace`` — every
gateway, Odoo address and raw SPF address replaced by its lab address, DNS published
by RFC 2136 to the lab's BIND whatever ``dns.provider`` says, third-party DKIM keys the
stack declares (Google, Mailjet) replaced by the lab's own (it cannot hold the real
private keys) — and hands it to ``mailstack.plan.build``: the production code path, so
the lab proves the plan, the renderer and the provider as they run for real.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping

from mailstack.core import names
from mailstack.core.model import InboundMode, MailDomain, Sender, SenderKind
from mailstack.lab.topology import LAB_BLOCKLIST, ODOO_PORT, TSIG_KEY_NAME, Topology
from mailstack.rules import spf

_SPF_ADDRESS = re.compile(r"(?<![\w-])(ip[46]:)([0-9A-Fa-f:.]+(?:/\d+)?)")

#: Senders whose DKIM public key the stack declares (from the provider's console).
DECLARED_KEY_SENDERS = (SenderKind.GOOGLE, SenderKind.MAILJET)


def odoo_url(topology: Topology) -> str:
    """The Odoo stand-in's base URL, which replaces ``odoo.url`` in the lab."""
    return f"http://{topology.odoo.ipv4}:{ODOO_PORT}"


def _lab_network(topology: Topology, value: str) -> str:
    network = ipaddress.ip_network(value, strict=False)
    if network.num_addresses == 1:
        return topology.lab_value(str(network.network_address))
    return topology.lab_value(str(network))


def _term(topology: Topology, term: str) -> str:
    parsed = spf.parse_term(term)
    if parsed.name not in ("ip4", "ip6"):
        return term  # include:/a: names are served by the lab as they are
    prefix = term[: term.index(":") + 1]
    return prefix + _lab_network(topology, parsed.value)


def _sender(topology: Topology, sender: Sender, lab_keys: Mapping[SenderKind, str]) -> Sender:
    if sender.kind is SenderKind.SPF:
        return dataclasses.replace(sender, spf_terms=tuple(_term(topology, t) for t in sender.spf_terms))
    if sender.kind in DECLARED_KEY_SENDERS and sender.dkim_key:
        return dataclasses.replace(sender, dkim_key=lab_keys[sender.kind])
    return sender


#: The alias the lab's probes write to where the stack declares none and mail does
#: not come through its gateways (Odoo's servers, a mailbox provider): the lab's own
#: alias, which ``lab_stack`` declares so that the checks (``odoo.aliases``, the e2e
#: targets) expect it like any declared alias.
PROBE_ALIAS = "probe"


def lab_stack(stack: MailDomain, topology: Topology, lab_keys: Mapping[SenderKind, str]) -> MailDomain:
    """``stack`` as the lab runs it. ``lab_keys`` holds the lab's DKIM public key
    (base64 DER) for each sender in ``DECLARED_KEY_SENDERS`` the stack declares."""
    gateways = tuple(
        dataclasses.replace(g, ipv4=topology.lab_value(g.ipv4), ipv6=topology.lab_value(g.ipv6) if g.ipv6 else None)
        for g in stack.gateways
    )
    dns = dataclasses.replace(
        stack.dns, provider="rfc2136", server=topology.bind_address, port=topology.dns_port, tsig_key_name=TSIG_KEY_NAME,
        adopt=adopted(stack, topology),
    )
    odoo = dataclasses.replace(stack.odoo, url=odoo_url(topology))
    settings = stack.gateway
    if settings is not None:
        settings = dataclasses.replace(
            settings,
            odoo_addresses=tuple(_lab_network(topology, n) for n in settings.odoo_addresses),
            relay_host=None,  # the lab's gateways deliver to the receiver themselves
            mailgate=dataclasses.replace(settings.mailgate, url=odoo_url(topology)),
        )
    outbound = tuple(_sender(topology, s, lab_keys) for s in stack.outbound)
    inbound = stack.inbound
    if inbound.mode not in (InboundMode.GATEWAY, InboundMode.NONE) and not inbound.aliases:
        inbound = dataclasses.replace(inbound, aliases=(PROBE_ALIAS,))
    # reputation.dnsbl asks the lab's own list: the public ones are not reachable here
    checks = dataclasses.replace(stack.checks, blocklists=() if stack.checks.blocklists == () else (LAB_BLOCKLIST,))
    return dataclasses.replace(stack, gateways=gateways, dns=dns, odoo=odoo, gateway=settings, outbound=outbound, inbound=inbound, checks=checks)


def spf_text(topology: Topology, text: str) -> str:
    """An SPF value (or TXT text) with its declared ``ip4:``/``ip6:`` terms mapped."""
    def mapped(match: re.Match[str]) -> str:
        try:
            return match.group(1) + _lab_network(topology, match.group(2))
        except ValueError:
            return match.group(0)
    return _SPF_ADDRESS.sub(mapped, text) if "v=spf1" in text else text


def adopted(stack: MailDomain, topology: Topology) -> tuple[tuple[str, str], ...]:
    """``dns.adopt`` as the lab applies it: on RFC 2136 the live values to take over,
    mapped like the seeded zone's (so an old SPF is still recognised); a Cloudflare
    stack's entries are import ids, which mean nothing to the lab's BIND: left out."""
    if stack.dns.provider != "rfc2136":
        return ()
    return tuple((key, spf_text(topology, value)) for key, value in stack.dns.adopt)


def seed_zone(text: str, topology: Topology, replaced: Iterable[tuple[str, str]]) -> str:
    """A seed zone's text (absolute names, one record per line, as ``Seed.zone_text``)
    with the declared addresses its A, AAAA and SPF records hold mapped as the stack's
    are — the seed is the real zone, the lab runs the hosts on its own addresses — and
    without the record sets at ``replaced`` (name, TYPE): hosts the lab publishes itself."""
    dropped = set(replaced)
    lines = []
    for line in text.splitlines():
        fields = line.split(None, 4)
        if len(fields) == 5 and not line.startswith(("$", ";")):
            name, ttl, klass, rdtype, rdata = fields
            if (names.normalize(name), rdtype.upper()) in dropped:
                continue
            if rdtype.upper() in ("A", "AAAA"):
                rdata = topology.lab_value(rdata.strip())
            elif rdtype.upper() == "TXT":
                rdata = spf_text(topology, rdata)
            line = f"{name} {ttl} {klass} {rdtype} {rdata}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def substitutions(stack: MailDomain) -> list[str]:
    """What the lab publishes differently from the declaration, in words (for the report)."""
    notes = []
    for sender in stack.outbound:
        if sender.kind in DECLARED_KEY_SENDERS and sender.dkim_key:
            notes.append(
                f"{sender.kind.value}: the declared DKIM public key is replaced by the lab's own "
                "(the lab cannot sign with the provider's private key)"
            )
    if stack.checks.blocklists != ():
        notes.append(f"checks.blocklists: the lab asks its own list {LAB_BLOCKLIST} (RFC 5782 test entry only), not the public ones")
    if stack.gateway and stack.gateway.relay_host:
        notes.append(f"gateway.relayHost {stack.gateway.relay_host.postfix} is not simulated: the lab's gateways deliver directly")
    return notes
