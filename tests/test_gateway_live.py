"""A rendered gateway, run for real: private Postfix + OpenDKIM + mailgate + mailstack-aliasd
+ Odoo stand-in inside a network namespace of our own (msgw-*), every address on loopback.

Roles: the gateway listens on 127.0.20.10 (25 the MX, 587 Odoo's submission; aliasd on
10027), Odoo submits from 127.0.20.20 on 587 (the stand-in sends its own bounces from
there), an outside sender uses 127.0.20.30, the Odoo stand-in listens on
127.0.20.40:8069, and the relay host (a sink standing in for the Internet) on
127.0.20.50:25. The stack declares sales, support and legacy; Odoo has aliases for
sales and support only.
"""

from __future__ import annotations

import email
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.model import MailDomain
from mailstack.gateway import render
from mailstack.lab import netns, smtp_tools, users
from mailstack.lab.aliasd import AliasDaemon
from mailstack.lab.mailgated import MailgateDaemon
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import (
    OpenDkim,
    PostfixInstance,
    install_mailgate,
    lab_layout,
    mailgate_python,
    make_workdir,
    runs_as,
    wait_for,
)
from mailstack.lab.tls import self_signed
from tests.project import planned
from tests.servers import require, require_binary, require_root

pytestmark = pytest.mark.servers

GATEWAY, ODOO, OUTSIDE, STANDIN, RELAY = "127.0.20.10", "127.0.20.20", "127.0.20.30", "127.0.20.40", "127.0.20.50"
PASSWORD = "s3cret-odoo-password"


@dataclass
class Lab:
    stack: MailDomain
    netns: str
    workdir: Path
    public_key_pem: str
    standin: OdooStandIn
    sink: smtp_tools.SmtpSink
    postfix: PostfixInstance
    #: gateway.mailgate.delivery: "lmtp" (the resident mailgate) or "pipe".
    delivery: str = "lmtp"

    def send(self, source: str, mail_from: str, recipients: list[str], data: bytes, port: int = 25) -> dict:
        return smtp_tools.send(GATEWAY, port, mail_from, recipients, data, netns=self.netns, source=source)

    def submit(self, mail_from: str, recipients: list[str], data: bytes) -> dict:
        """As Odoo submits: from its address, on the submission port."""
        return self.send(ODOO, mail_from, recipients, data, port=587)

    def stored(self, message_id: str) -> list[dict]:
        return [m for m in self.standin.messages() if m["message_id"] == message_id]

    def relayed(self, message_id: str) -> list[tuple[dict, bytes]]:
        return [(env, raw) for env, raw in self.sink.messages() if f"Message-Id: {message_id}".encode() in raw]

    def rcpt(self, address: str) -> tuple[int, str]:
        """The gateway's answer to RCPT TO from outside (then RSET: nothing is sent)."""
        replies = smtp_tools.raw_session(GATEWAY, 25, [
            b"EHLO client.lab.test\r\n", b"MAIL FROM:<customer@outside.test>\r\n", f"RCPT TO:<{address}>\r\n".encode(), b"QUIT\r\n",
        ], netns=self.netns, source=OUTSIDE)
        return int(replies[3][:3]), replies[3]

    def rpc(self, model: str, method: str, args: list, kwargs: dict | None = None) -> object:
        """An XML-RPC call to the stand-in from inside the namespace (as Odoo's admin)."""
        code = ("import json, sys, xmlrpc.client; r = json.load(sys.stdin); "
                "p = xmlrpc.client.ServerProxy(r['url'] + '/xmlrpc/2/object'); "
                "print(json.dumps(p.execute_kw('odoo', 2, r['password'], r['model'], r['method'], r['args'], r['kwargs'])))")
        request = {"url": f"http://{STANDIN}:8069", "password": PASSWORD, "model": model, "method": method, "args": args, "kwargs": kwargs or {}}
        result = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", code], input=json.dumps(request),
                                capture_output=True, text=True, check=True)
        return json.loads(result.stdout)


def gateway_certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A certificate for the gateway (STARTTLS must be offered with the stack's paths)."""
    cert_pem, key_pem = self_signed([hostname], days=30)
    directory.mkdir(mode=0o755)
    cert_path, key_path = directory / "gateway.pem", directory / "gateway.key"
    cert_path.write_bytes(cert_pem)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)
    return cert_path, key_path


@pytest.fixture(scope="module", params=["lmtp", "pipe"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The gateway with each delivery to the mailgate: the same tests hold for both."""
    delivery = str(request.param)
    require_root()
    for binary in ("postfix", "postconf", "postmap", "postqueue", "opendkim", "ip"):
        require_binary(binary)
    users.ensure((users.MAILGATE_USER,))  # the mailgate's own user, as on a real host (never nobody)
    require(runs_as(users.MAILGATE_USER), f"a python3 the unprivileged mailgate user can run ({mailgate_python()}; apt-get install python3)")
    name = f"msgw-live-{os.getpid()}"
    workdir = make_workdir("msgw-live-")
    started: list = []
    standin: OdooStandIn | None = None
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        cert_path, key_path = gateway_certificate(workdir / "tls", "mx1.example.net")
        stack = from_config({
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": f"http://{STANDIN}:8069", "database": "odoo"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway", "aliases": ["sales", "support", "legacy"]},
            "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
            "dkim": {"selector": "lab2026"},
            "gateway": {
                "odooAddresses": [ODOO],
                "relayHost": f"[{RELAY}]:25",
                "tls": {"cert": str(cert_path), "key": str(key_path)},
                "mailgate": {"passwordFile": str(workdir / "secret" / "odoo-password"), "timeout": 20, "delivery": delivery},
            },
        })
        files = render.render(plan.build(stack), dkim_private_key_pem=private_pem, layout=lab_layout(workdir, GATEWAY))
        netns.create(name, nameserver="127.0.20.53")  # nothing answers there: no lookups leave
        # Odoo sends its own bounces through the gateway, as odoo.conf tells it.
        odoo_conf = workdir / "odoo.conf"
        odoo_conf.write_text(f"[options]\nsmtp_server = {GATEWAY}\nsmtp_port = 587\nemail_from = notifications@example.net\n")
        standin = OdooStandIn(workdir / "odoo", STANDIN, 8069, password=PASSWORD, netns=name,
                              aliases=["sales@example.net", "support@example.net"], odoo_conf=odoo_conf,
                              smtp_source=ODOO, hostname="odoo.example.net")
        sink = smtp_tools.SmtpSink(workdir, RELAY, 25, netns=name)
        opendkim = OpenDkim(workdir, files, netns=name)
        postfix = PostfixInstance(workdir, files, netns=name)
        install_mailgate(files, workdir, PASSWORD)
        (workdir / "secret").chmod(0o755)
        aliasd = AliasDaemon(workdir, files, netns=name, user=users.MAILGATE_USER)
        servers: list[OdooStandIn | smtp_tools.SmtpSink | OpenDkim | AliasDaemon | MailgateDaemon | PostfixInstance]
        servers = [standin, sink, opendkim, aliasd, postfix]
        if delivery == "lmtp":
            servers.insert(4, MailgateDaemon(workdir, files, netns=name, user=users.MAILGATE_USER))
        for server in servers:
            server.start()
            started.append(server)
        yield Lab(stack, name, workdir, public_pem, standin, sink, postfix, delivery)
    finally:
        for server in reversed(started):
            server.stop()
        if standin is not None:
            standin.stop()  # the outage test restarts it: stop whatever runs now
        netns.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)

def message(message_id: str, to: str, sender: str = "customer@outside.test", body: str = "Hello") -> bytes:
    text = (
        f"From: Customer <{sender}>\r\nTo: {to}\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"Message-Id: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\nGrüße aus dem Lab, a long line {'x' * 900}\r\n"
    )
    return text.encode("utf-8")


def added_headers(raw: bytes, original: bytes) -> email.message.Message:
    """The headers Postfix put in front of the original message, parsed."""
    lf_original = original.replace(b"\r\n", b"\n")
    assert raw.endswith(lf_original), "the message did not reach Odoo byte for byte"
    return email.message_from_bytes(raw[: -len(lf_original)] + b"\n")


def test_inbound_alias_reaches_odoo_byte_exact_with_the_original_recipient(lab: Lab) -> None:
    original = message("<inbound-1@outside.test>", "Sales <sales@example.net>")
    result = lab.send(OUTSIDE, "customer@outside.test", ["sales@example.net"], original)
    assert result["rcpt"]["sales@example.net"][0] == 250 and result["data"][0] == 250
    stored = wait_for(lambda: lab.stored("<inbound-1@outside.test>"), 60, what="delivery to Odoo")
    assert len(stored) == 1
    added = added_headers(stored[0]["raw"], original)
    assert sorted(set(added.keys())) == ["Delivered-To", "Received", "Return-Path"]
    assert added["Delivered-To"] == "sales@example.net"  # the envelope recipient, not rewritten
    assert added["Return-Path"] == "<customer@outside.test>"
    assert stored[0]["routes"] == "sales@example.net"


def test_plus_detail_and_declared_aliases_odoo_lacks_are_refused_at_rcpt(lab: Lab) -> None:
    # Odoo 17 strips no +detail and has no alias "legacy"; it routes notifications@ only
    # as a reply (and raises for anything else): each would become a Postfix bounce.
    for address in ("sales+quote@example.net", "legacy@example.net", "nobody@example.net", "notifications@example.net"):
        code, text = lab.rcpt(address)
        assert code == 550 and "5.1.1" in text, (address, code, text)
    for address in ("sales@example.net", "catchall@example.net", "bounce@example.net", "postmaster@example.net", "abuse@example.net"):
        assert lab.rcpt(address)[0] == 250, address


def test_an_alias_created_in_odoo_is_accepted_within_ten_seconds(lab: Lab) -> None:
    assert lab.rcpt("quotes@example.net")[0] == 550
    model = lab.rpc("ir.model", "search", [[["model", "=", "crm.lead"]]])[0]  # type: ignore[index]
    lab.rpc("mail.alias", "create", [{"alias_name": "quotes", "alias_model_id": model}])
    created = time.monotonic()
    code = wait_for(lambda: lab.rcpt("quotes@example.net")[0] == 250, 20, interval=1, what="the new alias to be accepted")
    print(f"new Odoo alias accepted at RCPT after {time.monotonic() - created:.1f}s")
    assert code


def test_a_direct_write_to_the_catchall_gets_odoos_bounce_only(lab: Lab) -> None:
    # Odoo answers False and sends its own bounce through the gateway; the mailgate
    # exits 0, so Postfix adds no second bounce.
    original = message("<catchall-1@outside.test>", "catchall@example.net", sender="writer@outside.test")
    result = lab.send(OUTSIDE, "writer@outside.test", ["catchall@example.net"], original)
    assert result["data"][0] == 250
    bounces = wait_for(lambda: [(e, r) for e, r in lab.sink.messages() if e["to"] == ["writer@outside.test"]], 60, what="Odoo's bounce relayed")
    envelope, raw = bounces[0]
    parsed = email.message_from_bytes(raw)
    assert envelope["from"] == "bounce@example.net" and parsed["From"] == '"MAILER-DAEMON" <bounce@example.net>'
    assert "d=example.net" in (parsed["DKIM-Signature"] or "")  # signed by the gateway like all Odoo's mail
    wait_for(lambda: not lab.postfix.queue(), 60, what="an empty queue")
    assert len([e for e, _ in lab.sink.messages() if e["to"] == ["writer@outside.test"]]) == 1
    assert "status=bounced" not in lab.postfix.log() and not lab.stored("<catchall-1@outside.test>")


def test_a_reply_to_odoos_bounce_is_dropped_by_odoo_and_not_bounced_by_postfix(lab: Lab) -> None:
    # _detect_loop_headers → None → the "cannot marshal None" fault → mailgate exit 0.
    original = message("<loop-1@outside.test>", "sales@example.net", sender="looper@outside.test").replace(
        b"Subject:", b"References: <1.2-openerp-loop-detection-bounce-email@odoo.example.net>\r\nSubject:", 1)
    assert lab.send(OUTSIDE, "looper@outside.test", ["sales@example.net"], original)["data"][0] == 250
    wait_for(lambda: "<loop-1@outside.test>" in lab.postfix.log() and not lab.postfix.queue(), 60, what="the mailgate run")
    time.sleep(1)
    assert not lab.stored("<loop-1@outside.test>")
    assert not [e for e, _ in lab.sink.messages() if "looper@outside.test" in e["to"]]
    assert "status=bounced" not in lab.postfix.log()


def test_the_mailgate_runs_as_its_own_user_with_its_password_file_private(lab: Lab) -> None:
    """Not ``nobody``, whose uid unrelated services share: the password file it reads
    is 0600 and its own, and Postfix pipes to it as that user, or the resident mailgate
    runs as that user (a delivery above ran)."""
    if lab.delivery == "pipe":
        assert f" user={users.MAILGATE_USER} " in (lab.workdir / "postfix" / "master.cf").read_text()
    else:
        pids = subprocess.run(["pgrep", "-f", str(lab.workdir / "mailstack" / "mailgated.py")], capture_output=True, text=True).stdout.split()
        assert pids
        owners = {pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name for pid in pids}
        assert owners == {users.MAILGATE_USER}
    info = (lab.workdir / "secret" / "odoo-password").stat()
    assert pwd.getpwuid(info.st_uid).pw_name == users.MAILGATE_USER and stat.S_IMODE(info.st_mode) == 0o600


def test_bcc_alias_arrives_through_delivered_to(lab: Lab) -> None:
    # support@ is only in the envelope (Bcc): Odoo can route it on Delivered-To alone.
    original = message("<bcc-1@outside.test>", "someone@elsewhere.test")
    result = lab.send(OUTSIDE, "customer@outside.test", ["support@example.net"], original)
    assert result["data"][0] == 250
    stored = wait_for(lambda: lab.stored("<bcc-1@outside.test>"), 60, what="delivery to Odoo")
    assert stored[0]["routes"] == "support@example.net"
    assert added_headers(stored[0]["raw"], original)["Delivered-To"] == "support@example.net"


def test_an_alias_in_to_and_another_in_bcc_reach_odoo_in_one_message(lab: Lab) -> None:
    # Odoo processes a Message-Id once: both aliases must be in that one delivery.
    original = message("<bcc-2@outside.test>", "sales@example.net")
    result = lab.send(OUTSIDE, "customer@outside.test", ["sales@example.net", "support@example.net"], original)
    assert result["data"][0] == 250
    stored = wait_for(lambda: lab.stored("<bcc-2@outside.test>"), 60, what="delivery to Odoo")
    # One delivery (one raw message, both Delivered-To lines), which Odoo 17 posts on one
    # record per matching alias: a lead for sales@, a ticket-like record for support@.
    assert sorted(m["routes"] for m in stored) == ["sales@example.net", "support@example.net"]
    assert len({m["raw"] for m in stored}) == 1
    added = added_headers(stored[0]["raw"], original)
    assert sorted(added.get_all("Delivered-To")) == ["sales@example.net", "support@example.net"]


def test_unknown_recipient_is_rejected_at_rcpt(lab: Lab) -> None:
    result = lab.send(OUTSIDE, "customer@outside.test", ["nobody@example.net"], message("<unknown-1@outside.test>", "nobody@example.net"))
    code, text = result["rcpt"]["nobody@example.net"]
    assert code == 550 and "5.1.1" in text
    assert result["data"] is None  # never accepted, so never bounced later
    assert not [m for m in lab.postfix.queue() if "nobody@example.net" in str(m)]


def test_relaying_to_a_foreign_domain_from_outside_is_refused(lab: Lab) -> None:
    result = lab.send(OUTSIDE, "notifications@example.net", ["victim@foreign.test"], message("<relay-1@outside.test>", "victim@foreign.test"))
    code, text = result["rcpt"]["victim@foreign.test"]
    assert code == 554 and "Relay access denied" in text
    assert result["data"] is None


def test_outbound_from_odoo_is_dkim_signed_and_verifies_against_the_planned_record(lab: Lab) -> None:
    records = planned(lab.stack, gateway_key=lab.public_key_pem)
    txt = next(r for r in records if r.name == "lab2026._domainkey.example.net" and r.type == "TXT")
    original = message("<outbound-1@example.net>", "Customer <customer@foreign.test>", sender="notifications@example.net")
    result = lab.submit("bounce@example.net", ["customer@foreign.test"], original)
    assert result["rcpt"]["customer@foreign.test"][0] == 250 and result["data"][0] == 250
    relayed = wait_for(lambda: lab.relayed("<outbound-1@example.net>"), 60, what="relay to the relay host")
    envelope, raw = relayed[0]
    assert envelope == {"from": "bounce@example.net", "to": ["customer@foreign.test"]}
    signature = email.message_from_bytes(raw)["DKIM-Signature"]
    assert signature and "d=example.net" in signature and "s=lab2026" in signature

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return txt.content.encode() if name.decode().rstrip(".") == txt.name else None

    assert dkimpy.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"Hello", b"Hallo")
    assert not dkimpy.verify(tampered, dnsfunc=dns)


def test_odoo_down_defers_and_delivers_once_back_nothing_bounced(lab: Lab) -> None:
    lab.standin.stop()
    try:
        # aliasd cannot ask Odoo: declared addresses are accepted, others get a 4xx.
        # (aliasd re-asks Odoo on a miss once its answer is 10 s old, and then notices.)
        wait_for(lambda: lab.rcpt("legacy@example.net")[0] == 250, 30, interval=1, what="aliasd to fall back on the static list")
        code, text = lab.rcpt("nobody@example.net")
        assert 400 <= code < 500, (code, text)
        original = message("<outage-1@outside.test>", "sales@example.net", sender="outage@outside.test")
        result = lab.send(OUTSIDE, "outage@outside.test", ["sales@example.net"], original)
        assert result["data"][0] == 250

        def deferred() -> list[dict]:
            return [m for m in lab.postfix.queue() if m["queue_name"] == "deferred" and m["recipients"][0].get("delay_reason")]

        queued = wait_for(deferred, 60, what="the message to be deferred")
        assert "cannot reach Odoo" in queued[0]["recipients"][0]["delay_reason"]
        assert PASSWORD not in lab.postfix.log()
    finally:
        lab.standin.start()
    lab.postfix.flush()
    stored = wait_for(lambda: lab.stored("<outage-1@outside.test>"), 120, what="delivery after Odoo came back")
    added_headers(stored[0]["raw"], original)
    wait_for(lambda: not lab.postfix.queue(), 60, what="an empty queue")
    assert "status=bounced" not in lab.postfix.log()
    assert not [env for env, _ in lab.sink.messages() if "outage@outside.test" in env["to"]]  # no bounce sent


def test_starttls_is_offered_and_inbound_works_over_it(lab: Lab) -> None:
    original = message("<tls-1@outside.test>", "sales@example.net")
    result = smtp_tools.send(GATEWAY, 25, "customer@outside.test", ["sales@example.net"], original,
                             netns=lab.netns, source=OUTSIDE, starttls=True)
    assert "starttls" in result["ehlo"] and result.get("tls") is True
    assert result["data"][0] == 250
    stored = wait_for(lambda: lab.stored("<tls-1@outside.test>"), 60, what="delivery to Odoo")
    assert "with ESMTPS" in added_headers(stored[0]["raw"], original)["Received"]  # S: over TLS


def test_smtp_smuggling_with_a_bare_lf_end_of_data_is_not_a_second_message(lab: Lab) -> None:
    smuggled = (
        b"Message-Id: <smuggle-1@outside.test>\r\nFrom: customer@outside.test\r\nTo: sales@example.net\r\n"
        b"Subject: x\r\n\r\nbody\n.\r\n"  # a bare-LF "end of data" (CVE-2023-51764)
        b"MAIL FROM:<ceo@example.net>\r\nRCPT TO:<support@example.net>\r\nDATA\r\n"
        b"Message-Id: <smuggled-2@outside.test>\r\nFrom: ceo@example.net\r\n\r\nwire money\r\n.\r\n"
    )
    replies = smtp_tools.raw_session(GATEWAY, 25, [
        b"EHLO client.lab.test\r\n",
        b"MAIL FROM:<customer@outside.test>\r\n",
        b"RCPT TO:<sales@example.net>\r\n",
        b"DATA\r\n",
        smuggled,
        b"QUIT\r\n",
    ], netns=lab.netns, source=OUTSIDE)
    assert replies[3].startswith("250") and replies[4].startswith("354")
    assert replies[5].startswith("250") and replies[6].startswith("221")  # one message, then QUIT
    stored = wait_for(lambda: lab.stored("<smuggle-1@outside.test>"), 60, what="delivery to Odoo")
    assert b"RCPT TO:<support@example.net>" in stored[0]["raw"]  # the smuggled commands stayed content
    wait_for(lambda: not lab.postfix.queue(), 60, what="an empty queue")
    assert not lab.stored("<smuggled-2@outside.test>")


def odoo_message(message_id: str, *, headers: list[str] | None = None, body: str = "Hello from Odoo\r\n") -> bytes:
    """A message as Odoo builds it (one From at the stack's domain, Date, Message-Id),
    with ``headers`` replacing the defaults of the same names."""
    defaults = {"From": '"Odoo" <notifications@example.net>', "To": "customer@foreign.test", "Subject": "Order confirmed",
                "Date": "Mon, 01 Jan 2024 10:00:00 +0000", "Message-Id": message_id}
    lines = [f"{name}: {value}" for name, value in defaults.items() if not any(h.lower().startswith(name.lower() + ":") for h in headers or [])]
    return ("\r\n".join([*lines, *(headers or [])]) + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize(("case", "headers", "body", "reply"), [
    ("subject-1216", ["Subject: " + "s" * 1216], "Hello\r\n", "5.6.0 a header line is longer than 998 bytes"),
    ("body-1500", [], "x" * 1500 + "\r\n", "5.6.0 a line is longer than 998 bytes"),
    ("two-from", ["From: notifications@example.net", "From: notifications@example.net"], "Hello\r\n", "exactly one From field"),
    ("foreign-from", ["From: ceo@bank.test"], "Hello\r\n", "5.7.1 From must be one address at example.net"),
    ("two-addresses", ["From: notifications@example.net, ceo@bank.test"], "Hello\r\n", "5.7.1 From must be one address"),
])
def test_odoo_submission_refuses_what_would_be_delivered_broken_or_unsigned(lab: Lab, case: str, headers: list[str], body: str, reply: str) -> None:
    """Lines over 998 bytes (Postfix's SMTP client would break them after OpenDKIM
    signed: dkim=fail at the receiver), two From fields (signed h=From:From, passes
    DMARC), a From outside the signed names (relayed unsigned): each refused at DATA
    with the reason, never relayed."""
    message_id = f"<refused-{case}@example.net>"
    result = lab.submit("bounce@example.net", ["customer@foreign.test"], odoo_message(message_id, headers=headers, body=body))
    assert result["rcpt"]["customer@foreign.test"][0] == 250
    code, text = result["data"]
    assert code == 550 and reply in text, (code, text)
    assert not lab.relayed(message_id)


def test_odoo_submission_without_a_from_is_refused(lab: Lab) -> None:
    raw = b"To: customer@foreign.test\r\nSubject: no from\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-Id: <refused-nofrom@example.net>\r\n\r\nHello\r\n"
    result = lab.submit("bounce@example.net", ["customer@foreign.test"], raw)
    code, text = result["data"]
    assert code == 550 and "no From address" in text, (code, text)
    assert not lab.relayed("<refused-nofrom@example.net>")


def test_lines_up_to_998_bytes_are_signed_and_verify_after_relaying(lab: Lab) -> None:
    records = planned(lab.stack, gateway_key=lab.public_key_pem)
    txt = next(r for r in records if r.name == "lab2026._domainkey.example.net" and r.type == "TXT")
    raw = odoo_message("<long-998@example.net>", headers=["Subject: " + "s" * (998 - len("Subject: "))], body="y" * 998 + "\r\n")
    result = lab.submit("bounce@example.net", ["customer@foreign.test"], raw)
    assert result["data"][0] == 250, result
    _, relayed = wait_for(lambda: lab.relayed("<long-998@example.net>"), 60, what="relay to the relay host")[0]
    assert max(len(line) for line in relayed.split(b"\r\n")) == 998  # not broken on the way
    assert dkimpy.verify(relayed, dnsfunc=lambda name, timeout=5: txt.content.encode() if name.decode().rstrip(".") == txt.name else None)


@pytest.mark.parametrize(("mail_from", "reply"), [
    ("someone@bank.test", "Sender address rejected: the envelope sender must be an address at example.net"),
    ("", "Sender address rejected: the envelope sender must be an address at example.net"),
])
def test_odoo_host_cannot_relay_with_a_foreign_envelope_sender(lab: Lab, mail_from: str, reply: str) -> None:
    result = lab.submit(mail_from, ["victim@foreign.test"], odoo_message("<refused-sender@example.net>"))
    code, text = result["rcpt"]["victim@foreign.test"]
    assert code == 554 and reply in text, (code, text)
    assert result["data"] is None


def test_port_25_relays_for_nobody_not_even_odoos_host(lab: Lab) -> None:
    """Port 25 is the MX: Odoo's own address may deliver to the relay domains there,
    but relaying elsewhere needs the submission port and its checks."""
    result = lab.send(ODOO, "bounce@example.net", ["victim@foreign.test"], odoo_message("<relay-25@example.net>"))
    code, text = result["rcpt"]["victim@foreign.test"]
    assert code == 554 and "Relay access denied" in text
