"""What a declaration implies before any record is written: the names mail is sent
from, each domain's MX set, the zones written to, and the domains the gateways relay
and sign for. ``plan.build`` computes them once into the ``Plan``; everything else
reads them there rather than deriving them again."""

from __future__ import annotations

from mailstack.core import names
from mailstack.core.model import InboundMode, MailDomain, MxHost


#: Inbound modes in which Odoo receives on the inbound name itself, so that name is
#: Odoo's alias domain: Odoo's servers (odoo-mx) or the own gateways relay it to Odoo.
ALIAS_DOMAIN_MODES = (InboundMode.ODOO_MX, InboundMode.GATEWAY)


def sending_names(stack: MailDomain, domain: str) -> tuple[str, ...]:
    """The names mail is sent from for one domain: the domain, and Odoo's inbound
    subdomain when Odoo uses it as its alias domain — Odoo 17 sends notifications and
    bounces from the alias domain (``notifications@``/``bounce@<alias domain>``), and
    its alias domain is the name it receives on, whether Odoo's servers (odoo-mx) or the
    own gateways (gateway) deliver that name to it. So the subdomain needs SPF and DKIM
    too, and the gateways sign it."""
    found = [domain]
    if stack.inbound.mode in ALIAS_DOMAIN_MODES and stack.inbound.subdomain:
        found.append(stack.inbound_domain(domain))
    return tuple(found)


def mx_hosts(stack: MailDomain, domain: str) -> tuple[MxHost, ...]:
    """The MX set of one domain's inbound name, as declared."""
    mode = stack.inbound.mode
    if stack.gateways_receive:
        return tuple(MxHost(g.hostname, g.priority) for g in stack.gateways)
    if mode is InboundMode.ODOO_MX and stack.inbound.record == "mx" and stack.odoo.saas_host:
        return (MxHost(stack.odoo.saas_host, 10),)
    if mode in (InboundMode.FORWARD, InboundMode.IMAP):
        return stack.inbound.mx
    return ()


def managed_zones(stack: MailDomain) -> tuple[str, ...]:
    """The zones the stack writes to: the main zone and each alias domain's zone."""
    zones = {stack.dns.zone, *(stack.dns.zone_of(d) for d in stack.alias_domains)}
    return tuple(sorted(zones))


def relay_domains(stack: MailDomain) -> tuple[str, ...]:
    """The domains the gateways receive for: each domain's inbound name, when the MX
    points at the gateways (inbound mode gateway, or forward through them); none for an
    outbound-only gateway."""
    if not stack.gateways_receive:
        return ()
    return tuple(sorted({stack.inbound_domain(domain) for domain in stack.domains}))


def in_managed_zone(name: str, zones: tuple[str, ...]) -> bool:
    """True when ``name`` lives in one of the zones the stack writes to."""
    return any(names.within(name, zone) for zone in zones)
