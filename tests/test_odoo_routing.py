"""The stand-in routes inbound mail as Odoo 17's mail gateway does; one test (or a few)
per behaviour, each naming the Odoo 17.0 function of mail_thread.py it models
(/work/research/odoo17-spec.md §1–§7). Calls go through Odoo's XML-RPC marshalling,
so what a mailgate sees — record id, False, faults, the None fault — is what is
asserted; the bounces Odoo sends are received by a real SMTP sink."""

from __future__ import annotations

import email
import xmlrpc.client
from pathlib import Path

import pytest

from mailstack.lab.smtp_tools import SmtpSink
from mailstack.lab.postfix import wait_for
from tests.odoo_fixtures import OdooHarness, mail, sink  # noqa: F401 - fixture

NO_ROUTE = "No possible route found for incoming message"


@pytest.fixture
def odoo(tmp_path: Path, sink: SmtpSink) -> OdooHarness:  # noqa: F811
    return OdooHarness(tmp_path / "odoo.sqlite3", sink.port, aliases=("sales@example.net", "support@example.net=helpdesk.ticket"))


def fault_of(odoo: OdooHarness, raw: bytes) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        odoo.process(raw)
    return caught.value


def bounces_to(sink: SmtpSink, recipient: str, subject: str) -> list[email.message.Message]:  # noqa: F811
    found = []
    for envelope, raw in sink.messages():
        parsed = email.message_from_bytes(raw)
        if recipient in envelope["to"] and parsed["Subject"] == subject:
            found.append(parsed)
    return found


# -- message_parse + message_route step 2: aliases by alias_full_name ---------------------

def test_an_alias_creates_a_record_and_stores_the_message(odoo: OdooHarness) -> None:
    record_id = odoo.process(mail())
    assert isinstance(record_id, int) and not isinstance(record_id, bool)
    stored = odoo.call("mail.message", "search_read", [["message_id", "=", "<m1@outside.test>"]], fields=["model", "res_id"])
    assert stored == [{"id": stored[0]["id"], "model": "crm.lead", "res_id": record_id}]


def test_cc_and_delivered_to_route_but_other_headers_do_not(odoo: OdooHarness) -> None:
    # message_parse: recipients = Delivered-To, To, Cc, Resent-To, Resent-Cc; not X-Original-To.
    assert odoo.process(mail("x@outside.test", message_id="<cc@o>", extra="Cc: support@example.net\n")) >= 1
    assert odoo.process(mail("x@outside.test", message_id="<dt@o>", extra="Delivered-To: support@example.net\n")) >= 1
    fault = fault_of(odoo, mail("x@outside.test", message_id="<xo@o>", extra="X-Original-To: support@example.net\n"))
    assert fault.faultCode == 1 and NO_ROUTE in fault.faultString


def test_plus_detail_is_not_stripped(odoo: OdooHarness) -> None:
    # message_route / _filter_excluded_local_part: the local part is compared unchanged.
    fault = fault_of(odoo, mail("sales+quote@example.net", message_id="<plus@o>"))
    assert fault.faultCode == 1 and fault.faultString.strip().splitlines()[-1].startswith(f"ValueError: {NO_ROUTE}")
    model = odoo.call("ir.model", "search", [["model", "=", "crm.lead"]])[0]
    odoo.call("mail.alias", "create", {"alias_name": "sales+quote", "alias_model_id": model})
    assert odoo.process(mail("sales+quote@example.net", message_id="<plus@o>")) >= 1


def test_an_alias_matches_only_its_own_domain_unless_incoming_local(odoo: OdooHarness) -> None:
    assert NO_ROUTE in fault_of(odoo, mail("sales@other.test", message_id="<dom@o>")).faultString
    alias = odoo.call("mail.alias", "search", [["alias_name", "=", "sales"]])
    odoo.call("mail.alias", "write", alias, {"alias_incoming_local": True})
    assert odoo.process(mail("sales@other.test", message_id="<dom@o>")) >= 1


def test_an_alias_matching_two_aliases_makes_two_records(odoo: OdooHarness) -> None:
    odoo.process(mail("sales@example.net, support@example.net", message_id="<two@o>"))
    stored = odoo.call("mail.message", "search_read", [["message_id", "=", "<two@o>"]], fields=["model"])
    assert sorted(m["model"] for m in stored) == ["crm.lead", "helpdesk.ticket"]


# -- _detect_is_bounce / _routing_handle_bounce ------------------------------------------

@pytest.mark.parametrize(("to", "extra", "sender"), [
    ("bounce@example.net", "", "Customer <customer@outside.test>"),
    ("someone@outside.test", "", "MAILER-DAEMON <MAILER-DAEMON@mx.outside.test>"),
    ("someone@outside.test", "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n", "postmaster@outside.test"),
], ids=["to-bounce-address", "from-mailer-daemon", "delivery-status-report"])
def test_a_bounce_is_processed_nothing_stored_and_nothing_sent(odoo: OdooHarness, to: str, extra: str, sender: str) -> None:
    assert odoo.process(mail(to, message_id="<b@o>", extra=extra, sender=sender)) is False
    assert odoo.messages() == [] and odoo.outbox() == []


def test_a_verp_style_bounce_address_is_no_bounce_in_17(odoo: OdooHarness) -> None:
    # Odoo 17 compares bounce_email exactly (no bounce+<id>@ parsing).
    assert NO_ROUTE in fault_of(odoo, mail("bounce+12-crm.lead-4@example.net", message_id="<v@o>")).faultString


# -- _detect_write_to_catchall, message_route steps 2 and 4, _routing_create_bounce_email --

def test_a_direct_write_to_the_catchall_makes_odoo_bounce_it(odoo: OdooHarness, sink: SmtpSink) -> None:  # noqa: F811
    assert odoo.process(mail("catchall@example.net", message_id="<c@o>", sender="Ann <ann@outside.test>")) is False
    assert odoo.messages() == []
    sent = odoo.outbox()
    assert len(sent) == 1 and sent[0]["error"] is None and sent[0]["rcpt_to"] == "ann@outside.test"
    assert sent[0]["mail_from"] == "bounce@example.net"
    bounce = wait_for(lambda: bounces_to(sink, "ann@outside.test", "Re: Quote"), 20, what="Odoo's bounce at the sink")[0]
    assert bounce["From"] == '"MAILER-DAEMON" <bounce@example.net>'
    assert "<c@o>" in bounce["References"] and "-loop-detection-bounce-email@" in bounce["References"]


def test_catchall_in_to_and_an_alias_in_cc_still_bounces(odoo: OdooHarness) -> None:
    # "to" is Delivered-To + To only: Cc does not save a direct write to the catchall ...
    assert odoo.process(mail("catchall@example.net", message_id="<cc1@o>", extra="Cc: sales@example.net\n")) is False
    assert len(odoo.outbox()) == 1
    # ... but the gateway's Delivered-To: sales@ is in "to", so the alias routes.
    assert odoo.process(mail("catchall@example.net", message_id="<cc2@o>", extra="Delivered-To: sales@example.net\n")) >= 1


def test_catchall_and_an_unroutable_address_bounce_in_step_4(odoo: OdooHarness) -> None:
    assert odoo.process(mail("unknown@example.net, catchall@example.net", message_id="<s4@o>")) is False
    assert len(odoo.outbox()) == 1 and odoo.messages() == []


# -- message_route step 1: replies before aliases -----------------------------------------

def test_a_reply_goes_to_its_thread_before_any_alias_or_catchall(odoo: OdooHarness) -> None:
    lead = odoo.process(mail(message_id="<orig@o>"))
    reply = mail("catchall@example.net", message_id="<re1@o>", extra="In-Reply-To: <orig@o>\n", subject="Re: Quote")
    assert odoo.process(reply) == lead
    unknown = mail("nobody@example.net", message_id="<re2@o>", extra="References: <x@y> <orig@o>\n")
    assert odoo.process(unknown) == lead
    assert odoo.outbox() == []
    parent = odoo.call("mail.message", "search_read", [["message_id", "=", "<re1@o>"]], fields=["parent_id", "res_id"])[0]
    assert parent["res_id"] == lead and parent["parent_id"][0] >= 1


def test_a_forward_to_an_alias_of_another_model_is_not_a_reply(odoo: OdooHarness) -> None:
    odoo.process(mail(message_id="<orig2@o>"))  # a crm.lead
    forwarded = mail("support@example.net", message_id="<fw@o>", extra="References: <orig2@o>\n")
    ticket = odoo.process(forwarded)
    stored = odoo.call("mail.message", "search_read", [["message_id", "=", "<fw@o>"]], fields=["model", "res_id"])
    assert stored == [{"id": stored[0]["id"], "model": "helpdesk.ticket", "res_id": ticket}]


# -- _routing_check_route / _alias_get_error / _alias_bounce_incoming_email -----------------

def test_partners_policy_bounces_unknown_senders(odoo: OdooHarness) -> None:
    alias = odoo.call("mail.alias", "search", [["alias_name", "=", "sales"]])
    odoo.call("mail.alias", "write", alias, {"alias_contact": "partners"})
    assert odoo.process(mail(message_id="<p1@o>", sender="stranger@outside.test")) is False
    assert odoo.messages() == [] and odoo.outbox()[0]["rcpt_to"] == "stranger@outside.test"
    odoo.call("res.partner", "create", {"name": "Known", "email": "Known@Outside.test"})
    assert odoo.process(mail(message_id="<p2@o>", sender="known@outside.test")) >= 1


def test_followers_policy_needs_a_follower_and_a_record(odoo: OdooHarness) -> None:
    partner = odoo.call("res.partner", "create", {"name": "F", "email": "follower@outside.test"})
    lead = odoo.call("crm.lead", "create", {"name": "Deal", "message_partner_ids": f"[{partner}]"})
    alias = odoo.call("mail.alias", "search", [["alias_name", "=", "sales"]])
    odoo.call("mail.alias", "write", alias, {"alias_contact": "followers", "alias_force_thread_id": lead})
    assert odoo.process(mail(message_id="<f1@o>", sender="follower@outside.test")) == lead
    assert odoo.process(mail(message_id="<f2@o>", sender="other@outside.test")) is False
    odoo.call("mail.alias", "write", alias, {"alias_force_thread_id": 0})
    assert odoo.process(mail(message_id="<f3@o>", sender="follower@outside.test")) is False
    status = odoo.call("mail.alias", "read", alias, ["alias_status"])[0]["alias_status"]
    assert status == "invalid" and len(odoo.outbox()) == 2  # a configuration error marks the alias invalid


# -- message_process: duplicates and loops -------------------------------------------------

def test_a_duplicate_message_id_returns_false(odoo: OdooHarness) -> None:
    odoo.process(mail(message_id="<dup@o>"))
    assert odoo.process(mail(message_id="<dup@o>")) is False
    # [A]: the X-Odoo-Message-Id of a stored message counts too.
    assert odoo.process(mail(message_id="<other@o>", extra="X-Odoo-Message-Id: <dup@o>\n")) is False
    assert len(odoo.messages()) == 1


def test_a_reply_to_odoos_own_bounce_answers_none_which_xmlrpc_cannot_marshal(odoo: OdooHarness) -> None:
    # _detect_loop_headers → None; /xmlrpc/2 marshals with allow_none=False → fault 1.
    raw = mail(message_id="<l1@o>", extra="References: <123.45-openerp-loop-detection-bounce-email@odoo.example.net>\n")
    fault = fault_of(odoo, raw)
    assert fault.faultCode == 1 and fault.faultString.strip().endswith("TypeError: cannot marshal None unless allow_none is enabled")
    assert odoo.messages() == [] and odoo.outbox() == []


def test_a_looping_sender_gets_one_limit_bounce_and_the_none_fault(odoo: OdooHarness) -> None:
    # _detect_loop_sender: mail.gateway.loop.threshold records from one sender in the window.
    odoo.call("ir.config_parameter", "set_param", "mail.gateway.loop.threshold", "3")
    for n in range(3):
        assert odoo.process(mail(message_id=f"<loop{n}@o>", sender="robot@outside.test")) >= 1
    fault = fault_of(odoo, mail(message_id="<loop3@o>", sender="robot@outside.test"))
    assert fault.faultString.strip().endswith("cannot marshal None unless allow_none is enabled")
    assert len(odoo.messages()) == 3
    assert [m["rcpt_to"] for m in odoo.outbox()] == ["robot@outside.test"]  # committed before the fault
    odoo.call("mail.gateway.allowed", "create", {"email": "robot@outside.test"})
    assert odoo.process(mail(message_id="<loop4@o>", sender="robot@outside.test")) >= 1


# -- XML-RPC faults ----------------------------------------------------------------------

def test_faults_carry_odoos_codes(odoo: OdooHarness) -> None:
    with pytest.raises(xmlrpc.client.Fault) as private:
        odoo.call("mail.thread", "_routing_check_route")
    assert private.value.faultCode == 4 and "cannot be called remotely" in private.value.faultString
    body = xmlrpc.client.dumps(("odoo", 2, "wrong", "mail.alias", "search", [[]], {}), "execute_kw")
    with pytest.raises(xmlrpc.client.Fault) as denied:
        xmlrpc.client.loads(odoo.odoo.respond("object", body.encode()))
    assert denied.value.faultCode == 3 and denied.value.faultString == "Access Denied"
    with pytest.raises(xmlrpc.client.Fault) as unknown:
        odoo.call("mail.alias", "create", {"alias_name": "x", "alias_model_id": 1, "bogus": 1})
    assert unknown.value.faultCode == 1 and "Invalid field 'bogus'" in unknown.value.faultString
