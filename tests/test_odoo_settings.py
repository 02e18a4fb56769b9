"""The stand-in's mail-settings models keep Odoo 17's field names and constraints
(mail_alias.py, mail_alias_domain.py, ir_mail_server.py; spec §9–§10), and Odoo's
outgoing-server rules (``mailstack.rules.odoo``) choose and rewrite as Odoo does."""

from __future__ import annotations

import email
import xmlrpc.client
from pathlib import Path

import pytest

from mailstack.lab.postfix import wait_for
from mailstack.lab.smtp_tools import SmtpSink
from mailstack.rules import odoo as rules
from tests.odoo_fixtures import SINK_ADDRESS, OdooHarness, mail, sink  # noqa: F401 - fixture


@pytest.fixture
def odoo(tmp_path: Path, sink: SmtpSink) -> OdooHarness:  # noqa: F811
    return OdooHarness(tmp_path / "odoo.sqlite3", sink.port, aliases=(), domains=())


def fault(odoo: OdooHarness, model: str, method: str, *args: object, **kwargs: object) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        odoo.call(model, method, *args, **kwargs)
    return caught.value


def lead_model(odoo: OdooHarness) -> int:
    return int(odoo.call("ir.model", "search", [["model", "=", "crm.lead"]])[0])


def test_the_first_alias_domain_goes_to_the_company_and_gets_odoos_defaults(odoo: OdooHarness) -> None:
    first = odoo.call("mail.alias.domain", "create", {"name": "example.net"})
    second = odoo.call("mail.alias.domain", "create", [{"name": "other.test", "bounce_alias": " Rebonds ", "default_from": "Info@Other.Test"}])
    assert odoo.call("res.company", "read", [1], ["alias_domain_id", "bounce_email", "default_from_email"])[0] == {
        "id": 1, "alias_domain_id": [first, "example.net"], "bounce_email": "bounce@example.net",
        "default_from_email": "notifications@example.net"}
    other = odoo.call("mail.alias.domain", "read", second, ["bounce_email", "catchall_email", "default_from_email", "sequence"])[0]
    assert other == {"id": second[0], "bounce_email": "rebonds@other.test", "catchall_email": "catchall@other.test",
                     "default_from_email": "info@other.test", "sequence": 10}


def test_alias_domain_constraints(odoo: OdooHarness) -> None:
    odoo.call("mail.alias.domain", "create", {"name": "example.net"})
    assert fault(odoo, "mail.alias.domain", "create", {"name": "example.net"}).faultString == "Bounce emails should be unique"
    assert "unaccented latin characters in the domain name" in fault(odoo, "mail.alias.domain", "create", {"name": "exämple.net"}).faultString
    # 17.0 does not lowercase the name: a capitalised domain is stored as given.
    upper = odoo.call("mail.alias.domain", "create", {"name": "Example.ORG"})
    assert odoo.call("mail.alias.domain", "read", [upper], ["bounce_email"])[0]["bounce_email"] == "bounce@Example.ORG"


def test_alias_names_are_sanitised_unique_per_domain_and_not_bounce_or_catchall(odoo: OdooHarness) -> None:
    net = odoo.call("mail.alias.domain", "create", {"name": "example.net"})
    org = odoo.call("mail.alias.domain", "create", {"name": "example.org"})
    alias = odoo.call("mail.alias", "create", {"alias_name": " Ventes Été ", "alias_model_id": lead_model(odoo)})
    record = odoo.call("mail.alias", "read", [alias], ["alias_name", "alias_full_name", "alias_domain_id", "alias_contact", "alias_status"])[0]
    assert record == {"id": alias, "alias_name": "ventes-ete", "alias_full_name": "ventes-ete@example.net",
                      "alias_domain_id": [net, "example.net"], "alias_contact": "everyone", "alias_status": "not_tested"}
    duplicate = fault(odoo, "mail.alias", "create", {"alias_name": "ventes-ete", "alias_model_id": lead_model(odoo)})
    assert duplicate.faultCode == 2 and "is already linked with" in duplicate.faultString
    assert odoo.call("mail.alias", "create", {"alias_name": "ventes-ete", "alias_model_id": lead_model(odoo), "alias_domain_id": org})
    clash = fault(odoo, "mail.alias", "create", {"alias_name": "catchall", "alias_model_id": lead_model(odoo)})
    assert clash.faultCode == 2 and "already used as bounce or catchall address" in clash.faultString
    assert "mandatory field is not set" in fault(odoo, "mail.alias", "create", {"alias_name": "x"}).faultString
    assert "Wrong value for mail.alias.alias_contact" in fault(odoo, "mail.alias", "create", {"alias_name": "y", "alias_model_id": 1, "alias_contact": "all"}).faultString


def test_a_domain_whose_bounce_an_alias_holds_is_refused_and_a_used_domain_cannot_go(odoo: OdooHarness) -> None:
    net = odoo.call("mail.alias.domain", "create", {"name": "example.net"})
    odoo.call("mail.alias", "create", {"alias_name": "rebound", "alias_model_id": lead_model(odoo)})
    assert "'rebound@example.net' is already used" in fault(odoo, "mail.alias.domain", "write", [net], {"bounce_alias": "rebound"}).faultString
    assert "another model requires the record being deleted" in fault(odoo, "mail.alias.domain", "unlink", [net]).faultString


def test_external_ids_and_system_parameters(odoo: OdooHarness) -> None:
    odoo.call("ir.model.data", "create", {"module": "mailstack", "name": "alias_domain_example_net", "model": "mail.alias.domain", "res_id": 1})
    assert "same external ID" in fault(odoo, "ir.model.data", "create", {"module": "mailstack", "name": "alias_domain_example_net", "model": "x", "res_id": 2}).faultString
    assert "cannot contain periods" in fault(odoo, "ir.model.data", "create", {"module": "m", "name": "a.b", "model": "x"}).faultString
    assert odoo.call("ir.config_parameter", "get_param", "mail.default.from_filter") is False
    odoo.call("ir.config_parameter", "set_param", "mail.default.from_filter", "example.net")
    assert odoo.call("ir.config_parameter", "get_param", "mail.default.from_filter") == "example.net"
    odoo.call("ir.config_parameter", "set_param", "mail.catchall.domain.allowed", " Example.NET, b.test ")
    assert odoo.call("ir.config_parameter", "get_param", "mail.catchall.domain.allowed") == "example.net,b.test"


def test_mail_server_fields_and_defaults(odoo: OdooHarness) -> None:
    server = odoo.call("ir.mail_server", "create", {"name": "gateway"})
    assert odoo.call("ir.mail_server", "read", [server], ["smtp_port", "smtp_encryption", "smtp_authentication", "sequence", "active", "from_filter"])[0] == {
        "id": server, "smtp_port": 25, "smtp_encryption": "none", "smtp_authentication": "login", "sequence": 10, "active": True, "from_filter": False}
    assert "Wrong value" in fault(odoo, "ir.mail_server", "write", [server], {"smtp_encryption": "tls"}).faultString


def test_a_server_record_overrides_odoo_conf_and_its_from_filter_rewrites_the_from(odoo: OdooHarness, sink: SmtpSink) -> None:  # noqa: F811
    odoo.call("mail.alias.domain", "create", {"name": "example.net"})
    odoo.call("ir.mail_server", "create", {"name": "elsewhere", "smtp_host": SINK_ADDRESS, "smtp_port": sink.port, "from_filter": "other.test"})
    assert odoo.process(mail("catchall@example.net", message_id="<rw@o>", sender="rw@outside.test", subject="Rewrite")) is False
    sent = odoo.outbox()[0]
    assert sent["error"] is None and sent["mail_from"] == "notifications@example.net"  # bounce@ is not in the filter
    received = wait_for(lambda: [raw for env, raw in sink.messages() if b"Subject: Re: Rewrite" in raw], 20, what="the bounce")
    assert email.message_from_bytes(received[0])["From"] == '"MAILER-DAEMON" <notifications@example.net>'


@pytest.mark.parametrize(("email_from", "from_filter", "expected"), [
    ("a@example.net", "", True),
    ("A@Example.NET", "example.net", True),
    ("a@sub.example.net", "example.net", False),  # exact domain, no subdomains
    ("a@example.net", "b@example.net, other.test", False),
    ("b@example.net", "b@example.net, other.test", True),
    ("x@other.test", " other.test ", True),
])
def test_match_from_filter(email_from: str, from_filter: str, expected: bool) -> None:
    assert rules.match_from_filter(email_from, from_filter) is expected


def test_find_mail_server_order() -> None:
    by_address = rules.MailServer(1, "addr", "ceo@example.net", sequence=20)
    by_domain = rules.MailServer(2, "dom", "example.net", sequence=10)
    unfiltered = rules.MailServer(3, "any", None, sequence=30)
    servers = [by_address, by_domain, unfiltered]
    assert rules.find_mail_server("CEO@example.net", servers, "notifications@example.net", None).server == by_address
    assert rules.find_mail_server("sales@example.net", servers, "notifications@example.net", None).server == by_domain
    choice = rules.find_mail_server("user@gmail.test", servers, "notifications@example.net", None)
    assert choice.server == by_domain and choice.smtp_from == "notifications@example.net"
    assert rules.find_mail_server("user@gmail.test", [unfiltered], None, None) == rules.ServerChoice(unfiltered, "user@gmail.test")
    fallback = rules.find_mail_server("user@gmail.test", [rules.MailServer(4, "x", "x.test")], "n@example.net", None)
    assert fallback.fallback and fallback.smtp_from == "n@example.net"
    assert rules.find_mail_server("user@gmail.test", [], "notifications@example.net", "example.net") == rules.ServerChoice(None, "notifications@example.net")


def test_prepare_envelope_rewrites_a_foreign_from_to_notifications() -> None:
    envelope = rules.prepare_envelope('"Admin" <admin@gmail.test>', "notifications@example.net", "bounce@example.net",
                                      "notifications@example.net", "example.net")
    assert envelope == rules.Envelope('"Admin" <notifications@example.net>', "bounce@example.net", True)
    kept = rules.prepare_envelope("Sales <sales@example.net>", "Sales <sales@example.net>", "bounce@example.net", "notifications@example.net", "other.test")
    assert kept == rules.Envelope("Sales <sales@example.net>", "sales@example.net", False)


def test_sanitize_alias_name() -> None:
    assert rules.sanitize_alias_name("  Jöhn Doé+Tag@Example.com ") == "john-doe+tag"
    assert rules.sanitize_alias_name("..a..b..") == "a.b"
    assert rules.sanitize_alias_name("   ") is False
    assert rules.sanitize_alias_name("Info@Other.Test", is_email=True) == "info@other.test"
