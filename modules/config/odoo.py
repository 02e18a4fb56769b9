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

from mailstack.config.reader import ConfigReader, Path
from mailstack.core import names
from mailstack.core.model import (
    IMAP_SECURITY,
    SMTP_SECURITY,
    ImapMailbox,
    InboundMode,
    MailDomain,
    OdooSetting,
    OutgoingServer,
)

#: An Odoo model name (``crm.lead``, ``helpdesk.ticket``): ``ir.model.model``.
_MODEL = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
#: Characters no login, user, folder or company name may hold (they reach XML-RPC
#: calls, IMAP commands and reports): C0/C1 controls, DEL, and IMAP's quote/escape.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_TEXT = 200


#: How the characters a value may not hold are named in messages.
_FORBIDDEN_NAMES = {" ": "spaces", '"': "quotes", "\\": "backslashes"}


def text(value: Any, what: str = "value", *, forbid: str = "") -> str:
    """A short single-line string: no control characters, at most 200 characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string ({what})")
    stripped = value.strip()
    if _CONTROL.search(stripped) or any(c in stripped for c in forbid):
        named = ", ".join(["control characters", *(_FORBIDDEN_NAMES[c] for c in forbid)])
        raise ValueError(f"{what} must not contain {named}")
    if len(stripped) > MAX_TEXT:
        raise ValueError(f"{what} is longer than {MAX_TEXT} characters")
    return stripped


def login(value: Any) -> str:
    """An Odoo login (``res.users.login``): ``admin`` or an e-mail address, no spaces."""
    result = text(value, "an Odoo login", forbid=" \"\\")
    return result


def model_name(value: Any) -> str:
    """An Odoo model name such as ``crm.lead``."""
    if not isinstance(value, str) or not _MODEL.match(value):
        raise ValueError(f"{str(value)[:80]!r} is not an Odoo model name (e.g. crm.lead)")
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
    result: list[tuple[str, str]] = []
    for name, domain in value.items():
        company = reader.convert(name, (*path, str(name)[:80]), lambda v: text(v, "a company name"))
        alias_domain = reader.convert(domain, (*path, str(name)[:80]), names.domain)
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
    host = reader.convert(data["host"], (*path, "host"), names.hostname)
    security = reader.choice(data.get("security"), (*path, "security"), SMTP_SECURITY, default="starttls")
    default_port = {"none": 25, "starttls": 587, "ssl": 465}.get(security or "starttls", 587)
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=default_port)
    user = None
    if data.get("user") is not None:
        user = reader.convert(data["user"], (*path, "user"), login)
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
    host = reader.convert(data["host"], (*path, "host"), names.hostname) if data.get("host") is not None else None
    user = reader.convert(data["user"], (*path, "user"), login) if data.get("user") is not None else None
    security = reader.choice(data.get("security"), (*path, "security"), IMAP_SECURITY, default="ssl")
    port = reader.integer(data.get("port"), (*path, "port"), 1, 65535, default=993 if security == "ssl" else 143)
    folder = "INBOX"
    if data.get("folder") is not None:
        folder = reader.convert(data["folder"], (*path, "folder"), lambda v: text(v, "an IMAP folder", forbid='"\\')) or "INBOX"
    interval = reader.integer(data.get("interval"), (*path, "interval"), 1, 1440, default=5)
    model = reader.convert(data["model"], (*path, "model"), model_name) if data.get("model") is not None else None
    if host is None or user is None or security is None or port is None or interval is None:
        return None
    return ImapMailbox(host, user, port, security, folder, interval, model)


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
