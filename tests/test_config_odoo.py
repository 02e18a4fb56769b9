"""The keys that say what mailstack sets inside Odoo (``odoo.manage``, ``login``,
``companies``, ``outgoingServer``, ``adopt``; ``inbound.imap``; forward through the
gateways): parsed into the model, refused with the key named when Odoo 17 could not
carry them out."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors
from mailstack.core.model import ImapMailbox, OdooSetting, OutgoingServer

BASE: dict[str, Any] = {
    "domain": "example.com",
    "odoo": {"hosting": "onpremise", "url": "https://odoo.example.com", "database": "prod"},
    "outbound": ["gateway"],
    "inbound": {"mode": "gateway", "aliases": ["sales"]},
    "gateways": [{"hostname": "mx1.example.com", "ipv4": "192.0.2.10"}],
}
IMAP: dict[str, Any] = {**BASE, "inbound": {"mode": "imap", "imap": {"host": "imap.example.com", "user": "odoo@example.com"}}}


def errors_of(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        from_config(values)
    return [str(e) for e in caught.value.errors]


def test_defaults_manage_nothing() -> None:
    odoo = from_config(BASE).odoo
    assert (odoo.login, odoo.manage, odoo.companies, odoo.outgoing_server, odoo.adopt) == ("admin", (), (), None, False)


def test_manage_and_its_companion_keys() -> None:
    stack = from_config({**BASE, "aliasDomains": ["example.org"], "odoo": {
        **BASE["odoo"], "login": "mailstack@example.com", "manage": ["aliasDomains", "outgoingServer", "aliasDomains"],
        "companies": {"Example EU": "example.org"}, "outgoingServer": {"host": "smtp.example.net", "security": "ssl"}, "adopt": True}})
    odoo = stack.odoo
    assert odoo.manage == (OdooSetting.ALIAS_DOMAINS, OdooSetting.OUTGOING_SERVER)
    assert odoo.companies == (("Example EU", "example.org"),) and odoo.login == "mailstack@example.com" and odoo.adopt
    assert odoo.outgoing_server == OutgoingServer("smtp.example.net", 465, "ssl", None)


def test_imap_mailbox_defaults() -> None:
    stack = from_config({**IMAP, "odoo": {**BASE["odoo"], "manage": ["incomingServer"]}})
    assert stack.inbound.imap == ImapMailbox("imap.example.com", "odoo@example.com", 993, "ssl", "INBOX", 5, None)
    starttls = from_config({**IMAP, "inbound": {"mode": "imap", "imap": {"host": "imap.example.com", "user": "u", "security": "starttls"}}})
    assert starttls.inbound.imap is not None and starttls.inbound.imap.port == 143


def test_forward_through_the_gateways() -> None:
    stack = from_config({**BASE, "odoo": {"hosting": "online", "database": "acme"}, "outbound": ["odoo"], "inbound": {"mode": "forward", "aliases": ["sales"]}})
    assert stack.forwards_through_gateways and stack.gateways_receive
    assert stack.odoo.rpc_url == "https://acme.odoo.com"
    assert stack.gateway is not None and stack.gateway.mailgate.url == "https://acme.odoo.com"
    elsewhere = from_config({**BASE, "inbound": {"mode": "forward", "mx": "google"}})
    assert not elsewhere.forwards_through_gateways
    # The gateway sends the redirected mail with SRS0=…@example.com: SPF must list it.
    planned = plan.build(stack)
    [spf] = [r for r in planned.records if r.purpose == "spf" and r.name == "example.com"]
    assert spf.content == "v=spf1 include:_spf.odoo.com ip4:192.0.2.10 ~all"
    assert [(m.host, m.priority) for m in planned.mx_hosts["example.com"]] == [("mx1.example.com", 10)]
    assert planned.relay_domains == ("example.com",)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"odoo": {**BASE["odoo"], "manage": ["aliases"]}}, "mailstack:odoo.manage[0]: 'aliases' is not one of aliasDomains, outgoingServer, incomingServer"),
    ({"odoo": {**BASE["odoo"], "manage": ["incomingServer"]}}, "mailstack:odoo.manage: incomingServer needs inbound.mode imap (Odoo fetches a mailbox), not gateway"),
    ({"odoo": {**BASE["odoo"], "login": "ad min"}}, "mailstack:odoo.login: 'ad min' is not a login name (letters, digits and . _ @ + -, at most 128)"),
    ({"odoo": {**BASE["odoo"], "login": "admin\nx"}}, "mailstack:odoo.login: 'admin\\nx' contains the control character U+000A at position 5"),
    ({"odoo": {**BASE["odoo"], "manage": ["aliasDomains"], "companies": {"Acme": "example.org"}}},
     "mailstack:odoo.companies.Acme: example.org is not an alias domain of this stack (example.com)"),
    ({"odoo": {**BASE["odoo"], "companies": {"Acme": "example.com"}}}, "mailstack:odoo.companies: only applies when odoo.manage lists aliasDomains"),
    ({"odoo": {**BASE["odoo"], "outgoingServer": {"port": 25}}}, "mailstack:odoo.outgoingServer.host: is required (the SMTP server Odoo sends through)"),
    ({"odoo": {**BASE["odoo"], "outgoingServer": {"host": "smtp.example.net", "security": "tls"}}},
     "mailstack:odoo.outgoingServer.security: 'tls' is not one of none, starttls, ssl"),
    ({"odoo": {**BASE["odoo"], "adopt": "maybe"}}, "mailstack:odoo.adopt: 'maybe' is not true or false"),
    ({"inbound": {"mode": "gateway", "imap": {"host": "imap.example.com", "user": "u"}}}, "mailstack:inbound.imap: only applies to mode imap, not gateway"),
    ({"inbound": {"mode": "imap", "imap": {"user": "u"}}}, "mailstack:inbound.imap.host: is required"),
    ({"inbound": {"mode": "imap", "imap": {"host": "imap.example.com", "user": "u", "interval": 0}}}, "mailstack:inbound.imap.interval: 0 is not between 1 and 1440"),
    ({"inbound": {"mode": "imap", "imap": {"host": "imap.example.com", "user": "u", "model": "Lead"}}},
     "mailstack:inbound.imap.model: 'Lead' is not an Odoo model name (e.g. crm.lead)"),
    ({"inbound": {"mode": "forward"}}, "mailstack:inbound.mode: forward through the gateways redirects to <db>.odoo.com: it needs odoo.hosting online or sh "
     "(on premise, use mode gateway: the mailgate hands mail to Odoo directly)"),
], ids=["manage-choice", "incoming-not-imap", "login-space", "login-newline", "company-domain", "companies-unmanaged",
        "outgoing-host", "outgoing-security", "adopt", "imap-mode", "imap-host", "imap-interval", "imap-model", "forward-onpremise"])
def test_errors_name_the_key(overrides: dict[str, Any], expected: str) -> None:
    assert expected in errors_of({**BASE, **overrides})


def test_odoo_17_cannot_fetch_with_starttls_or_from_another_folder() -> None:
    values = {**IMAP, "odoo": {**BASE["odoo"], "manage": ["incomingServer"]},
              "inbound": {"mode": "imap", "imap": {"host": "imap.example.com", "user": "u", "security": "starttls", "folder": "Odoo"}}}
    found = errors_of(values)
    assert any(e.startswith("mailstack:inbound.imap.security: Odoo 17's incoming mail server has no STARTTLS") for e in found)
    assert any(e.startswith("mailstack:inbound.imap.folder: Odoo 17's fetchmail always reads INBOX") for e in found)
    # Without incomingServer the mailbox is only checked, and both are fine.
    from_config({**values, "odoo": BASE["odoo"]})


def test_manage_on_saas_needs_the_database() -> None:
    found = errors_of({**BASE, "odoo": {"hosting": "online", "host": "acme.odoo.com", "manage": ["aliasDomains"]}, "outbound": ["odoo"],
                       "inbound": {"mode": "odoo-mx", "subdomain": "mail"}, "gateways": []})
    assert "mailstack:odoo.database: is required when odoo.manage is set (the database mailstack logs into)" in found
