"""The property bags of the declared records, and applying them in ``pulumi up``'s order
without the engine.

``OdooSettings`` (``mailstack.providers.odoo``) turns ``desired(plan)`` into one Pulumi
resource per record, whose inputs are the bags built here, and ``pulumi up`` creates
the alias domains first and the servers after them. ``apply`` runs the same operations
(``mailstack.odoo.records.create``: create, or set what mailstack already created) in
the same order for a caller that has no engine — ``mailstack lab up`` brings its Odoo
stand-in to what the stack declares exactly as a deployment brings the real Odoo, so
the ``odoo`` checks judge the result of mailstack's own code, not a lab shortcut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailstack.odoo import records
from mailstack.odoo.client import OdooError
from mailstack.odoo.desired import AliasDomain, Desired, IncomingServer, MailServer


def alias_domain_props(spec: AliasDomain) -> dict[str, Any]:
    return {"kind": "aliasDomain", "key": spec.key, "name": spec.name, "bounceAlias": spec.bounce_alias,
            "catchallAlias": spec.catchall_alias, "defaultFrom": spec.default_from, "companies": list(spec.companies)}


def mail_server_props(spec: MailServer) -> dict[str, Any]:
    return {"kind": "mailServer", "key": spec.key, "name": spec.name, "smtpHost": spec.smtp_host, "smtpPort": spec.smtp_port,
            "smtpEncryption": spec.smtp_encryption, "smtpUser": spec.smtp_user, "fromFilter": spec.from_filter, "sequence": spec.sequence}


def incoming_server_props(spec: IncomingServer) -> dict[str, Any]:
    return {"kind": "incomingServer", "key": spec.key, "name": spec.name, "server": spec.server, "port": spec.port,
            "isSsl": spec.is_ssl, "user": spec.user, "model": spec.model, "interval": spec.interval}


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach Odoo, and the secrets the server records carry."""

    url: str
    database: str
    login: str
    password: str
    smtp_password: str | None = None
    imap_password: str | None = None
    adopt: bool = False

    def common(self) -> dict[str, Any]:
        return {"url": self.url, "database": self.database, "login": self.login, "password": self.password, "adopt": self.adopt}


def apply(desired: Desired, odoo: Connection) -> list[Mapping[str, Any]]:
    """Create or set every declared record, alias domains first (the servers' From and
    the fetched mail's routes need them); returns each record's state. An incoming
    server without ``imap_password`` is refused before anything is written, as the
    Pulumi program refuses it."""
    if desired.incoming_server is not None and not odoo.imap_password:
        raise OdooError("an incoming server is declared (odoo.manage lists incomingServer) but no IMAP password was given")
    bags = [{**odoo.common(), **alias_domain_props(spec)} for spec in desired.alias_domains]
    if desired.mail_server is not None:
        bags.append({**odoo.common(), **mail_server_props(desired.mail_server),
                     **({"smtpPass": odoo.smtp_password} if odoo.smtp_password else {})})
    if desired.incoming_server is not None:
        bags.append({**odoo.common(), **incoming_server_props(desired.incoming_server), "imapPassword": odoo.imap_password})
    return [records.create(bag) for bag in bags]
