"""Odoo's live mail settings, read once per run over XML-RPC (fetch side of the ``odoo``
checks): alias domains, companies, aliases, outgoing and incoming servers, the
fetchmail cron and the system parameters that still matter in Odoo 17.

The credentials are Odoo's login (``MAILSTACK_ODOO_LOGIN``, default ``odoo.login``) and
password (``MAILSTACK_ODOO_PASSWORD`` or ``MAILSTACK_ODOO_PASSWORD_FILE``), never argv.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mailstack.checks.probes.secret_env import secret_from_env
from mailstack.core.model import MailDomain
from mailstack.odoo.client import OdooClient, OdooError
from mailstack.odoo.desired import FETCHMAIL_CRON

#: System parameters read: the one Odoo 17 uses for outgoing mail, and the pre-17 ones
#: it no longer reads at runtime (spec §10.3) but that a migrated database may hold.
PARAMS = ("mail.default.from_filter", "mail.catchall.domain", "mail.default.from", "mail.bounce.alias",
          "mail.catchall.alias", "mail.gateway.loop.minutes", "mail.gateway.loop.threshold")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where Odoo is and who mailstack is there (None password: not given)."""

    url: str | None
    database: str | None
    login: str
    password: str | None = field(default=None, repr=False)
    #: Why the password file named in the environment could not be read ('' when fine).
    unreadable: str = ""

    @classmethod
    def for_stack(cls, stack: MailDomain) -> Credentials:
        password, unreadable = None, ""
        try:
            password = secret_from_env("MAILSTACK_ODOO_PASSWORD")
        except ValueError as err:
            unreadable = str(err)
        login = os.environ.get("MAILSTACK_ODOO_LOGIN") or stack.odoo.login
        return cls(stack.odoo.rpc_url, stack.odoo.database, login, password, unreadable)

    @property
    def missing(self) -> str:
        """What is missing to ask Odoo ('' when nothing)."""
        if not self.url or not self.database:
            return "the stack declares no Odoo URL and database (odoo.url, odoo.database)"
        if not self.password:
            return "no Odoo password: set MAILSTACK_ODOO_PASSWORD or MAILSTACK_ODOO_PASSWORD_FILE (and MAILSTACK_ODOO_LOGIN if not odoo.login)"
        return ""


@dataclass(frozen=True, slots=True)
class OdooState:
    """What Odoo holds; ``error`` set when it could not be read."""

    version: str = ""
    uid: int = 0
    alias_domains: tuple[dict[str, Any], ...] = ()
    companies: tuple[dict[str, Any], ...] = ()
    aliases: tuple[dict[str, Any], ...] = ()
    mail_servers: tuple[dict[str, Any], ...] = ()
    incoming_servers: tuple[dict[str, Any], ...] = ()
    cron: dict[str, Any] | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    #: External ids of the records mailstack created (``mailstack.<key>`` → (model, id)).
    marks: dict[str, tuple[str, int]] = field(default_factory=dict)
    error: str = ""
    refused: bool = False


def fetch(credentials: Credentials, timeout: float = 15.0) -> OdooState:
    """Read Odoo's mail settings; an ``OdooState`` with ``error`` when Odoo cannot be read."""
    assert credentials.url and credentials.database and credentials.password
    odoo = OdooClient(credentials.url, credentials.database, credentials.login, credentials.password, timeout=timeout)
    try:
        version = str(odoo.version().get("server_version", ""))
        uid = odoo.authenticate()
        domains = odoo.search_read("mail.alias.domain", [], ["name", "bounce_alias", "catchall_alias", "default_from",
                                                             "bounce_email", "catchall_email", "default_from_email", "sequence"])
        companies = odoo.search_read("res.company", [], ["name", "alias_domain_id"])
        aliases = odoo.search_read("mail.alias", [["alias_name", "!=", False]], ["alias_name", "alias_full_name", "alias_model_id",
                                                                                  "alias_contact", "alias_incoming_local"])
        servers = odoo.search_read("ir.mail_server", [], ["name", "smtp_host", "smtp_port", "smtp_encryption", "smtp_user",
                                                          "from_filter", "sequence", "active"])
        incoming = odoo.search_read("fetchmail.server", [], ["name", "server", "port", "is_ssl", "user", "state", "server_type",
                                                             "active", "object_id", "date"])
        module, _, name = FETCHMAIL_CRON.partition(".")
        cron_marks = odoo.search_read("ir.model.data", [["module", "=", module], ["name", "=", name]], ["res_id"])
        cron = None
        if cron_marks:
            found = odoo.search_read("ir.cron", [["id", "=", cron_marks[0]["res_id"]]], ["interval_number", "interval_type", "active"])
            cron = found[0] if found else None
        params = {key: odoo.param(key) for key in PARAMS}
        marks = {f"mailstack.{m['name']}": (str(m["model"]), int(m["res_id"]))
                 for m in odoo.search_read("ir.model.data", [["module", "=", "mailstack"]], ["name", "model", "res_id"])}
    except OdooError as err:
        return OdooState(error=str(err), refused=getattr(err, "code", None) == 3)
    return OdooState(version, uid, tuple(domains), tuple(companies), tuple(aliases), tuple(servers), tuple(incoming), cron, params, marks)
