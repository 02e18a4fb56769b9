"""The keys of ``mailstack:odoo`` and ``mailstack:inbound.imap`` that say what mailstack
sets inside Odoo: ``manage``, ``login``, ``companies``, ``outgoingServer``, and the
mailbox Odoo fetches by IMAP.

Each reader validates its values for their kind and reports at the key; ``cross_check``
then refuses combinations Odoo 17 cannot carry out (an incoming server without an IMAP
mailbox, STARTTLS for fetchmail, a company on an alias domain the stack does not have).
"""

from __future__ import annotations

import re
from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core.errors import quote
from mailstack.core.model import (
    IMAP_SECURITY,
    SMTP_SECURITY,
    ImapMailbox,
    InboundMode,
    MailDomain,
    OdooSetting,
    OutgoingServer,
)
from mailstack.rules import limits

#: An Odoo model name (``crm.lead``, ``helpdesk.ticket``): ``ir.model.model``.
_MODEL = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
#: Companies one stack may point at alias domains (one per alias domain at most).
COMPANIES = limits.ALIAS_DOMAINS


def company_name(value: Any) -> str:
    """A ``res.company`` name: any text (no control characters, ``kinds.text``)."""
    return kinds.text(value)


def folder(value: Any) -> str:
    """An IMAP folder name (it goes into a quoted IMAP string): no quote or backslash."""
    raw = kinds.text(value)
    if '"' in raw or "\\" in raw or len(raw) > 200:
        raise ValueError(f"{quote(value)} is not an IMAP folder name (no quotes or backslashes, at most 200)")
    return raw


def model_name(value: Any) -> str:
    """An Odoo model name such as ``crm.lead``."""
    if not isinstance(value, str) or not _MODEL.match(value):
        raise ValueError(f"{quote(value)} is not an Odoo model name (e.g. crm.lead)")
    return value


def read_manage(reader: ConfigReader, value: Any, path: Path) -> tuple[OdooSetting, ...]:
    """``odoo.manage``: a list of aliasDomains, outgoingServer, incomingServer."""
    choices = tuple(s.value for s in OdooSetting)
    found: list[OdooSetting] = []
    for index, item in enumerate(reader.sequence(value, path) or []):
        chosen = reader.choice(item, (*path, index), choices)
        if chosen is not None and OdooSetting(chosen) not in found:
            found.append(OdooSetting(chosen))
    return tuple(found)


def read_companies(reader: ConfigReader, value: Any, path: Path) -> tuple[tuple[str, str], ...]:
    """``odoo.companies``: ``{<res.company name>: <alias domain>}``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        reader.fail(path, "must be a mapping of company name to alias domain, e.g. {\"My Company\": example.com}")
        return ()
    problem = COMPANIES.exceeded(len(value), "companies")
    if problem:
        reader.fail(path, problem)
        return ()
    result: list[tuple[str, str]] = []
    for name, domain in value.items():
        key = str(name)[:80]
        company = reader.convert(name, (*path, key), company_name)
        alias_domain = reader.convert(domain, (*path, key), kinds.domain)
        if company and alias_domain:
            result.append((company, alias_domain))
    return tuple(result)


def read_outgoing(reader: ConfigReader, value: Any, path: Path) -> OutgoingServer | None:
    """``odoo.outgoingServer``: ``{host, port, security, user}`` (host required)."""
    if value is None:
        return None
    data = reader.mapping(value, path, ("host", "port", "security", "user"))
    if data is None:
        return None
    if data.get("host") is None:
        reader.fail((*path, "host"), "is required (the SMTP server Odoo sends through)")
        return None
    host = reader.convert(data["host"], (*path, "host"), kinds.hostname)
    security = reader.choice(data.get("security"), (*path, "security"), SMTP_SECURITY, default="starttls")
    default_port = {"none": 25, "starttls": 587, "ssl": 465}.get(security or "starttls", 587)
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=default_port)
    user = None
    if data.get("user") is not None:
        user = reader.convert(data["user"], (*path, "user"), kinds.login_name)
    if host is None or security is None or port is None:
        return None
    return OutgoingServer(host, port, security, user)


def read_imap(reader: ConfigReader, value: Any, path: Path, mode: InboundMode) -> ImapMailbox | None:
    """``inbound.imap``: ``{host, port, security, user, folder, interval, model}``."""
    if value is None:
        return None
    if mode is not InboundMode.IMAP:
        reader.fail(path, f"only applies to mode imap, not {mode.value}")
        return None
    data = reader.mapping(value, path, ("host", "port", "security", "user", "folder", "interval", "model"))
    if data is None:
        return None
    for key in ("host", "user"):
        if data.get(key) is None:
            reader.fail((*path, key), "is required")
    host = reader.convert(data["host"], (*path, "host"), kinds.hostname) if data.get("host") is not None else None
    user = reader.convert(data["user"], (*path, "user"), kinds.login_name) if data.get("user") is not None else None
    security = reader.choice(data.get("security"), (*path, "security"), IMAP_SECURITY, default="ssl")
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=993 if security == "ssl" else 143)
    folder_name = "INBOX"
    if data.get("folder") is not None:
        folder_name = reader.convert(data["folder"], (*path, "folder"), folder) or "INBOX"
    interval = reader.integer(data.get("interval"), (*path, "interval"), 1, 1440, default=5)
    model = reader.convert(data["model"], (*path, "model"), model_name) if data.get("model") is not None else None
    if host is None or user is None or security is None or port is None or interval is None:
        return None
    return ImapMailbox(host, user, port, security, folder_name, interval, model)


def cross_check(reader: ConfigReader, stack: MailDomain) -> None:
    """Refuse what Odoo 17 cannot carry out, naming the key to change."""
    odoo = stack.odoo
    if odoo.manage and not odoo.rpc_url:
        reader.fail(("odoo", "url"), "is required when odoo.manage is set (mailstack reaches Odoo's XML-RPC there)")
    if odoo.manage and not odoo.database:
        reader.fail(("odoo", "database"), "is required when odoo.manage is set (the database mailstack logs into)")
    if odoo.manages(OdooSetting.INCOMING_SERVER):
        imap = stack.inbound.imap
        if stack.inbound.mode is not InboundMode.IMAP:
            reader.fail(("odoo", "manage"), f"incomingServer needs inbound.mode imap (Odoo fetches a mailbox), not {stack.inbound.mode.value}")
        elif imap is None:
            reader.fail(("inbound", "imap"), "is required when odoo.manage lists incomingServer: {host, user, port, security, folder, interval}")
        elif imap.security != "ssl":
            # fetchmail.server.connect: IMAP4_SSL(server, port) if is_ssl else IMAP4(server, port) —
            # no STARTTLS, so the LOGIN (with the password) would cross the network in clear.
            reader.fail(("inbound", "imap", "security"), "Odoo 17's incoming mail server has no STARTTLS (fetchmail.server connects with "
                        "implicit TLS or in clear text, and would send the password unencrypted): use security ssl (port 993)")
        if imap is not None and imap.folder != "INBOX":
            # fetchmail_server.fetch_mail: imap_server.select() — imaplib's default mailbox, INBOX.
            reader.fail(("inbound", "imap", "folder"), "Odoo 17's fetchmail always reads INBOX (select() without a mailbox): "
                        "deliver to INBOX, or leave incomingServer out of odoo.manage")
    if odoo.manages(OdooSetting.OUTGOING_SERVER) and odoo.outgoing_server is None and not stack.gateways:
        reader.fail(("odoo", "outgoingServer"), "is required when odoo.manage lists outgoingServer and the stack has no gateway "
                    "(the SMTP server Odoo sends through: {host, port, security, user})")
    inbound_domains = {stack.inbound_domain(d) for d in stack.domains}
    for company, domain in odoo.companies:
        if domain not in inbound_domains:
            reader.fail(("odoo", "companies", company), f"{domain} is not an alias domain of this stack ({', '.join(sorted(inbound_domains))})")
    if odoo.companies and not odoo.manages(OdooSetting.ALIAS_DOMAINS):
        reader.fail(("odoo", "companies"), "only applies when odoo.manage lists aliasDomains")
