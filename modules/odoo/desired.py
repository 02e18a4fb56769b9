"""What mailstack declares inside Odoo, derived once from the plan.

* one ``mail.alias.domain`` per mail domain: its name is the name Odoo receives on
  (``inbound.subdomain`` included), its bounce/catchall/default-from the stack's
  ``odoo.bounce``/``catchall``/``notifications``, and the companies that use it
  (``odoo.companies``);
* the outgoing ``ir.mail_server``: the first gateway as Odoo submits to it (the values
  odoo.conf gets, ``mailstack.gateway.render.odoo_smtp``) or ``odoo.outgoingServer``,
  with ``from_filter`` = the plan's signing domains, so that a From Odoo sends is
  either covered by DKIM and SPF or rewritten to ``notifications@`` (Odoo 17's
  ``_find_mail_server``/``_prepare_email_message``);
* for ``inbound.mode: imap``, the ``fetchmail.server`` of ``inbound.imap`` and the
  interval of Odoo's "Mail: Fetchmail Service" cron.

Each record carries a ``key``: the stable part of its external id
(``mailstack.<key>`` in ``ir.model.data``), by which mailstack finds what it created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailstack.core.model import InboundMode, OdooSetting
from mailstack.plan import Plan

#: The module of the external ids mailstack marks its records with.
MODULE = "mailstack"
#: Odoo 17's cron that runs fetchmail (addons/mail/data/ir_cron_data.xml).
FETCHMAIL_CRON = "mail.ir_cron_mail_gateway_action"


def slug(text: str) -> str:
    """An external-id part: lowercase letters, digits and ``_`` (no periods)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class AliasDomain:
    """One ``mail.alias.domain``."""

    key: str
    name: str
    bounce_alias: str
    catchall_alias: str
    default_from: str
    #: ``res.company.name`` of the companies whose ``alias_domain_id`` is this one.
    companies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MailServer:
    """The outgoing ``ir.mail_server``; its password is ``mailstack:smtpAuthPassword``."""

    key: str
    name: str
    smtp_host: str
    smtp_port: int
    smtp_encryption: str
    smtp_user: str | None
    from_filter: str
    sequence: int = 10


@dataclass(frozen=True, slots=True)
class IncomingServer:
    """The ``fetchmail.server`` (IMAP, implicit TLS); password ``mailstack:imapPassword``."""

    key: str
    name: str
    server: str
    port: int
    is_ssl: bool
    user: str
    #: ``object_id``'s model: records for mail without an alias; None: aliases only.
    model: str | None
    #: Minutes between fetches (the cron's ``interval_number``).
    interval: int


@dataclass(frozen=True, slots=True)
class Desired:
    """Everything the stack manages in Odoo (empty when ``odoo.manage`` is)."""

    alias_domains: tuple[AliasDomain, ...] = ()
    mail_server: MailServer | None = None
    incoming_server: IncomingServer | None = None


def alias_domains(plan: Plan) -> tuple[AliasDomain, ...]:
    """The alias domains Odoo uses, one per mail domain (declared or not managed)."""
    stack = plan.stack
    result = []
    for domain in stack.domains:
        name = stack.inbound_domain(domain)
        companies = tuple(company for company, alias_domain in stack.odoo.companies if alias_domain == name)
        result.append(AliasDomain(f"alias_domain_{slug(domain)}", name, stack.odoo.bounce, stack.odoo.catchall,
                                  stack.odoo.notifications, companies))
    return tuple(result)


def mail_server(plan: Plan) -> MailServer | None:
    """The outgoing server Odoo should send through (None: none can be derived)."""
    stack = plan.stack
    from_filter = ",".join(plan.signing_domains)
    key = f"outgoing_server_{slug(stack.domain)}"
    declared = stack.odoo.outgoing_server
    if declared is not None:
        return MailServer(key, f"mailstack: {declared.host}", declared.host, declared.port, declared.security, declared.user, from_filter)
    if not stack.gateways or stack.gateway is None:
        return None
    from mailstack.gateway.render import odoo_smtp  # Jinja: loaded only when a server is derived (check's start-up)

    gateway = stack.gateways[0]
    submission = odoo_smtp(stack.gateway, gateway)
    return MailServer(key, f"mailstack: {gateway.hostname}", submission.host, submission.port,
                      "starttls" if submission.starttls else "none", submission.user, from_filter)


def incoming_server(plan: Plan) -> IncomingServer | None:
    """The incoming server of ``inbound.imap`` (mode imap)."""
    stack = plan.stack
    imap = stack.inbound.imap
    if stack.inbound.mode is not InboundMode.IMAP or imap is None:
        return None
    return IncomingServer(f"incoming_server_{slug(stack.domain)}", f"mailstack: {imap.user}@{imap.host}", imap.host, imap.port,
                          imap.security == "ssl", imap.user, imap.model, imap.interval)


def desired(plan: Plan) -> Desired:
    """What ``odoo.manage`` asks mailstack to keep in Odoo."""
    odoo = plan.stack.odoo
    return Desired(
        alias_domains=alias_domains(plan) if odoo.manages(OdooSetting.ALIAS_DOMAINS) else (),
        mail_server=mail_server(plan) if odoo.manages(OdooSetting.OUTGOING_SERVER) else None,
        incoming_server=incoming_server(plan) if odoo.manages(OdooSetting.INCOMING_SERVER) else None,
    )
