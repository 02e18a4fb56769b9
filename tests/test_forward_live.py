"""Inbound by forwarding, proven: a gateway stack in ``inbound.mode: forward`` redirects
its aliases to ``<db>.odoo.com`` with SRS (Debian's postsrsd), and Odoo Online's MX —
Debian's Postfix with postfix-policyd-spf-python, a receiver nobody here wrote — finds
SPF passing for what it receives. Everything rendered by mailstack runs for real in a
namespace of our own (ms13-fwd-*), on 127.0.113.0/24:

  outside sender .30 ──► gateway mx1.acme.test .10 (Postfix, aliasd, postsrsd)
      ──► mx.acme.odoo.com .50 (Postfix + policyd-spf)        DNS: BIND .2
  aliasd asks the Odoo stand-in .40 ("the database at acme.odoo.com") over XML-RPC.
  A bounce Odoo's side sends to the SRS address goes back through the gateway to the
  sender's own MX, mx.outside.test .30 (Postfix).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan as planning
from mailstack.config.stack import from_config
from mailstack.core.record import Record
from mailstack.gateway import render
from mailstack.lab import netns, smtp_tools
from mailstack.lab.aliasd import AliasDaemon
from mailstack.lab.bind import BindServer
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.maildir_mx import MaildirMx, OdooMx
from mailstack.lab.postfix import OpenDkim, PostfixInstance, install_mailgate, lab_layout, make_workdir, mailgate_python, runs_as, wait_for
from mailstack.lab.postsrsd import Postsrsd
from mailstack.lab.tls import self_signed
from tests.servers import require, require_binary, require_root

pytestmark = pytest.mark.servers

BIND, GATEWAY, OUTSIDE, STANDIN, ODOO_MX = "127.0.113.2", "127.0.113.10", "127.0.113.30", "127.0.113.40", "127.0.113.50"
PASSWORD = "fwd-odoo-pw"


@dataclass
class Forwarding:
    netns: str
    gateway: PostfixInstance
    odoo_mx: MaildirMx
    standin: OdooStandIn
    outside_mx: MaildirMx

    def send(self, mail_from: str, to: str, message_id: str, *, source: str = OUTSIDE, host: str = GATEWAY) -> dict:
        raw = (f"From: Ann <{mail_from}>\r\nTo: {to}\r\nSubject: quote\r\nMessage-Id: {message_id}\r\n\r\nPlease quote.\r\n").encode()
        return smtp_tools.send(host, 25, mail_from, [to], raw, netns=self.netns, source=source, helo="mail.outside.test")

    def arrived(self, message_id: str) -> list:
        return [m for m in self.odoo_mx.received() if m["Message-Id"] == message_id]


@pytest.fixture(scope="module")
def forwarding() -> Iterator[Forwarding]:
    require_root()
    for name in ("postfix", "named", "postsrsd", "policyd-spf", "setpriv"):
        require_binary(name)
    require(runs_as("nobody"), f"a python3 the unprivileged mailgate user can run ({mailgate_python()})")
    name = f"ms13-fwd-{os.getpid()}"
    workdir = make_workdir("ms13-fwd-")
    started: list = []
    try:
        cert, key = self_signed(["mx1.acme.test"])
        (workdir / "tls").mkdir()
        (workdir / "tls" / "gw.pem").write_bytes(cert)
        (workdir / "tls" / "gw.key").touch(mode=0o600)
        (workdir / "tls" / "gw.key").write_bytes(key)
        stack = from_config({
            "domain": "acme.test",
            "odoo": {"hosting": "online", "database": "acme"},
            "outbound": ["odoo"],
            "inbound": {"mode": "forward", "aliases": ["sales"]},
            "gateways": [{"hostname": "mx1.acme.test", "ipv4": GATEWAY}],
            "gateway": {"tls": {"cert": str(workdir / "tls" / "gw.pem"), "key": str(workdir / "tls" / "gw.key")}, "odooAddresses": ["127.0.113.20/32"],
                        "mailgate": {"url": f"http://{STANDIN}:8069", "login": "admin", "passwordFile": str(workdir / "mailstack" / "odoo-password")}},
            "dns": {"zone": "acme.test"},
        })
        plan = planning.build(stack)
        dkim_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        files = render.render(plan, dkim_private_key_pem=dkim_key, layout=lab_layout(workdir, GATEWAY))
        netns.create(name, nameserver=BIND)
        for address in (BIND, GATEWAY, OUTSIDE, STANDIN, ODOO_MX):
            netns.add_address(address, name)
        bind = BindServer(workdir / "bind", BIND, 53, netns=name)
        bind.add_zone("acme.test", [r for r in plan.records if r.type != "CNAME"] + [Record("mx1.acme.test", "A", GATEWAY, 300)])
        bind.add_zone("outside.test", [Record("outside.test", "TXT", f"v=spf1 ip4:{OUTSIDE} -all", 300),
                                       Record("outside.test", "MX", "mx.outside.test", 300, 10), Record("mx.outside.test", "A", OUTSIDE, 300)])
        bind.add_zone("odoo.com", [Record("acme.odoo.com", "MX", "mx.acme.odoo.com", 300, 10), Record("mx.acme.odoo.com", "A", ODOO_MX, 300),
                                   Record("_spf.odoo.com", "TXT", f"v=spf1 ip4:{ODOO_MX} -all", 300)])
        standin = OdooStandIn(workdir / "odoo", STANDIN, 8069, database="acme", password=PASSWORD, netns=name,
                              alias_domains=["acme.odoo.com", "acme.test"], aliases=["sales@acme.test"])
        odoo_mx = OdooMx(workdir / "odoo-mx", ODOO_MX, "mx.acme.odoo.com", "acme.odoo.com", netns=name)
        outside_mx = MaildirMx(workdir / "outside-mx", OUTSIDE, "mx.outside.test", "outside.test", name, spf_check=False)
        install_mailgate(files, workdir, PASSWORD)
        srs = Postsrsd(workdir / "postsrsd", files, netns=name)
        aliasd = AliasDaemon(workdir, files, netns=name)
        opendkim = OpenDkim(workdir, files, netns=name)
        gateway = PostfixInstance(workdir, files, netns=name, overrides={"inet_interfaces": GATEWAY, "smtp_bind_address": GATEWAY})
        for server in (bind, standin, odoo_mx, outside_mx, srs, aliasd, opendkim, gateway):
            server.start()
            started.append(server)
        yield Forwarding(name, gateway, odoo_mx, standin, outside_mx)
    finally:
        for server in reversed(started):
            server.stop()
        netns.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)


def test_an_alias_is_redirected_to_odoo_with_srs_and_passes_spf_there(forwarding: Forwarding) -> None:
    result = forwarding.send("ann@outside.test", "sales@acme.test", "<fwd-1@outside.test>")
    assert result["rcpt"]["sales@acme.test"][0] == 250 and result["data"][0] == 250
    [message] = wait_for(lambda: forwarding.arrived("<fwd-1@outside.test>"), 60, what="the redirected message at Odoo's MX")
    assert message["Delivered-To"] == "sales@acme.odoo.com"  # the envelope was redirected ...
    assert message["To"] == "sales@acme.test" and message["From"] == "Ann <ann@outside.test>"  # ... the headers Odoo routes on were not
    result_spf, mailfrom = forwarding.odoo_mx.spf(message)
    assert result_spf == "pass", message.get_all("Authentication-Results")
    assert mailfrom == "acme.test"  # SPF was checked for the stack's domain: the SRS address
    return_path = message["Return-Path"].lower()
    assert return_path.startswith("<srs0=") and return_path.endswith("=outside.test=ann@acme.test>")


def test_without_srs_the_same_path_fails_spf_at_odoo(forwarding: Forwarding) -> None:
    # What a plain forward would do: the gateway's address, the original sender.
    result = forwarding.send("ann@outside.test", "sales@acme.odoo.com", "<fwd-raw@outside.test>", source=GATEWAY, host=ODOO_MX)
    assert result["data"][0] == 250
    [message] = wait_for(lambda: forwarding.arrived("<fwd-raw@outside.test>"), 60, what="the unrewritten message")
    assert forwarding.odoo_mx.spf(message) == ("fail", "outside.test")


def test_only_what_odoo_routes_is_accepted(forwarding: Forwarding) -> None:
    for address, code in (("catchall@acme.test", 250), ("bounce@acme.test", 250), ("sales+x@acme.test", 550), ("nobody@acme.test", 550)):
        replies = smtp_tools.raw_session(GATEWAY, 25, [b"EHLO mail.outside.test\r\n", b"MAIL FROM:<ann@outside.test>\r\n",
                                                       f"RCPT TO:<{address}>\r\n".encode(), b"QUIT\r\n"], netns=forwarding.netns, source=OUTSIDE)
        assert int(replies[3][:3]) == code, (address, replies[3])


def test_a_bounce_to_the_srs_address_goes_back_to_the_original_sender(forwarding: Forwarding) -> None:
    # Odoo's side cannot take a redirected message and bounces it to its envelope
    # sender, the SRS address: the gateway (postsrsd's reverse map, which checks the
    # hash) turns it back into ann@outside.test and relays it to outside.test's MX.
    result = forwarding.send("ann@outside.test", "sales@acme.test", "<fwd-2@outside.test>")
    assert result["data"][0] == 250
    [message] = wait_for(lambda: forwarding.arrived("<fwd-2@outside.test>"), 60, what="the redirected message at Odoo's MX")
    srs = message["Return-Path"].strip("<>")
    dsn = (f"From: Mail Delivery System <MAILER-DAEMON@mx.acme.odoo.com>\r\nTo: {srs}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           "Message-Id: <fwd-2-bounce@mx.acme.odoo.com>\r\nContent-Type: text/plain\r\n\r\n"
           "<sales@acme.odoo.com>: mailbox unavailable\r\n").encode()
    sent = smtp_tools.send(GATEWAY, 25, "", [srs], dsn, netns=forwarding.netns, source=ODOO_MX, helo="mx.acme.odoo.com")
    assert sent["rcpt"][srs][0] == 250 and sent["data"][0] == 250, sent
    [back] = wait_for(lambda: [m for m in forwarding.outside_mx.received() if m["Message-Id"] == "<fwd-2-bounce@mx.acme.odoo.com>"],
                      60, what="the bounce at the original sender's MX")
    assert back["Delivered-To"] == "ann@outside.test" and back["Return-Path"] == "<>"
    # A forged SRS address (wrong hash) is no recipient: refused at RCPT, never relayed.
    local, _, domain = srs.partition("@")
    forged = "SRS0=AAAA=" + local.split("=", 2)[2] + "@" + domain
    assert forged.lower() != srs.lower()
    replies = smtp_tools.raw_session(GATEWAY, 25, [b"EHLO mx.acme.odoo.com\r\n", b"MAIL FROM:<>\r\n", f"RCPT TO:<{forged}>\r\n".encode(),
                                                   b"QUIT\r\n"], netns=forwarding.netns, source=ODOO_MX)
    assert int(replies[3][:3]) == 550, (forged, replies[3])
