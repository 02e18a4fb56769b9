"""Sender profiles: what each kind of sender adds to SPF and which DKIM records it needs.

The values are the providers' documented ones (see shared/design.md §2-3); keys and
tenant names are inputs of the stack, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstack.core.model import MailDomain, MxHost, Sender, SenderKind
from mailstack.rules import dkim

ODOO_SPF_INCLUDE = "include:_spf.odoo.com"
ODOO_DKIM_SELECTOR = "odoo"
ODOO_DKIM_TARGET = "odoo._domainkey.odoo.com"

SPF_INCLUDES: dict[SenderKind, str] = {
    SenderKind.ODOO: ODOO_SPF_INCLUDE,
    SenderKind.MAILJET: "include:spf.mailjet.com",
    SenderKind.GOOGLE: "include:_spf.google.com",
    SenderKind.MICROSOFT: "include:spf.protection.outlook.com",
}

DEFAULT_SELECTORS: dict[SenderKind, str] = {
    SenderKind.GOOGLE: "google",
    SenderKind.MAILJET: "mailjet",
}

#: Microsoft 365 publishes two DKIM selectors per domain, rotated by Microsoft.
MICROSOFT_SELECTORS = ("selector1", "selector2")

#: Inbound MX hosts of the hosted mailbox providers, for ``inbound.mx: google|microsoft``.
GOOGLE_MX = (MxHost("smtp.google.com", 1),)


#: The priority Microsoft 365's admin centre gives its MX.
MICROSOFT_MX_PRIORITY = 0


def microsoft_mx(domain: str) -> tuple[MxHost, ...]:
    """Microsoft 365's classic MX for a domain, the documented default:
    ``<domain-dashed>.mail.protection.outlook.com``. Tenants with inbound DANE get a
    tenant-specific ``<domain-dashed>.<x>-v1.mx.microsoft`` instead, which cannot be
    derived: the stack gives it (``inbound.mx: {microsoft: HOST}``)."""
    return (MxHost(f"{domain.replace('.', '-')}.mail.protection.outlook.com", MICROSOFT_MX_PRIORITY),)


def microsoft_dkim_target(selector: str, domain: str, tenant: str) -> str:
    """Microsoft 365's classic DKIM CNAME target, the documented default:
    ``<selector>-<domain-dashed>._domainkey.<tenant>.onmicrosoft.com``. Domains set up
    since 2025 get ``…._domainkey.<tenant>.<x>-v1.dkim.mail.microsoft`` from the admin
    centre, which cannot be derived: the stack gives those (``outbound[].dkim``)."""
    return f"{selector}-{domain.replace('.', '-')}._domainkey.{tenant}.onmicrosoft.com"


@dataclass(frozen=True, slots=True)
class DkimEntry:
    """One DKIM record a sender needs at ``<selector>._domainkey.<domain>``."""

    selector: str
    type: str  # 'CNAME' or 'TXT'
    content: str
    needs_gateway_key: bool = False


def spf_terms(stack: MailDomain, sender: Sender) -> tuple[str, ...]:
    """The SPF terms a sender contributes to the domain's one SPF record."""
    if sender.kind is SenderKind.SPF:
        return sender.spf_terms
    if sender.kind is SenderKind.GATEWAY:
        return gateway_terms(stack)
    return (SPF_INCLUDES[sender.kind],)


def gateway_terms(stack: MailDomain) -> tuple[str, ...]:
    """``ip4:``/``ip6:`` of every gateway: the addresses the gateways send from."""
    terms: list[str] = []
    for gateway in stack.gateways:
        terms.append(f"ip4:{gateway.ipv4}")
        if gateway.ipv6:
            terms.append(f"ip6:{gateway.ipv6}")
    return tuple(terms)


def forwarder_terms(stack: MailDomain) -> tuple[str, ...]:
    """The SPF terms a forwarding gateway needs: it redirects mail to ``<db>.odoo.com``
    with the envelope sender rewritten by SRS to ``SRS0=…@<domain>`` (postsrsd), so
    Odoo's side checks SPF of the stack's domain for the gateway's address."""
    if not stack.forwards_through_gateways or stack.sends_via(SenderKind.GATEWAY):
        return ()
    return gateway_terms(stack)


def return_path_domain(stack: MailDomain, sender: Sender, domain: str) -> str | None:
    """The domain of the Return-Path (RFC5321.MailFrom, what SPF checks) a sender uses
    for mail From ``domain``; None when it is the provider's own and unknown here."""
    if sender.kind is SenderKind.ODOO:
        # Odoo Online / Odoo.sh: bounce@<db>.odoo.com, never the customer's domain.
        return stack.odoo.saas_host or domain
    if sender.kind is SenderKind.MAILJET:
        return None  # Mailjet's own bounce domain unless a custom Return-Path is set up
    return domain  # gateway (bounce@domain), Google, Microsoft 365, raw SPF: the From domain


def dkim_entries(
    stack: MailDomain, sender: Sender, domain: str, gateway_key: str | None, previous_key: str | None = None,
) -> list[DkimEntry]:
    """The DKIM records a sender needs for one domain. The gateway's: its key, and
    while a rotation runs (``dkim.previous``) the previous key too (docs/gateway.md)."""
    if sender.kind is SenderKind.ODOO:
        return [DkimEntry(ODOO_DKIM_SELECTOR, "CNAME", ODOO_DKIM_TARGET)]
    if sender.kind is SenderKind.GATEWAY:
        entries = [DkimEntry(stack.dkim.selector, "TXT", dkim.txt_value(gateway_key or dkim.PENDING_KEY), needs_gateway_key=True)]
        if stack.dkim.previous:
            entries.append(DkimEntry(stack.dkim.previous, "TXT", dkim.txt_value(previous_key or dkim.PENDING_KEY), needs_gateway_key=True))
        return entries
    if sender.kind is SenderKind.MICROSOFT:
        given = {selector: target for name, selector, target in sender.dkim_targets if name == domain}
        return [
            DkimEntry(sel, "CNAME", given.get(sel) or microsoft_dkim_target(sel, domain, sender.tenant or ""))
            for sel in MICROSOFT_SELECTORS
        ]
    if sender.kind in (SenderKind.GOOGLE, SenderKind.MAILJET) and sender.dkim_key:
        selector = sender.dkim_selector or DEFAULT_SELECTORS[sender.kind]
        return [DkimEntry(selector, "TXT", dkim.txt_value(sender.dkim_key))]
    return []
