"""SMTP AUTH on a rendered gateway, run for real: Cyrus SASL (auxprop sasldb) in a
private Postfix instance inside a network namespace of our own (msgw-auth-*).

Roles (all inside the namespace, on loopback): the gateway listens on 127.0.20.10
(25, 587); Odoo submits from 127.0.20.30, which is NOT in ``odooAddresses`` (only
127.0.20.20 is), so only SMTP AUTH lets it relay; the relay host (a sink standing in
for the Internet) is 127.0.20.50:25. The SASL password goes into sasldb through
``saslpasswd2 -p`` on stdin, as docs/gateway.md tells a real gateway to do.
"""

from __future__ import annotations

import dataclasses
import email
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.gateway import render
from mailstack.lab import binaries, netns, smtp_tools
from mailstack.lab.postfix import (
    OpenDkim,
    PostfixInstance,
    lab_layout,
    make_workdir,
    wait_for,
)
from mailstack.lab.tls import self_signed
from tests.servers import require_binary, require_root

pytestmark = pytest.mark.servers

GATEWAY, TRUSTED, CLIENT, RELAY = "127.0.20.10", "127.0.20.20", "127.0.20.30", "127.0.20.50"
HOSTNAME = "mx1.example.net"
USER = "odoo"
PASSWORD = "Sasl-s3cret odoo:pw"  # a space and a colon: nothing may split or trim it


@dataclass
class AuthLab:
    netns: str
    workdir: Path
    sink: smtp_tools.SmtpSink
    postfix: PostfixInstance

    def submit(self, port: int, message_id: str, *, starttls: bool = True,
               auth: tuple[str, str] | None = None, recipient: str = "customer@foreign.test") -> dict[str, Any]:
        data = (
            f"From: Odoo <notifications@example.net>\r\nTo: {recipient}\r\nSubject: auth\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            f"Message-Id: {message_id}\r\n\r\nHello over SMTP AUTH\r\n"
        ).encode()
        return smtp_tools.send(GATEWAY, port, "bounce@example.net", [recipient], data, netns=self.netns,
                               source=CLIENT, starttls=starttls, auth=auth)

    def relayed(self, message_id: str) -> list[tuple[dict, bytes]]:
        return [(env, raw) for env, raw in self.sink.messages() if f"Message-Id: {message_id}".encode() in raw]


def set_sasl_password(sasldb: Path, user: str, realm: str, password: str) -> None:
    """What an administrator runs on a real gateway: the password on stdin (``-p``),
    the database root:postfix 0640 (smtpd runs as postfix, unchrooted)."""
    sasldb.parent.mkdir(mode=0o755, exist_ok=True)
    subprocess.run([binaries.binary("saslpasswd2"), "-p", "-c", "-f", str(sasldb), "-u", realm, user],
                   input=password.encode(), check=True, capture_output=True)
    postfix_gid = pwd.getpwnam("postfix").pw_gid
    os.chown(sasldb, 0, postfix_gid)
    sasldb.chmod(0o640)


@pytest.fixture(scope="module")
def lab() -> Iterator[AuthLab]:
    require_root()
    for binary in ("postfix", "postconf", "postmap", "opendkim", "ip", "saslpasswd2"):
        require_binary(binary)
    name = f"msgw-auth-{os.getpid()}"
    workdir = make_workdir("msgw-auth-")
    started: list = []
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        cert_pem, key_pem = self_signed([HOSTNAME], days=30)
        tls_dir = workdir / "tls"
        tls_dir.mkdir(mode=0o755)
        (tls_dir / "gateway.pem").write_bytes(cert_pem)
        (tls_dir / "gateway.key").touch(mode=0o600)
        (tls_dir / "gateway.key").write_bytes(key_pem)
        stack = from_config({
            "domain": "example.net",
            "odoo": {"hosting": "onpremise", "url": "http://127.0.20.40:8069", "database": "odoo"},
            "outbound": ["gateway"],
            "inbound": {"mode": "gateway", "aliases": ["sales"]},
            "gateways": [{"hostname": HOSTNAME, "ipv4": "192.0.2.10"}],
            "dkim": {"selector": "auth2026"},
            "gateway": {
                "odooAddresses": [TRUSTED],
                "smtpAuth": {"user": USER},
                "relayHost": f"[{RELAY}]:25",
                "tls": {"cert": str(tls_dir / "gateway.pem"), "key": str(tls_dir / "gateway.key"), "required": True},
            },
        })
        sasldb = workdir / "sasl" / "sasldb2"
        layout = dataclasses.replace(lab_layout(workdir, GATEWAY), sasldb_path=str(sasldb))
        files = render.render(plan.build(stack), dkim_private_key_pem=private_pem, layout=layout)
        assert f"sasldb_path: {sasldb}" in files["postfix/sasl/smtpd.conf"].text
        set_sasl_password(sasldb, USER, HOSTNAME, PASSWORD)
        netns.create(name, nameserver="127.0.20.53")  # nothing answers there: no lookups leave
        sink = smtp_tools.SmtpSink(workdir, RELAY, 25, netns=name)
        opendkim = OpenDkim(workdir, files, netns=name)
        postfix = PostfixInstance(workdir, files, netns=name)
        for server in (sink, opendkim, postfix):
            server.start()
            started.append(server)
        yield AuthLab(name, workdir, sink, postfix)
    finally:
        for server in reversed(started):
            server.stop()
        netns.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)


def test_auth_is_offered_on_submission_only_after_starttls(lab: AuthLab) -> None:
    plain = lab.submit(587, "<auth-plain@example.net>", starttls=False)
    assert "starttls" in plain["ehlo"] and "auth" not in plain["ehlo"]
    assert plain["mail"][0] == 530 and "STARTTLS" in plain["mail"][1]  # smtpd_tls_security_level=encrypt
    assert plain["data"] is None
    secured = lab.submit(587, "<auth-offer@example.net>", recipient="sales@example.net")
    assert "auth" in secured["ehlo_tls"]


def test_auth_is_never_offered_on_port_25(lab: AuthLab) -> None:
    result = lab.submit(25, "<auth-port25@example.net>", auth=(USER, PASSWORD))
    assert result.get("tls") and "auth" not in result["ehlo_tls"]
    assert result["auth"] == [None, "AUTH not offered"] and result["mail"] is None


def test_authenticated_client_relays_to_a_foreign_domain_dkim_signed(lab: AuthLab) -> None:
    result = lab.submit(587, "<auth-ok@example.net>", auth=(USER, PASSWORD))
    assert result["auth"][0] == 235, result
    assert result["rcpt"]["customer@foreign.test"][0] == 250 and result["data"][0] == 250
    relayed = wait_for(lambda: lab.relayed("<auth-ok@example.net>"), 60, what="relay to the relay host")
    envelope, raw = relayed[0]
    assert envelope == {"from": "bounce@example.net", "to": ["customer@foreign.test"]}
    # OpenDKIM signs mail of authenticated clients too, not only of odooAddresses.
    signature = email.message_from_bytes(raw)["DKIM-Signature"]
    assert signature and "d=example.net" in signature and "s=auth2026" in signature


def test_unauthenticated_client_may_not_relay_or_submit(lab: AuthLab) -> None:
    result = lab.submit(587, "<auth-none@example.net>")
    assert result.get("tls") and result["auth"] is None
    code, text = result["rcpt"]["customer@foreign.test"]
    assert code == 554 and "Access denied" in text
    assert result["data"] is None


def test_wrong_password_is_refused_and_nothing_is_relayed(lab: AuthLab) -> None:
    result = lab.submit(587, "<auth-wrong@example.net>", auth=(USER, PASSWORD + "x"))
    assert result["auth"][0] == 535
    assert result["mail"] is None and result["data"] is None
    other_user = lab.submit(587, "<auth-nouser@example.net>", auth=("mallory", PASSWORD))
    assert other_user["auth"][0] == 535
    assert not lab.relayed("<auth-wrong@example.net>") and not lab.relayed("<auth-nouser@example.net>")


def test_the_password_is_not_in_the_rendered_files_or_the_log(lab: AuthLab) -> None:
    rendered = "".join(p.read_text(errors="replace") for p in (lab.workdir / "postfix").rglob("*") if p.is_file() and p.suffix != ".db")
    assert PASSWORD not in rendered and PASSWORD not in lab.postfix.log()
    assert (lab.workdir / "sasl" / "sasldb2").stat().st_mode & 0o777 == 0o640
